// A PostgreSQL that goes away under a running server: every ingest is answered
// (an error the agent's spool retries), never left hanging, and the server stays up.
import { describe, expect, it } from 'vitest';
import { startServer } from '../server/index.js';
import { startPostgres } from './helpers/postgres.js';
import { buildProfile, getJson, ingest } from './server-helpers.js';

describe('server whose PostgreSQL goes down', () => {
  it('answers ingests with an error instead of hanging, and /readyz says not ready', { timeout: 120_000 }, async () => {
    const pg = await startPostgres();
    let stopped = false;
    const server = await startServer({ store: pg.newDatabase(), port: 0 });
    try {
      const profile = () => buildProfile({ timeMs: Date.now(), samples: [{ stack: ['main', 'work'], values: [1, 10] }] });
      expect((await ingest(server.url, profile(), { node: 'a' })).status).toBe(200);
      pg.stop();
      stopped = true;
      // Several at once: they are committed as one group, which must be answered as a whole.
      const answers = await Promise.all([0, 1, 2].map(() => ingest(server.url, profile(), { node: 'a' })));
      for (const a of answers) {
        expect(a.status).toBeGreaterThanOrEqual(500);
        expect(a.json.requestId).toBeTypeOf('string');
      }
      expect((await getJson(server.url, '/healthz')).status).toBe(200);
      expect((await getJson(server.url, '/readyz')).status).toBe(503);
    } finally {
      await server.close().catch(() => undefined);
      if (!stopped) pg.stop();
    }
  });
});
