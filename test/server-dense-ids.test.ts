// Dense stack ids (server/store/stack-ids.ts): the database hands out small
// integer ids under the unique content hash. Checked on real SQLite and
// PostgreSQL: ids stay dense across re-marks, two servers on one PostgreSQL
// give each content one id, and data directories / databases of the previous
// schema (stack ids = hashes) migrate with their profiles re-packed.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { openStore } from '../server/store/open.js';
import { MIGRATIONS } from '../server/store/schema.js';
import { PG_MIGRATIONS, PARTITION_MS, PgStore } from '../server/store/pg-store.js';
import { DB_FILE, SqliteStore } from '../server/store/sqlite-store.js';
import { Db } from '../server/store/sqlite.js';
import { FLEET_SERIES_ID, packIds, parseStoreUrl, type ProfileStore } from '../server/store/store.js';
import { SymbolCache, stackColumns } from '../server/store/symbols.js';
import { ingestProfile } from '../server/ingest.js';
import { mergeStacks, selectSeries } from '../server/query/merge.js';
import { buildFlameTree } from '../server/query/flamegraph.js';
import { parseSelector } from '../server/selector.js';
import { legacyEncode } from './helpers/legacy-sample-codec.js';
import { BACKENDS, buildProfile, flameSelfByPath, testPostgres, testStoreUrl, type StackSpec } from './server-helpers.js';

/** Runs SQL against the store's database directly (what a test must see that the interface hides). */
async function sql<T>(url: string, query: string): Promise<T[]> {
  const parsed = parseStoreUrl(url);
  if (parsed.backend === 'postgres') {
    const c = new pg.Client({ connectionString: parsed.url });
    await c.connect();
    try {
      return (await c.query(query)).rows as T[];
    } finally {
      await c.end();
    }
  }
  const db = await Db.open(join(parsed.dir, DB_FILE));
  try {
    return await db.all<T>(query);
  } finally {
    await db.close();
  }
}

async function flame(store: ProfileStore, fromMs: number, toMs: number): Promise<Record<string, number>> {
  const range = { fromMs, toMs };
  await store.refresh();
  const sel = selectSeries(store, parseSelector('{}'), range);
  const m = await mergeStacks(store, sel, range, [{ type: 'cpu', unit: 'nanoseconds' }]);
  const sym = await new SymbolCache(store).resolve(Array.from(m.acc.ids.subarray(0, m.acc.length)));
  const built = buildFlameTree(sym, stackColumns([m.acc]));
  return Object.fromEntries(flameSelfByPath({ functions: built.functions, tree: built.tree }));
}

const stackOf = (i: number): StackSpec => ['main', `f${i % 7}`, `g${i}`];

describe.each(BACKENDS)('dense stack ids (%s)', (backend) => {
  it('are 1..n for n distinct stacks, across repeated stacks and re-marks in later hours', async () => {
    const t = await testStoreUrl(backend);
    const store = await openStore(t.url);
    try {
      const hour = 3_600_000;
      const t0 = Math.floor(Date.now() / hour) * hour - 5 * hour;
      // Hour k pushes stacks 0..10k+9: each hour re-marks the earlier ones and adds ten.
      for (let k = 0; k < 5; k++) {
        const samples = Array.from({ length: 10 * k + 10 }, (_, i) => ({ stack: stackOf(i), values: [1, 10] }));
        await ingestProfile(store, buildProfile({ samples, timeMs: t0 + k * hour + 1000 }), { node: 'a' }, t0 + k * hour + 2000);
      }
      await store.idle();
      const [r] = await sql<{ n: number; lo: number; hi: number; hashes: number }>(
        t.url,
        'SELECT COUNT(*)::int AS n, MIN(id)::int AS lo, MAX(id)::int AS hi, COUNT(DISTINCT hash)::int AS hashes FROM stacks'.replace(/::int/g, backend === 'sqlite' ? '' : '::int'),
      );
      expect(r).toEqual({ n: 50, lo: 1, hi: 50, hashes: 50 });
      const self = await flame(store, t0, t0 + 6 * hour);
      expect(Object.keys(self)).toHaveLength(50);
      expect(self['main;f0;g0']).toBe(50);
      expect(self['main;f6;g48']).toBe(10);
    } finally {
      await store.close();
      t.cleanup();
    }
  });
});

describe('dense stack ids with two servers on one PostgreSQL', () => {
  it('give each stack content one id when both insert the same new stacks at once', async () => {
    const url = (await testPostgres()).newDatabase();
    const a = await PgStore.open(url);
    const b = await PgStore.open(url);
    try {
      const now = Date.now();
      const pushes: Promise<unknown>[] = [];
      const want: Record<string, number> = {};
      for (let round = 0; round < 8; round++) {
        // Both servers get the same 40 new stacks in the same round, and the earlier ones again.
        const samples = Array.from({ length: 40 * (round + 1) }, (_, i) => ({ stack: stackOf(i), values: [1, 10] }));
        for (const [store, node] of [
          [a, 'a'],
          [b, 'b'],
        ] as const) {
          pushes.push(ingestProfile(store, buildProfile({ samples, timeMs: now - 60_000 + round }), { node }, now));
          for (const s of samples) want[s.stack.join(';')] = (want[s.stack.join(';')] ?? 0) + 10;
        }
      }
      await Promise.all(pushes);
      await a.idle();
      await b.idle();
      const [r] = await sql<{ n: number; hashes: number; hi: number }>(url, 'SELECT COUNT(*)::int AS n, COUNT(DISTINCT hash)::int AS hashes, MAX(id)::int AS hi FROM stacks');
      expect(r!.n).toBe(320);
      expect(r!.hashes).toBe(320);
      // Both servers read the same answer, every stack resolved.
      expect(await flame(a, now - 120_000, now + 1)).toEqual(want);
      expect(await flame(b, now - 120_000, now + 1)).toEqual(want);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

/** The data of a store at the previous schema: stack ids are content hashes (53-bit), packed samples store them. */
const OLD = {
  fnIds: [9_007_199_254_740_000, 4_503_599_627_370_001, 1_234_567_890_123],
  locIds: [8_000_000_000_000_001, 7_000_000_000_000_002, 6_000_000_000_000_003],
  // main;a and main;b, leaf first.
  stacks: [
    [5_000_000_000_000_111, [1, 0]],
    [3_000_000_000_000_222, [2, 0]],
  ] as [number, number[]][],
  seriesId: 777_777_777_777,
  typeId: 555_555_555,
  descriptor: JSON.stringify({ sampleTypes: [{ type: 'samples', unit: 'count' }, { type: 'cpu', unit: 'nanoseconds' }], periodType: undefined, defaultSampleType: '' }),
};

function oldBlob(): { blob: Buffer; scales: string } {
  const ids = OLD.stacks.map((s) => s[0]).sort((a, b) => a - b);
  // main;b (the smaller hash) 3 samples, main;a 5; scales as written then: GCDs; packed as servers then packed (coding 1).
  const values = ids.flatMap((id) => (id === OLD.stacks[1]![0] ? [3, 30] : [5, 50]));
  return { blob: legacyEncode(ids, values, [1, 10]), scales: '1,10' };
}

describe('migration of stores with hash stack ids', () => {
  it('SQLite schema 3 -> 4: profiles re-packed under dense ids, rollups rebuilt', async () => {
    const t = await testStoreUrl('sqlite');
    const parsed = parseStoreUrl(t.url);
    if (parsed.backend !== 'sqlite') throw new Error('expected a SQLite store URL');
    const dir = parsed.dir;
    const timeMs = Math.floor(Date.now() / 600_000) * 600_000 - 30 * 60_000;
    {
      mkdirSync(dir, { recursive: true });
      const db = await Db.open(join(dir, DB_FILE));
      await db.exec('CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (3);');
      for (const m of MIGRATIONS.slice(0, 3)) await db.exec(m as string);
      const names = ['main', 'a', 'b'];
      for (let i = 0; i < 3; i++) {
        await db.run('INSERT INTO functions VALUES (?, ?, ?, ?, 0, 1)', [OLD.fnIds[i]!, names[i]!, names[i]!, 'src.go']);
        await db.run("INSERT INTO locations VALUES (?, 0, '0', 0, ?, 1)", [OLD.locIds[i]!, `${OLD.fnIds[i]},0`]);
      }
      for (const [id, locs] of OLD.stacks) await db.run('INSERT INTO stacks VALUES (?, ?, 1)', [id, packIds(locs.map((l) => OLD.locIds[l]!))]);
      await db.run('INSERT INTO series VALUES (?, ?)', [OLD.seriesId, JSON.stringify({ node: 'old' })]);
      await db.run('INSERT INTO profile_types VALUES (?, ?)', [OLD.typeId, OLD.descriptor]);
      await db.run('INSERT INTO series_types VALUES (?, ?)', [OLD.seriesId, OLD.typeId]);
      const { blob, scales } = oldBlob();
      await db.run("INSERT INTO profiles VALUES (1, ?, ?, 10000000000, 10000000, ?, ?, '8,80', 2, ?)", [OLD.seriesId, timeMs, OLD.typeId, scales, blob]);
      await db.run("INSERT INTO rollups VALUES (?, ?, ?, 1, 10000000000, '10000000', ?, ?)", [OLD.seriesId, timeMs, OLD.typeId, scales, blob]);
      await db.close();
    }
    const store = await SqliteStore.open(dir);
    try {
      expect(await sql<{ version: number }>(t.url, 'SELECT version FROM schema_version')).toEqual([{ version: MIGRATIONS.length }]);
      const rows = await sql<{ id: number; hash: number }>(t.url, 'SELECT id, hash FROM stacks ORDER BY id');
      expect(rows).toEqual([
        { id: 1, hash: OLD.stacks[1]![0] },
        { id: 2, hash: OLD.stacks[0]![0] },
      ]);
      expect(await flame(store, timeMs - 1, timeMs + 1)).toEqual({ 'main;a': 50, 'main;b': 30 });
      // New ingests of the same code find the migrated rows (by hash): no new stack rows, ids continue densely.
      await ingestProfile(store, buildProfile({ samples: [{ stack: ['main', 'zz'], values: [1, 10] }], timeMs: timeMs + 1000 }), { node: 'new' }, Date.now());
      await store.idle();
      expect((await sql<{ id: number }>(t.url, 'SELECT id FROM stacks ORDER BY id')).map((r) => r.id)).toEqual([1, 2, 3]);
    } finally {
      await store.close();
      t.cleanup();
    }
  });

  it('PostgreSQL schema 1 -> 3: profiles re-packed under dense ids, rollups kept from then on', async () => {
    const url = (await testPostgres()).newDatabase();
    const timeMs = Math.floor(Date.now() / 600_000) * 600_000 - 30 * 60_000;
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      await c.query('CREATE TABLE schema_version (version integer NOT NULL); INSERT INTO schema_version VALUES (1);');
      await c.query(PG_MIGRATIONS[0] as string);
      const day = Math.floor(timeMs / PARTITION_MS);
      await c.query(`CREATE TABLE profiles_d${day} PARTITION OF profiles FOR VALUES FROM (${day * PARTITION_MS}) TO (${(day + 1) * PARTITION_MS})`);
      const names = ['main', 'a', 'b'];
      for (let i = 0; i < 3; i++) {
        await c.query("INSERT INTO functions VALUES ($1, $2, $2, 'src.go', 0, 1)", [OLD.fnIds[i], names[i]]);
        await c.query("INSERT INTO locations VALUES ($1, 0, '0', false, $2, 1)", [OLD.locIds[i], `${OLD.fnIds[i]},0`]);
      }
      for (const [id, locs] of OLD.stacks) await c.query('INSERT INTO stacks VALUES ($1, $2, 1)', [id, packIds(locs.map((l) => OLD.locIds[l]!))]);
      await c.query('INSERT INTO series (id, labels, first_ms, last_ms) VALUES ($1, $2, $3, $3)', [OLD.seriesId, JSON.stringify({ node: 'old' }), timeMs]);
      await c.query('INSERT INTO profile_types VALUES ($1, $2)', [OLD.typeId, OLD.descriptor]);
      await c.query('INSERT INTO series_types VALUES ($1, $2)', [OLD.seriesId, OLD.typeId]);
      const { blob, scales } = oldBlob();
      await c.query("INSERT INTO profiles VALUES (nextval('profile_ids'), $1, $2, 10000000000, 10000000, $3, $4, '8,80', 2, $5)", [OLD.seriesId, timeMs, OLD.typeId, scales, blob]);
    } finally {
      await c.end();
    }
    const store = await PgStore.open(url);
    try {
      expect(await sql<{ version: number }>(url, 'SELECT version FROM schema_version')).toEqual([{ version: PG_MIGRATIONS.length }]);
      const rows = await sql<{ id: string; hash: string }>(url, 'SELECT id::text, hash::text FROM stacks ORDER BY id');
      expect(rows).toEqual([
        { id: '1', hash: String(OLD.stacks[1]![0]) },
        { id: '2', hash: String(OLD.stacks[0]![0]) },
      ]);
      expect(await flame(store, timeMs - 1, timeMs + 1)).toEqual({ 'main;a': 50, 'main;b': 30 });
      // The old window is dirty, so it gets rolled up; the rollup answers the same.
      await ingestProfile(store, buildProfile({ samples: [{ stack: ['main', 'zz'], values: [1, 10] }], timeMs: timeMs + 25 * 60_000 }), { node: 'old' }, Date.now());
      await store.ingestBarrier();
      expect(await store.eachRollup([FLEET_SERIES_ID], timeMs, timeMs + 600_000, () => undefined)).toBe(1);
      expect(await flame(store, timeMs - 600_000, timeMs + 600_000)).toEqual({ 'main;a': 50, 'main;b': 30 });
    } finally {
      await store.close();
    }
  });
});
