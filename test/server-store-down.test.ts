// A PostgreSQL that goes away under a running server: every ingest is answered
// (an error the agent's spool retries), never left hanging, and the server stays up.
import pg from 'pg';
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

  it('stays up when its connections are cut between the queries of a transaction', { timeout: 120_000 }, async () => {
    const postgres = await startPostgres();
    const url = postgres.newDatabase();
    const server = await startServer({ store: url, port: 0 });
    const killer = new pg.Client({ connectionString: url });
    await killer.connect();
    try {
      // Ingests keep the store's clients checked out across several queries; another session
      // terminates every one of the store's backends again and again meanwhile.
      let cutting = true;
      let cuts = 0;
      const cutter = (async () => {
        while (cutting) {
          const r = await killer.query('SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()');
          cuts += (r.rows[0] as { n: number }).n;
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
      })();
      const statuses = new Map<number, number>();
      for (let wave = 0; wave < 40; wave++) {
        const answers = await Promise.all(
          [0, 1, 2, 3, 4, 5].map((k) => ingest(server.url, buildProfile({ timeMs: Date.now(), samples: [{ stack: ['main', `w${wave}`, `f${k}`], values: [1, 10] }] }), { node: `n${k}` })),
        );
        for (const a of answers) statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
      }
      cutting = false;
      await cutter;
      expect(cuts, 'backends terminated while ingesting').toBeGreaterThan(10);
      // Every ingest was answered: stored, or an error the agent's spool retries.
      for (const status of statuses.keys()) expect(status === 200 || status >= 500, `status ${status}`).toBe(true);
      expect((await getJson(server.url, '/healthz')).status).toBe(200);
      // And it works again once nothing cuts it: a fresh client is taken for the next ingest.
      const after = await ingest(server.url, buildProfile({ timeMs: Date.now(), samples: [{ stack: ['main', 'after'], values: [1, 10] }] }), { node: 'a' });
      expect(after.status).toBe(200);
    } finally {
      await killer.end().catch(() => undefined);
      await server.close().catch(() => undefined);
      postgres.stop();
    }
  });
});
