// Merging = summing the values of one sample type per global stack id over
// every stored profile of the selected series in the time range. The result
// is a dense array indexed by stack id; tree building happens elsewhere.
import { ROLLUP_WINDOW_MS, rollupKey, type SampleTypeDesc, type Series, type SqliteStore } from '../store/sqlite-store.js';
import { addSamples } from '../store/sample-codec.js';
import { matches, type Selector } from '../selector.js';
import type { TimeRange } from '../time-range.js';
import { errBadParam } from '../errors.js';

export interface SeriesSelection {
  series: Series[];
  /** null when every series with data in range is selected (lets SQL skip the IN list). */
  ids: number[] | null;
}

export function selectSeries(store: SqliteStore, sel: Selector, range: TimeRange): SeriesSelection {
  const out: Series[] = [];
  let all = true;
  for (const s of store.series.values()) {
    const inRange = s.lastMs >= range.fromMs && s.firstMs < range.toMs;
    if (!inRange) continue;
    if (matches(sel, s.labels)) out.push(s);
    else all = false;
  }
  return { series: out, ids: all ? null : out.map((s) => s.id) };
}

const sameType = (a: SampleTypeDesc, b: SampleTypeDesc) => a.type === b.type && a.unit === b.unit;

/**
 * The sample type a query reports. `requested` is "type" or "type:unit";
 * without it prefer CPU time, then sample counts, then the first type seen.
 */
export function chooseSampleType(store: SqliteStore, series: Series[], requested: string | undefined): SampleTypeDesc | undefined {
  const seen: SampleTypeDesc[] = [];
  for (const s of series) {
    for (const tid of s.typeIds) {
      for (const st of store.profileTypes.get(tid)?.sampleTypes ?? []) if (!seen.some((x) => sameType(x, st))) seen.push(st);
    }
  }
  if (requested !== undefined && requested !== '') {
    const [type, unit] = requested.split(':');
    const hit = seen.find((st) => st.type === type && (unit === undefined || st.unit === unit));
    // Nothing selected: an empty result of the requested type, not an error.
    if (!hit && seen.length === 0) return { type: type!, unit: unit ?? '' };
    if (!hit) {
      throw errBadParam(`sampleType=${requested} is not in the selection (available: ${seen.map((s) => `${s.type}:${s.unit}`).join(', ') || 'none'})`);
    }
    return hit;
  }
  return seen.find((s) => s.type === 'cpu') ?? seen.find((s) => s.type === 'wall') ?? seen.find((s) => s.type === 'samples') ?? seen[0];
}

export interface Merged {
  /** values[k][stackId]: summed self value of sample type k. */
  values: Float64Array[];
  touched: Uint8Array;
  profiles: number;
  pairs: number;
  durationNs: number;
  periods: number[];
}

export async function mergeStacks(store: SqliteStore, sel: SeriesSelection, range: TimeRange, types: SampleTypeDesc[]): Promise<Merged> {
  const merged: Merged = { values: [], touched: new Uint8Array(0), profiles: 0, pairs: 0, durationNs: 0, periods: [] };
  if (sel.series.length === 0 || types.length === 0) {
    merged.values = types.map(() => new Float64Array(store.symbols.stackCount));
    merged.touched = new Uint8Array(store.symbols.stackCount);
    return merged;
  }
  // Index of each wanted type within each profile kind, -1 when absent.
  const typeIndex = new Map<number, number[]>();
  const indexFor = (ptid: number) => {
    let idx = typeIndex.get(ptid);
    if (!idx) {
      const pt = store.profileTypes.get(ptid);
      idx = types.map((t) => pt?.sampleTypes.findIndex((st) => sameType(st, t)) ?? -1);
      typeIndex.set(ptid, idx);
    }
    return idx;
  };
  let allocated = false;
  const add = (profileTypeId: number, scalesText: string, samples: Buffer, nProfiles: number, durationNs: number, periods: number[]) => {
    // Sized at the first row: any stack a committed row references exists by now.
    if (!allocated) {
      merged.values = types.map(() => new Float64Array(store.symbols.stackCount));
      merged.touched = new Uint8Array(store.symbols.stackCount);
      allocated = true;
    }
    const idx = indexFor(profileTypeId);
    const nTypes = store.profileTypes.get(profileTypeId)?.sampleTypes.length ?? 0;
    const scales = scalesText.split(',').map(Number);
    let used = false;
    for (let k = 0; k < idx.length; k++) {
      const ti = idx[k]!;
      if (ti < 0) continue;
      merged.pairs += addSamples(samples, nTypes, ti, scales[ti]!, merged.values[k]!, merged.touched);
      used = true;
    }
    if (used) {
      merged.profiles += nProfiles;
      merged.durationNs += durationNs;
      for (const p of periods) if (!merged.periods.includes(p)) merged.periods.push(p);
    }
  };
  // Whole rollup windows inside the range come from rollups, the rest
  // (edges, windows not rolled up yet) from raw rows; see sqlite-store.ts.
  const wFrom = Math.max(ROLLUP_WINDOW_MS, Math.ceil(range.fromMs / ROLLUP_WINDOW_MS) * ROLLUP_WINDOW_MS);
  const wTo = Math.floor(range.toMs / ROLLUP_WINDOW_MS) * ROLLUP_WINDOW_MS;
  const covered: number[] = [];
  if (wTo > wFrom) {
    const seen = new Set<number>();
    await store.eachRollup(sel.ids, wFrom, wTo, (r) => {
      const key = rollupKey(r.series_id, r.window_ms / ROLLUP_WINDOW_MS);
      if (!seen.has(key)) {
        seen.add(key);
        covered.push(key);
      }
      add(r.profile_type_id, r.scales, r.samples, r.n_profiles, r.duration_ns, r.periods.split(',').map(Number));
    });
  }
  await store.eachProfile(
    sel.ids,
    range.fromMs,
    range.toMs,
    ['profile_type_id', 'scales', 'duration_ns', 'period', 'samples'],
    (row) => add(row.profile_type_id, row.scales, row.samples, 1, row.duration_ns, [row.period]),
    -1,
    covered,
  );
  if (!allocated) {
    merged.values = types.map(() => new Float64Array(store.symbols.stackCount));
    merged.touched = new Uint8Array(store.symbols.stackCount);
  }
  return merged;
}
