// A store an older server wrote keeps working after the samples coding
// changed (server/store/sample-codec.ts, coding 2): on real SQLite and
// PostgreSQL, every profile and rollup row is rewritten into coding 1 (as
// servers before wrote them, test/helpers/legacy-sample-codec.ts), and the
// merged flame graphs, single profiles and rollups rebuilt from a mix of old
// and new rows answer what was pushed.
import { join } from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { openStore } from '../server/store/open.js';
import { DB_FILE } from '../server/store/sqlite-store.js';
import { Db, type SqlValue } from '../server/store/sqlite.js';
import { decodeSamples, sampleCoding } from '../server/store/sample-codec.js';
import { ROLLUP_WINDOW_MS, parseStoreUrl, type ProfileStore } from '../server/store/store.js';
import { SymbolCache, stackColumns } from '../server/store/symbols.js';
import { ingestProfile } from '../server/ingest.js';
import { mergeStacks, selectSeries } from '../server/query/merge.js';
import { buildFlameTree } from '../server/query/flamegraph.js';
import { parseSelector } from '../server/selector.js';
import { legacyEncode } from './helpers/legacy-sample-codec.js';
import { BACKENDS, buildProfile, flameSelfByPath, testStoreUrl, type StackSpec } from './server-helpers.js';

let seed = 11;
const rnd = () => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return seed / 4294967296;
};
const FNS = ['main', 'a', 'b', 'c', 'd', 'e', 'f'];
const randomStack = (): StackSpec => ['main', ...Array.from({ length: 1 + Math.floor(rnd() * 4) }, () => FNS[1 + Math.floor(rnd() * 6)]!)];
const PERIOD_NS = 10_000_000;

interface Pushed {
  node: string;
  timeMs: number;
  samples: { stack: StackSpec; values: number[] }[];
}

/** Self value per stack path of type `col` (0 samples, 1 cpu), summed over pushes in [fromMs, toMs). */
function expected(pushed: Pushed[], fromMs: number, toMs: number, col: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of pushed) {
    if (p.timeMs < fromMs || p.timeMs >= toMs) continue;
    for (const s of p.samples) out[s.stack.join(';')] = (out[s.stack.join(';')] ?? 0) + s.values[col]!;
  }
  // A stack whose values sum to 0 has no self in the flame graph.
  for (const [k, v] of Object.entries(out)) if (v === 0) delete out[k];
  return out;
}

async function flame(store: ProfileStore, fromMs: number, toMs: number, type: 'cpu' | 'samples'): Promise<Record<string, number>> {
  const range = { fromMs, toMs };
  await store.refresh();
  const sel = selectSeries(store, parseSelector('{}'), range);
  const m = await mergeStacks(store, sel, range, [type === 'cpu' ? { type: 'cpu', unit: 'nanoseconds' } : { type: 'samples', unit: 'count' }]);
  const sym = await new SymbolCache(store).resolve(Array.from(m.acc.ids.subarray(0, m.acc.length)));
  const built = buildFlameTree(sym, stackColumns([m.acc]));
  const self = Object.fromEntries(flameSelfByPath({ functions: built.functions, tree: built.tree }));
  for (const [k, v] of Object.entries(self)) if (v === 0) delete self[k];
  return self;
}

/** SQL on the store's database: `?` placeholders on both backends. */
async function withDb<T>(url: string, fn: (all: (q: string, p?: SqlValue[]) => Promise<Record<string, unknown>[]>, run: (q: string, p: SqlValue[]) => Promise<void>) => Promise<T>): Promise<T> {
  const parsed = parseStoreUrl(url);
  if (parsed.backend === 'postgres') {
    const c = new pg.Client({ connectionString: parsed.url });
    await c.connect();
    const numbered = (q: string) => {
      let i = 0;
      return q.replace(/\?/g, () => `$${++i}`);
    };
    try {
      return await fn(
        async (q, p = []) => (await c.query(numbered(q), p)).rows as Record<string, unknown>[],
        async (q, p) => void (await c.query(numbered(q), p)),
      );
    } finally {
      await c.end();
    }
  }
  const db = await Db.open(join(parsed.dir, DB_FILE));
  try {
    return await fn(
      (q, p = []) => db.all<Record<string, unknown>>(q, p),
      async (q, p) => void (await db.run(q, p)),
    );
  } finally {
    await db.close();
  }
}

const KEYS = { profiles: ['id'], rollups: ['series_id', 'window_ms', 'profile_type_id'] } as const;

/** Codings of every stored blob, per table. */
async function codings(url: string): Promise<Record<string, number[]>> {
  return withDb(url, async (all) => {
    const out: Record<string, number[]> = {};
    for (const table of Object.keys(KEYS)) out[table] = (await all(`SELECT samples FROM ${table}`)).map((r) => sampleCoding(r.samples as Buffer));
    return out;
  });
}

/** Rewrites every profile and rollup blob into coding 1, as an older server would have written it; returns how many. */
async function rewriteAsOlderServer(url: string, backend: string): Promise<number> {
  return withDb(url, async (all, run) => {
    let n = 0;
    for (const [table, keys] of Object.entries(KEYS)) {
      // PostgreSQL's bigints come back as text: passed back as they came.
      const cols = keys.map((k) => (backend === 'postgres' ? `${k}::text AS ${k}` : k)).join(', ');
      for (const r of await all(`SELECT ${cols}, scales, samples FROM ${table}`)) {
        const scales = String(r.scales).split(',').map(Number);
        const { stackIds, values } = decodeSamples(r.samples as Buffer, scales);
        const old = legacyEncode(stackIds, values, scales);
        await run(`UPDATE ${table} SET samples = ? WHERE ${keys.map((k) => `${k} = ?`).join(' AND ')}`, [old, ...keys.map((k) => r[k] as SqlValue)]);
        n++;
      }
    }
    return n;
  });
}

describe.each(BACKENDS)('samples blobs written by an older server (%s)', (backend) => {
  it('answer the same merges and profiles as in coding 2, beside new rows and in rollups rebuilt from both', async () => {
    const t = await testStoreUrl(backend);
    const base = Math.floor(Date.now() / ROLLUP_WINDOW_MS) * ROLLUP_WINDOW_MS - 4 * ROLLUP_WINDOW_MS;
    const pushed: Pushed[] = [];
    let store = await openStore(t.url);
    const push = async (node: string, timeMs: number) => {
      // Mostly 1..3 samples (folded into the id delta), sometimes more; some profiles' cpu is not samples * period.
      const exact = rnd() < 0.7;
      const samples = Array.from({ length: 1 + Math.floor(rnd() * 8) }, () => {
        const n = rnd() < 0.8 ? 1 + Math.floor(rnd() * 3) : 4 + Math.floor(rnd() * 5000);
        return { stack: randomStack(), values: [n, exact ? n * PERIOD_NS : n * PERIOD_NS + Math.floor(rnd() * 3) * 1_000_000] };
      });
      pushed.push({ node, timeMs, samples });
      await ingestProfile(store, buildProfile({ samples, timeMs }), { node }, Date.now());
    };
    try {
      for (let minute = 0; minute < 25; minute++) for (const node of ['n1', 'n2']) await push(node, base + minute * 60_000 + 777);
      await store.ingestBarrier();
      const written = await codings(t.url);
      expect(written.profiles).toHaveLength(50);
      expect(written.rollups!.length).toBeGreaterThan(0);
      expect(new Set([...written.profiles!, ...written.rollups!])).toEqual(new Set([2]));

      const ranges: [number, number][] = [
        [base, base + 25 * 60_000], // whole windows (rollups) and the open tail
        [base + 3 * 60_000 + 5, base + 17 * 60_000], // ragged edges
        [base + 60_000, base + 2 * 60_000], // one raw minute
      ];
      const answers = async () => {
        const out: Record<string, number>[] = [];
        for (const [from, to] of ranges) for (const type of ['cpu', 'samples'] as const) out.push(await flame(store, from, to, type));
        return out;
      };
      const want = ranges.flatMap(([from, to]) => [expected(pushed, from, to, 1), expected(pushed, from, to, 0)]);
      const before = await answers();
      expect(before).toEqual(want);
      const firstProfile = await store.getProfile(1);
      expect(firstProfile).toBeDefined();
      const decodedBefore = decodeSamples(firstProfile!.samples, firstProfile!.scales.split(',').map(Number));
      expect(decodedBefore.values.length).toBe(2 * pushed[0]!.samples.length);

      await store.close();
      expect(await rewriteAsOlderServer(t.url, backend)).toBe(written.profiles!.length + written.rollups!.length);
      const old = await codings(t.url);
      expect(new Set([...old.profiles!, ...old.rollups!])).toEqual(new Set([1]));

      store = await openStore(t.url);
      expect(await answers()).toEqual(want);
      const firstOld = await store.getProfile(1);
      expect(decodeSamples(firstOld!.samples, firstOld!.scales.split(',').map(Number))).toEqual(decodedBefore);

      // New rows (coding 2) into the same windows and later ones: the merges read both, and the
      // rollups rebuilt for those windows merge old rows with new ones.
      for (let minute = 0; minute < 45; minute += 4) await push('n3', base + minute * 60_000 + 999);
      await store.ingestBarrier();
      const mixed = await codings(t.url);
      expect(mixed.profiles!.filter((c) => c === 1)).toHaveLength(50);
      expect(mixed.profiles!.filter((c) => c === 2)).toHaveLength(12);
      expect(mixed.rollups!.filter((c) => c === 2).length).toBeGreaterThan(0);
      ranges.push([base, base + 45 * 60_000]);
      expect(await answers()).toEqual(ranges.flatMap(([from, to]) => [expected(pushed, from, to, 1), expected(pushed, from, to, 0)]));
    } finally {
      await store.close();
      t.cleanup();
    }
  });

  it('is refused by a server from before coding 2: the schema version says the store is newer', async () => {
    const t = await testStoreUrl(backend);
    try {
      const store = await openStore(t.url);
      await store.close();
      // Servers before coding 2 knew 5 migrations on SQLite and 4 on PostgreSQL: a store written now must be at a later version.
      const parsed = parseStoreUrl(t.url);
      const lastBeforeCoding2 = parsed.backend === 'postgres' ? 4 : 5;
      const read = 'SELECT version FROM schema_version';
      const raise = 'UPDATE schema_version SET version = version + 1';
      let version: number;
      if (parsed.backend === 'postgres') {
        const c = new pg.Client({ connectionString: parsed.url });
        await c.connect();
        version = (await c.query<{ version: number }>(read)).rows[0]!.version;
        await c.query(raise);
        await c.end();
      } else {
        const db = await Db.open(join(parsed.dir, DB_FILE));
        version = (await db.get<{ version: number }>(read))!.version;
        await db.run(raise);
        await db.close();
      }
      expect(version).toBeGreaterThan(lastBeforeCoding2);
      // And a server that knows fewer migrations than the store has refuses it (played here by raising the stored version by one).
      await expect(openStore(t.url)).rejects.toThrow(/newer than this server/);
    } finally {
      t.cleanup();
    }
  });
});
