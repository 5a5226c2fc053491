// Rollups (pre-merged 10-minute windows, per series and for the whole fleet)
// give exactly the merge of the raw profiles: for any range, with late
// arrivals, and across a restart, on both backends.
import { join } from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { openStore } from '../server/store/open.js';
import { MIGRATIONS } from '../server/store/schema.js';
import { PG_MIGRATIONS } from '../server/store/pg-store.js';
import { DB_FILE } from '../server/store/sqlite-store.js';
import { Db } from '../server/store/sqlite.js';
import { FLEET_SERIES_ID, FLEET_WINDOW_MS, ROLLUP_WINDOW_MS, parseStoreUrl, type ProfileStore } from '../server/store/store.js';
import { SymbolCache, stackColumns } from '../server/store/symbols.js';
import { ingestProfile } from '../server/ingest.js';
import { mergeStacks, selectSeries } from '../server/query/merge.js';
import { buildFlameTree } from '../server/query/flamegraph.js';
import { parseSelector } from '../server/selector.js';
import { BACKENDS, buildProfile, flameSelfByPath, testStoreUrl, type StackSpec } from './server-helpers.js';

let seed = 7;
const rnd = () => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return seed / 4294967296;
};
const FNS = ['main', 'a', 'b', 'c', 'd', 'e'];
const randomStack = (): StackSpec => ['main', ...Array.from({ length: 1 + Math.floor(rnd() * 4) }, () => FNS[1 + Math.floor(rnd() * 5)]!)];

interface Pushed {
  node: string;
  timeMs: number;
  samples: { stack: StackSpec; values: number[] }[];
}

function expected(pushed: Pushed[], fromMs: number, toMs: number, node?: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of pushed) {
    if (p.timeMs < fromMs || p.timeMs >= toMs || (node && p.node !== node)) continue;
    for (const s of p.samples) {
      const key = s.stack.join(';');
      out[key] = (out[key] ?? 0) + s.values[1]!;
    }
  }
  return out;
}

async function flame(store: ProfileStore, query: string, fromMs: number, toMs: number) {
  const range = { fromMs, toMs };
  const sel = selectSeries(store, parseSelector(query), range);
  const m = await mergeStacks(store, sel, range, [{ type: 'cpu', unit: 'nanoseconds' }]);
  const sym = await new SymbolCache(store).resolve(Array.from(m.acc.ids.subarray(0, m.acc.length)));
  const built = buildFlameTree(sym, stackColumns([m.acc]));
  return { self: Object.fromEntries(flameSelfByPath({ functions: built.functions, tree: built.tree })), profiles: m.profiles, pairs: m.pairs };
}

/**
 * Stacks as the store identifies them: buildProfile gives each function the
 * address of its first use in that profile, and a location is (binary,
 * address, lines), so the same names can be different stacks in two profiles.
 */
function stackIdentities(p: Pushed): string[] {
  const index = new Map<string, number>();
  return p.samples.map((s) =>
    [...s.stack]
      .reverse()
      .map((f) => {
        const name = String(f);
        if (!index.has(name)) index.set(name, index.size);
        return `${name}@${index.get(name)}`;
      })
      .join(';'),
  );
}

/** Distinct stacks per fleet window (a minute), summed over the windows of [fromMs, toMs): the pairs a read of fleet rollups sees. */
function fleetPairs(pushed: Pushed[], fromMs: number, toMs: number): number {
  const perWindow = new Map<number, Set<string>>();
  for (const p of pushed) {
    if (p.timeMs < fromMs || p.timeMs >= toMs) continue;
    const w = Math.floor(p.timeMs / FLEET_WINDOW_MS);
    let set = perWindow.get(w);
    if (!set) perWindow.set(w, (set = new Set()));
    for (const key of stackIdentities(p)) set.add(key);
  }
  let n = 0;
  for (const set of perWindow.values()) n += set.size;
  return n;
}

describe.each(BACKENDS)('rollups (%s)', (backend) => {
  it('merge the same as raw profiles for every range, with late arrivals, across restarts', async () => {
    const t = await testStoreUrl(backend);
    // 3 nodes, one push a minute for 45 minutes, aligned so windows are whole.
    const base = Math.floor(Date.now() / ROLLUP_WINDOW_MS) * ROLLUP_WINDOW_MS - 5 * ROLLUP_WINDOW_MS;
    const pushed: Pushed[] = [];
    let store = await openStore(t.url);
    const push = async (node: string, timeMs: number) => {
      const samples = Array.from({ length: 1 + Math.floor(rnd() * 6) }, () => {
        const n = 1 + Math.floor(rnd() * 9);
        return { stack: randomStack(), values: [n, n * 10_000_000] };
      });
      pushed.push({ node, timeMs, samples });
      await ingestProfile(store, buildProfile({ samples, timeMs }), { node }, Date.now());
    };
    for (let minute = 0; minute < 45; minute++) for (const node of ['n1', 'n2', 'n3']) await push(node, base + minute * 60_000 + 1234);
    await store.ingestBarrier();
    const count = async (seriesIds: number[] | null) => store.eachRollup(seriesIds, 0, Number.MAX_SAFE_INTEGER, () => undefined);
    // Windows 0..3 are closed (data runs 5 minutes past window 3's end): one rollup per node and window.
    // The fleet's minute windows 0..42 are closed (the last push is at minute 44, a minute of grace).
    expect(await count(null)).toBe(4 * 3);
    expect(await count([FLEET_SERIES_ID])).toBe(43);

    const ranges: [number, number][] = [
      [base + 7 * 60_000 + 30_000, base + 12 * 60_000 + 1], // ragged at the fleet's minute windows too
      [base, base + 45 * 60_000], // whole windows + open tail
      [base - 1, base + 40 * 60_000], // exactly windows 0..3 (+1 ms before)
      [base + 7 * 60_000, base + 33 * 60_000 + 5], // ragged edges
      [base + 10 * 60_000, base + 20 * 60_000], // one window
      [base + 3 * 60_000, base + 4 * 60_000], // inside a window: raw only
    ];
    const check = async () => {
      for (const [from, to] of ranges) {
        const all = await flame(store, '{}', from, to);
        expect(all.self).toEqual(expected(pushed, from, to));
        expect(all.profiles).toBe(pushed.filter((p) => p.timeMs >= from && p.timeMs < to).length);
        const one = await flame(store, '{node="n2"}', from, to);
        expect(one.self).toEqual(expected(pushed, from, to, 'n2'));
      }
    };
    await check();
    // Rollups are used: a node's whole windows read one pair per distinct stack of the window, fewer than stored raw.
    const inWindows = (p: Pushed) => p.node === 'n2' && p.timeMs < base + 40 * 60_000;
    const rawPairs = pushed.filter(inWindows).reduce((a, p) => a + new Set(stackIdentities(p)).size, 0);
    const perWindow = new Map<number, Set<string>>();
    for (const p of pushed.filter(inWindows)) {
      const w = Math.floor(p.timeMs / ROLLUP_WINDOW_MS);
      if (!perWindow.has(w)) perWindow.set(w, new Set());
      for (const key of stackIdentities(p)) perWindow.get(w)!.add(key);
    }
    const node = await flame(store, '{node="n2"}', base, base + 40 * 60_000);
    expect(node.pairs).toBe([...perWindow.values()].reduce((a, set) => a + set.size, 0));
    expect(node.pairs).toBeLessThan(rawPairs);
    const whole = await flame(store, '{}', base, base + 40 * 60_000);
    // ...and a merge of every series reads the fleet's: one pair per distinct stack and window (per node rollups would give more).
    expect(whole.pairs).toBe(fleetPairs(pushed, base, base + 40 * 60_000));

    // A late profile into a rolled-up window: visible at once, rolled up again later.
    await push('n1', base + 15 * 60_000 + 7);
    await check();
    await store.ingestBarrier();
    expect(await count(null)).toBe(4 * 3);
    expect(await count([FLEET_SERIES_ID])).toBe(43);
    await check();
    expect((await flame(store, '{}', base, base + 40 * 60_000)).pairs).toBe(fleetPairs(pushed, base, base + 40 * 60_000));

    // Restart: rollups and raw rows load back.
    await store.close();
    store = await openStore(t.url);
    await check();
    await store.close();
    t.cleanup();
  });

  it('written by an older schema, are dropped and rebuilt from the profiles at start', async () => {
    // Rollups written before the accumulator fix (2026-11-30) can miss values;
    // the last migration of each backend drops them, and the store rolls the
    // windows up again from the raw profiles.
    const t = await testStoreUrl(backend);
    const base = Math.floor(Date.now() / ROLLUP_WINDOW_MS) * ROLLUP_WINDOW_MS - 3 * ROLLUP_WINDOW_MS;
    const pushed: Pushed[] = [];
    let store = await openStore(t.url);
    for (let minute = 0; minute < 25; minute++) {
      for (const node of ['n1', 'n2']) {
        const samples = [{ stack: randomStack(), values: [2, 20_000_000] }];
        pushed.push({ node, timeMs: base + minute * 60_000 + 99, samples });
        await ingestProfile(store, buildProfile({ samples, timeMs: base + minute * 60_000 + 99 }), { node }, Date.now());
      }
    }
    await store.ingestBarrier();
    const count = async (seriesIds: number[] | null) => store.eachRollup(seriesIds, 0, Number.MAX_SAFE_INTEGER, () => undefined);
    const rollups = [await count(null), await count([FLEET_SERIES_ID])];
    expect(rollups).toEqual([2 * 2, 23]);
    await store.close();

    // As an older server left it: at the version before the rollup fix (migration 5 on SQLite, 4 on PostgreSQL), and rollups that lost their values.
    const parsed = parseStoreUrl(t.url);
    const beforeFix = parsed.backend === 'postgres' ? 3 : 4;
    expect(parsed.backend === 'postgres' ? PG_MIGRATIONS[beforeFix] : MIGRATIONS[beforeFix]).toMatch(/DELETE FROM rollups/);
    const statements = [`UPDATE schema_version SET version = ${beforeFix}`, "UPDATE rollups SET samples = ''"];
    if (parsed.backend === 'postgres') {
      const c = new pg.Client({ connectionString: parsed.url });
      await c.connect();
      for (const q of statements) await c.query(q.replace("''", "''::bytea"));
      await c.end();
    } else {
      const db = await Db.open(join(parsed.dir, DB_FILE));
      for (const q of statements) await db.run(q.replace("''", "X''"));
      await db.close();
    }
    store = await openStore(t.url);
    await store.ingestBarrier();
    expect([await count(null), await count([FLEET_SERIES_ID])]).toEqual(rollups);
    const whole = await flame(store, '{}', base, base + 20 * 60_000);
    expect(whole.self).toEqual(expected(pushed, base, base + 20 * 60_000));
    // Read from rollups (one pair per distinct stack and minute), not from raw rows only.
    expect(whole.pairs).toBe(fleetPairs(pushed, base, base + 20 * 60_000));
    await store.close();
    t.cleanup();
  });
});
