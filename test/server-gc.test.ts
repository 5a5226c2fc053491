// Garbage collection of symbols (server/store/store.ts): retention removes
// profiles, then every symbol row no retained profile references; what is
// still referenced keeps answering queries the same.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../server/store/open.js';
import { MARK_EPOCH_MS, type ProfileStore } from '../server/store/store.js';
import { ingestProfile } from '../server/ingest.js';
import { mergeStacks, selectSeries } from '../server/query/merge.js';
import { buildFlameTree } from '../server/query/flamegraph.js';
import { SymbolCache, stackColumns } from '../server/store/symbols.js';
import { parseSelector } from '../server/selector.js';
import { BACKENDS, buildProfile, flameSelfByPath, getJson, ingest, startTestServer, testStoreUrl } from './server-helpers.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const T1 = T0 + 3 * 86_400_000;
const v = (n: number) => [n, n * 10_000_000];

async function flame(store: ProfileStore) {
  const range = { fromMs: 0, toMs: Number.MAX_SAFE_INTEGER };
  const m = await mergeStacks(store, selectSeries(store, parseSelector('{}'), range), range, [{ type: 'cpu', unit: 'nanoseconds' }]);
  const sym = await new SymbolCache(store).resolve(Array.from(m.acc.ids.subarray(0, m.acc.length)));
  const built = buildFlameTree(sym, stackColumns([m.acc]));
  return Object.fromEntries(flameSelfByPath({ functions: built.functions, tree: built.tree }));
}

const old = buildProfile({ timeMs: T0, samples: [{ stack: ['main', 'old_only', 'leaf_a'], values: v(3) }, { stack: ['main', 'shared'], values: v(2) }] });
const recent = buildProfile({ timeMs: T1, samples: [{ stack: ['main', 'shared'], values: v(5) }, { stack: ['main', 'new_only'], values: v(1) }] });

describe.each(BACKENDS)('symbol garbage collection (%s)', (backend) => {
  const urls: { url: string; cleanup(): void }[] = [];
  beforeAll(async () => {
    urls.push(await testStoreUrl(backend), await testStoreUrl(backend), await testStoreUrl(backend));
  });
  afterAll(() => urls.forEach((u) => u.cleanup()));

  it('after retention drops some profiles, rows only they used are gone and the rest answers the same', async () => {
    const store = await openStore(urls[0]!.url);
    // Ingested as they happen: the profile time is the time of arrival.
    await ingestProfile(store, old, { node: 'a' }, T0);
    await ingestProfile(store, recent, { node: 'a' }, T1);
    const before = await store.symbolRowCounts();
    // Reference: a store that only ever saw the recent profile.
    const ref = await openStore(urls[1]!.url);
    await ingestProfile(ref, recent, { node: 'a' }, T1);
    const refCounts = await ref.symbolRowCounts();
    const refFlame = await flame(ref);
    await ref.close();
    expect(before.stack).toBeGreaterThan(refCounts.stack);
    expect(before.function).toBeGreaterThan(refCounts.function);

    // Two mark epochs later, drop what is older than a day before the recent profile.
    const res = await store.retain(T1 - 86_400_000, T1 + 2 * MARK_EPOCH_MS);
    expect(res.profiles).toBe(1);
    expect(await store.symbolRowCounts()).toEqual(refCounts);
    expect(await flame(store)).toEqual(refFlame);
    expect(refFlame).toEqual({ 'main;shared': 50_000_000, 'main;new_only': 10_000_000 });

    // The recent profile's rows are still written when it comes again (the ingest cache stays right).
    await ingestProfile(store, recent, { node: 'a' }, T1 + 2 * MARK_EPOCH_MS);
    expect(await store.symbolRowCounts()).toEqual(refCounts);
    await store.close();
  });

  it('after retention has dropped every profile, every symbol table is empty', async () => {
    const store = await openStore(urls[0]!.url);
    expect((await store.symbolRowCounts()).stack).toBeGreaterThan(0);
    const res = await store.retain(Number.MAX_SAFE_INTEGER, T1 + 4 * MARK_EPOCH_MS);
    expect(res.profiles).toBe(2);
    expect(await store.symbolRowCounts()).toEqual({ mapping: 0, function: 0, location: 0, stack: 0 });
    // Symbols written again after the sweep are complete (no row assumed from before).
    await ingestProfile(store, old, { node: 'b' }, T1 + 4 * MARK_EPOCH_MS);
    expect(await flame(store)).toEqual({ 'main;old_only;leaf_a': 30_000_000, 'main;shared': 20_000_000 });
    await store.close();
  });

  it('an ingest cache that knew the collected rows writes them all again (same server, warm cache)', async () => {
    // The ingest cache skips rows it knows stored, and skips a known stack's
    // locations without looking (ingest.ts): after retention collected those
    // rows, the same server must not trust its memory of them.
    const store = await openStore(urls[2]!.url);
    const t = T1 + 10 * MARK_EPOCH_MS;
    await ingestProfile(store, old, { node: 'c' }, t);
    const counts = await store.symbolRowCounts();
    expect(counts.stack).toBe(2);
    await store.retain(Number.MAX_SAFE_INTEGER, t + 4 * MARK_EPOCH_MS);
    expect(await store.symbolRowCounts()).toEqual({ mapping: 0, function: 0, location: 0, stack: 0 });
    await ingestProfile(store, old, { node: 'c' }, t + 4 * MARK_EPOCH_MS);
    expect(await store.symbolRowCounts()).toEqual(counts);
    expect(await flame(store)).toEqual({ 'main;old_only;leaf_a': 30_000_000, 'main;shared': 20_000_000 });
    await store.close();
  });

  it('exposes the symbol row counts as gauges on /metrics', async () => {
    // `recent` is dated 2026-01: a retention long enough that ingest does not refuse it as too old.
    const s = await startTestServer({ backend, retentionMs: 100 * 365 * 86_400_000 });
    try {
      expect((await ingest(s.url, recent, { node: 'a' })).status).toBe(200);
      const text = await (await fetch(`${s.url}/metrics`)).text();
      const gauge = (kind: string) => Number(new RegExp(`fleetprof_store_symbol_rows\\{kind="${kind}"[^}]*\\} (\\d+)`).exec(text)?.[1]);
      // recent: functions main, shared, new_only; one location each; stacks main;shared and main;new_only; one binary.
      expect({ mapping: gauge('mapping'), function: gauge('function'), location: gauge('location'), stack: gauge('stack') }).toEqual({
        mapping: 1,
        function: 3,
        location: 3,
        stack: 2,
      });
      expect((await getJson(s.url, '/api/v1/labels', {})).status).toBe(200);
    } finally {
      await s.stop();
    }
  });
});
