// Servers sharing one PostgreSQL learn the stack rows the others stored
// (PgStore.learnStacks): a push to server B of stacks server A already
// stored is committed by B without touching a stack row (no insert, no
// re-mark), as if B had stored them itself. Checked on the rows' xmin: a
// re-mark is an UPDATE, which writes a new row version.
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { PgStore } from '../server/store/pg-store.js';
import { ingestProfile } from '../server/ingest.js';
import { buildProfile, testPostgres } from './server-helpers.js';

async function stackRows(url: string): Promise<{ id: number; hash: string; xmin: string; check_lane: number | null }[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query('SELECT id::int AS id, hash::text AS hash, xmin::text AS xmin, check_lane FROM stacks ORDER BY id')).rows;
  } finally {
    await c.end();
  }
}

describe('servers on one PostgreSQL learn the stacks the others stored', () => {
  it('commits a push of stacks another server stored without writing a stack row', { timeout: 60_000 }, async () => {
    const url = (await testPostgres()).newDatabase();
    const a = await PgStore.open(url);
    const b = await PgStore.open(url);
    try {
      const now = Date.now();
      const samples = Array.from({ length: 300 }, (_, i) => ({ stack: ['main', `handler${i % 9}`, `leaf${i}`], values: [1 + (i % 5), 10] }));
      expect((await ingestProfile(a, buildProfile({ samples, timeMs: now - 20_000 }), { node: 'a' }, now)).ids).toHaveLength(1);
      await a.idle();
      const before = await stackRows(url);
      expect(before).toHaveLength(300);
      expect(before.every((r) => r.check_lane !== null), 'every stack row keeps its check lane').toBe(true);

      // The timer may have read them already; either way B holds them now.
      await b.learnStacks();
      expect((await ingestProfile(b, buildProfile({ samples, timeMs: now - 10_000 }), { node: 'b' }, now)).ids).toHaveLength(1);
      await b.idle();
      const after = await stackRows(url);
      expect(after, 'B inserted or re-marked stack rows A had stored').toEqual(before);

      // B packed its profile under the ids A's rows have: the same stacks and values give the same samples blob.
      const rows: { n_stacks: number; samples: Buffer }[] = [];
      await b.eachProfile(null, now - 60_000, now + 1, ['n_stacks', 'samples'], (r) => rows.push({ n_stacks: r.n_stacks, samples: r.samples }));
      expect(rows).toHaveLength(2);
      expect(rows[0]!.n_stacks).toBe(300);
      expect(rows[1]!.samples.equals(rows[0]!.samples)).toBe(true);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
