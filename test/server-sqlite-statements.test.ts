// Db.runCached (server/store/sqlite.ts): the kept statements the ingest
// commit uses. A statement that cannot be prepared must fail its run (sqlite3
// drops runs queued behind a failed prepare without calling them back, which
// would hang the commit queue), a kept statement must bind each run's own
// values, and close() must finalize what it kept (an unfinalized statement
// makes sqlite3's close fail with SQLITE_BUSY).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Db, insertMany } from '../server/store/sqlite.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function openDb(): Promise<Db> {
  const dir = mkdtempSync(join(tmpdir(), 'fleetprof-stmt-'));
  dirs.push(dir);
  const db = await Db.open(join(dir, 'x.db'));
  await db.exec('CREATE TABLE t (a INTEGER, b BLOB)');
  return db;
}

describe('Db.runCached', () => {
  it('rejects a statement that cannot be prepared, every time, instead of hanging', async () => {
    const db = await openDb();
    await expect(db.runCached('INSERT INTO missing_table VALUES (?)', [1])).rejects.toThrow(/no such table/);
    // The failed statement is not kept: once the table exists, the same text works.
    await expect(db.runCached('INSERT INTO missing_table VALUES (?)', [1])).rejects.toThrow(/no such table/);
    await db.exec('CREATE TABLE missing_table (a INTEGER)');
    await db.runCached('INSERT INTO missing_table VALUES (?)', [2]);
    expect(await db.all('SELECT a FROM missing_table')).toEqual([{ a: 2 }]);
    await db.close();
  });

  it('binds each run its own values, in and out of transactions, past the cache size', async () => {
    const db = await openDb();
    const want: { a: number; b: Buffer }[] = [];
    for (let i = 0; i < 200; i++) {
      // 1..4 rows per insert: the same few texts are reused; 80 more distinct texts push the oldest out.
      const rows = Array.from({ length: 1 + (i % 4) }, (_, k) => [i * 10 + k, Buffer.from([i & 255, k])]);
      const run = () => insertMany(db, 't', ['a', 'b'], rows);
      if (i % 3 === 0) await db.transaction(run);
      else await run();
      for (const [a, b] of rows) want.push({ a: a as number, b: b as Buffer });
      if (i % 50 === 0) for (let n = 0; n < 20; n++) await db.runCached(`INSERT INTO t (a) SELECT ${-(i * 100 + n)} WHERE 0`, []);
    }
    const got = await db.all<{ a: number; b: Buffer }>('SELECT a, b FROM t ORDER BY a');
    expect(got).toEqual(want.sort((x, y) => x.a - y.a));
    // close() finalizes the kept statements first; sqlite3 refuses to close with one open.
    await expect(db.close()).resolves.toBeUndefined();
  });
});
