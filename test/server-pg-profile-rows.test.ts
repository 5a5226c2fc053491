// A profile row of a few KB stays whole in its PostgreSQL heap page: neither
// compressed (its varint samples barely shrink, and trying costs CPU on every
// commit) nor moved to the TOAST table (a second heap and index insert).
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { startServer } from '../server/index.js';
import { buildProfile, ingest, testPostgres } from './server-helpers.js';

describe('server on PostgreSQL, profile rows', () => {
  it('keeps a 2,000-stack profile inline and uncompressed', { timeout: 60_000 }, async () => {
    const url = (await testPostgres()).newDatabase();
    const server = await startServer({ store: url, port: 0 });
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    try {
      // Values above 3 are stored after their stack (sample-codec.ts): about 3 bytes a stack, 6 KB a row.
      const samples = Array.from({ length: 2000 }, (_, i) => ({ stack: ['main', `handler${i % 50}`, `leaf${i}`], values: [4 + ((i * 7919) % 1000), 10] }));
      const answer = await ingest(server.url, buildProfile({ timeMs: Date.now(), samples }), { node: 'a' });
      expect(answer.status, JSON.stringify(answer.json)).toBe(200);
      const row = (
        await db.query<{ stored: number; raw: number; partition: string }>(
          'SELECT pg_column_size(samples) AS stored, octet_length(samples) AS raw, tableoid::regclass::text AS partition FROM profiles',
        )
      ).rows;
      expect(row).toHaveLength(1);
      expect(row[0]!.raw).toBeGreaterThan(4000); // over the ~2 KB at which PostgreSQL toasts by default
      // Not compressed: the stored datum is the bytes plus a 4-byte header.
      expect(row[0]!.stored).toBe(row[0]!.raw + 4);
      const toast = (await db.query<{ toast: string | null }>('SELECT reltoastrelid::regclass::text AS toast FROM pg_class WHERE oid = $1::regclass', [row[0]!.partition])).rows[0]!.toast;
      expect(toast).not.toBeNull();
      const chunks = (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${toast!}`)).rows[0]!.n;
      expect(chunks, 'rows moved out of line').toBe(0);
    } finally {
      await db.end().catch(() => undefined);
      await server.close().catch(() => undefined);
    }
  });
});
