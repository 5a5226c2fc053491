// The query side's cached structures: the accumulator's direct index for
// dense stack ids (store/accumulator.ts) and the symbol cache's frame tree
// (store/frame-tree.ts), which outlives a query. A flame graph built from a
// warm cache that other queries filled must equal one from a fresh cache and
// the sums of the samples themselves.
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { StackAccumulator } from '../server/store/accumulator.js';
import { openStore } from '../server/store/open.js';
import type { ProfileStore } from '../server/store/store.js';
import { ingestProfile } from '../server/ingest.js';
import { mergeStacks, selectSeries } from '../server/query/merge.js';
import { buildFlameTree, topTable } from '../server/query/flamegraph.js';
import { SymbolCache, stackColumns } from '../server/store/symbols.js';
import { parseSelector } from '../server/selector.js';
import { buildProfile, flameSelfByPath, tempDir, type StackSpec } from './server-helpers.js';

describe('stack accumulator', () => {
  it('sums every value under its id, in first-seen order, whether an id is indexed or hashed (property)', () => {
    // Small ids (the store's dense ids) go through the direct index once the
    // accumulator has room for them, large ones (content hashes) through the
    // hash map; an id first seen above the room and later below it (the room
    // grows with the stacks held) must keep its one slot.
    const id = fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 40_000 }), fc.integer({ min: 1, max: 2 ** 53 - 1 }));
    fc.assert(
      fc.property(fc.array(fc.tuple(id, fc.integer({ min: 0, max: 1 }), fc.integer({ min: -1000, max: 1000 })), { minLength: 200, maxLength: 3000, size: 'max' }), (adds) => {
        const acc = new StackAccumulator(2, 16);
        const order: number[] = [];
        const sums = new Map<number, [number, number]>();
        for (const [stackId, col, v] of adds) {
          acc.add(stackId, col, v);
          let s = sums.get(stackId);
          if (!s) {
            sums.set(stackId, (s = [0, 0]));
            order.push(stackId);
          }
          s[col]! += v;
        }
        expect(acc.length).toBe(order.length);
        expect(Array.from(acc.ids.subarray(0, acc.length))).toEqual(order);
        for (let i = 0; i < acc.length; i++) {
          expect([acc.values[i * 2]!, acc.values[i * 2 + 1]!]).toEqual(sums.get(order[i]!));
        }
      }),
      { numRuns: 100 },
    );
  });
});

describe('flame trees from the symbol cache', () => {
  const dirs: { cleanup(): void }[] = [];
  afterAll(() => dirs.forEach((d) => d.cleanup()));

  async function flame(store: ProfileStore, cache: SymbolCache, selector: string) {
    const range = { fromMs: 0, toMs: Number.MAX_SAFE_INTEGER };
    const m = await mergeStacks(store, selectSeries(store, parseSelector(selector), range), range, [{ type: 'cpu', unit: 'nanoseconds' }]);
    const sym = await cache.resolve(Array.from(m.acc.ids.subarray(0, m.acc.length)));
    return buildFlameTree(sym, stackColumns([m.acc]));
  }

  // Stacks from a small vocabulary so that nodes share prefixes and names: a
  // frame is a function, or an inlined group (outermost first).
  const name = fc.constantFrom('main', 'run', 'parse', 'eval', 'leaf', 'alloc', 'b', 'a');
  const frame = fc.oneof({ weight: 4, arbitrary: name }, { weight: 1, arbitrary: fc.array(name, { minLength: 2, maxLength: 3 }) });
  const stack = fc.array(frame, { minLength: 1, maxLength: 6 });
  const nodeProfiles = fc.array(
    fc.record({ binary: fc.constantFrom('/usr/bin/app', '/usr/lib/libx.so'), samples: fc.array(fc.tuple(stack, fc.integer({ min: 1, max: 50 })), { minLength: 1, maxLength: 8 }) }),
    { minLength: 2, maxLength: 4 },
  );

  it('are the same from a warm cache other queries filled as from a fresh one, and sum the samples (property)', async () => {
    await fc.assert(
      fc.asyncProperty(nodeProfiles, fc.array(fc.nat(20), { minLength: 3, maxLength: 8 }), async (nodes, queryOrder) => {
        const t = tempDir();
        dirs.push(t);
        const store = await openStore(`sqlite:${t.dir}`);
        try {
          const expected = new Map<string, Map<string, number>>();
          const expectedAll = new Map<string, number>();
          for (let n = 0; n < nodes.length; n++) {
            const { binary, samples } = nodes[n]!;
            const body = buildProfile({ binary, samples: samples.map(([s, count]) => ({ stack: s, values: [count, count * 1000] })) });
            await ingestProfile(store, body, { node: `n${n}` }, Date.now());
            const mine = new Map<string, number>();
            for (const [s, count] of samples) {
              const path = (s as StackSpec).flat().join(';');
              mine.set(path, (mine.get(path) ?? 0) + count * 1000);
              expectedAll.set(path, (expectedAll.get(path) ?? 0) + count * 1000);
            }
            expected.set(`{node="n${n}"}`, mine);
          }
          await store.ingestBarrier();
          const selectors = [...expected.keys(), '{}'];
          const warm = new SymbolCache(store);
          for (const q of queryOrder) {
            const selector = selectors[q % selectors.length]!;
            const fromWarm = await flame(store, warm, selector);
            const fromFresh = await flame(store, new SymbolCache(store), selector);
            expect(JSON.stringify(fromWarm)).toBe(JSON.stringify(fromFresh));
            expect(flameSelfByPath(fromWarm)).toEqual(selector === '{}' ? expectedAll : expected.get(selector));
            // Totals: the root's is every sample; the top table agrees with it.
            const total = [...(selector === '{}' ? expectedAll : expected.get(selector)!).values()].reduce((a, b) => a + b, 0);
            expect(fromWarm.tree.total[0]).toBe(total);
            expect(topTable(fromWarm.functions, fromWarm.tree, 100).find((r) => r.name === 'main')?.total ?? 0).toBeLessThanOrEqual(total);
            // Pre-order, siblings sorted by name.
            for (let j = 1; j < fromWarm.tree.func.length; j++) expect(fromWarm.tree.parent[j]!).toBeLessThan(j);
            for (let j = 2; j < fromWarm.tree.func.length; j++) {
              const p = fromWarm.tree.parent[j]!;
              const prev = fromWarm.tree.parent.lastIndexOf(p, j - 1);
              if (prev > p) expect(fromWarm.functions.name[fromWarm.tree.func[prev]!]! <= fromWarm.functions.name[fromWarm.tree.func[j]!]!).toBe(true);
            }
          }
        } finally {
          await store.close();
        }
      }),
      { numRuns: 25 },
    );
  }, 120_000);
});
