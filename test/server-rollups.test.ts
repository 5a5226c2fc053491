// Rollups (pre-merged 10-minute windows) give exactly the merge of the raw
// profiles: for any range, with late arrivals, and across a restart.
import { afterAll, describe, expect, it } from 'vitest';
import { SqliteStore } from '../server/store/sqlite-store.js';
import { ROLLUP_WINDOW_MS } from '../server/store/store.js';
import { SymbolCache, stackColumns } from '../server/store/symbols.js';
import { ingestProfile } from '../server/ingest.js';
import { mergeStacks, selectSeries } from '../server/query/merge.js';
import { buildFlameTree } from '../server/query/flamegraph.js';
import { parseSelector } from '../server/selector.js';
import { buildProfile, flameSelfByPath, tempDir, type StackSpec } from './server-helpers.js';

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

async function flame(store: SqliteStore, query: string, fromMs: number, toMs: number) {
  const range = { fromMs, toMs };
  const sel = selectSeries(store, parseSelector(query), range);
  const m = await mergeStacks(store, sel, range, [{ type: 'cpu', unit: 'nanoseconds' }]);
  const sym = await new SymbolCache(store).resolve(Array.from(m.acc.ids.subarray(0, m.acc.length)));
  const built = buildFlameTree(sym, stackColumns([m.acc]));
  return { self: Object.fromEntries(flameSelfByPath({ functions: built.functions, tree: built.tree })), profiles: m.profiles, pairs: m.pairs };
}

describe('rollups', () => {
  const t = tempDir('fleetprof-rollups-');
  afterAll(() => t.cleanup());

  it('merge the same as raw profiles for every range, with late arrivals, across restarts', async () => {
    // 3 nodes, one push a minute for 45 minutes, aligned so windows are whole.
    const base = Math.floor(Date.now() / ROLLUP_WINDOW_MS) * ROLLUP_WINDOW_MS - 5 * ROLLUP_WINDOW_MS;
    const pushed: Pushed[] = [];
    let store = await SqliteStore.open(t.dir);
    const push = async (node: string, timeMs: number) => {
      const samples = Array.from({ length: 1 + Math.floor(rnd() * 6) }, () => {
        const n = 1 + Math.floor(rnd() * 9);
        return { stack: randomStack(), values: [n, n * 10_000_000] };
      });
      pushed.push({ node, timeMs, samples });
      await ingestProfile(store, buildProfile({ samples, timeMs }), { node }, Date.now());
    };
    for (let minute = 0; minute < 45; minute++) for (const node of ['n1', 'n2', 'n3']) await push(node, base + minute * 60_000 + 1234);
    await store.idle();
    const count = async () => (await store.reader.get<{ n: number }>('SELECT COUNT(*) AS n FROM rollups'))!.n;
    // Windows 0..3 are closed (data runs 5 minutes past window 3's end).
    expect(await count()).toBe(4 * 3);

    const ranges: [number, number][] = [
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
    // Rollups are used: fewer (stack, value) pairs read than stored raw.
    const whole = await flame(store, '{}', base, base + 40 * 60_000);
    const rawPairs = pushed.filter((p) => p.timeMs < base + 40 * 60_000).reduce((a, p) => a + new Set(p.samples.map((s) => s.stack.join(';'))).size, 0);
    expect(whole.pairs).toBeLessThan(rawPairs);

    // A late profile into a rolled-up window: visible at once, rolled up again later.
    await push('n1', base + 15 * 60_000 + 7);
    await check();
    await store.idle();
    await store.ingestBarrier();
    expect(await count()).toBe(4 * 3);
    await check();

    // Restart: rollups and raw rows load back.
    await store.close();
    store = await SqliteStore.open(t.dir);
    await check();
    await store.close();
  });
});
