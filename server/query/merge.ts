// Merging = summing the values of the wanted sample types per stack id over
// every stored profile (or rollup) of the selected series in the time range.
// The result is a hash accumulator holding only the stacks read: cost is
// O(pairs read), independent of the size of the stack table. Tree building
// happens elsewhere.
import { FLEET_SERIES_ID, FLEET_WINDOW_MS, ROLLUP_WINDOW_MS, rollupKey, type ProfileStore, type SampleTypeDesc, type Series } from '../store/store.js';
import { addSamples } from '../store/sample-codec.js';
import { StackAccumulator } from '../store/accumulator.js';
import { matches, type Selector } from '../selector.js';
import type { TimeRange } from '../time-range.js';
import { errBadParam } from '../errors.js';

export interface SeriesSelection {
  series: Series[];
  /** null when every series with data in range is selected (lets SQL skip the IN list). */
  ids: number[] | null;
}

export function selectSeries(store: ProfileStore, sel: Selector, range: TimeRange): SeriesSelection {
  const out: Series[] = [];
  let all = true;
  for (const s of store.allSeries()) {
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
export function chooseSampleType(store: ProfileStore, series: Series[], requested: string | undefined): SampleTypeDesc | undefined {
  const seen: SampleTypeDesc[] = [];
  for (const s of series) {
    for (const tid of s.typeIds) {
      for (const st of store.profileType(tid)?.sampleTypes ?? []) if (!seen.some((x) => sameType(x, st))) seen.push(st);
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

/** The whole windows of length lenMs inside [fromMs, toMs) as [start of the first, end of the last). */
function wholeWindows(fromMs: number, toMs: number, lenMs: number): [number, number] {
  return [Math.max(lenMs, Math.ceil(fromMs / lenMs) * lenMs), Math.floor(toMs / lenMs) * lenMs];
}

/** [fromMs, toMs) minus the windows of length lenMs starting at `covered`, as ordered intervals. */
function uncovered(fromMs: number, toMs: number, covered: ReadonlySet<number>, lenMs: number): [number, number][] {
  const out: [number, number][] = [];
  let start = fromMs;
  for (const w of [...covered].sort((a, b) => a - b)) {
    if (w > start) out.push([start, w]);
    start = Math.max(start, w + lenMs);
  }
  if (start < toMs) out.push([start, toMs]);
  return out;
}

export interface Merged {
  /** Summed self values, one column per requested type. */
  acc: StackAccumulator;
  /** The same per series, when asked for (downloads carry series labels per sample). */
  bySeries: Map<number, StackAccumulator> | undefined;
  profiles: number;
  pairs: number;
  durationNs: number;
  periods: number[];
}

export async function mergeStacks(
  store: ProfileStore,
  sel: SeriesSelection,
  range: TimeRange,
  types: SampleTypeDesc[],
  opts: { bySeries?: boolean } = {},
): Promise<Merged> {
  const merged: Merged = {
    acc: new StackAccumulator(types.length),
    bySeries: opts.bySeries ? new Map() : undefined,
    profiles: 0,
    pairs: 0,
    durationNs: 0,
    periods: [],
  };
  if (sel.series.length === 0 || types.length === 0) return merged;
  // Index of each wanted type within each profile kind, -1 when absent.
  const typeIndex = new Map<number, number[]>();
  const indexFor = (ptid: number) => {
    let idx = typeIndex.get(ptid);
    if (!idx) {
      const pt = store.profileType(ptid);
      idx = types.map((t) => pt?.sampleTypes.findIndex((st) => sameType(st, t)) ?? -1);
      typeIndex.set(ptid, idx);
    }
    return idx;
  };
  const accFor = (seriesId: number): StackAccumulator => {
    if (!merged.bySeries) return merged.acc;
    let a = merged.bySeries.get(seriesId);
    if (!a) merged.bySeries.set(seriesId, (a = new StackAccumulator(types.length)));
    return a;
  };
  const add = (seriesId: number, profileTypeId: number, scalesText: string, samples: Buffer, nProfiles: number, durationNs: number, periods: number[]) => {
    const idx = indexFor(profileTypeId);
    const scales = scalesText.split(',').map(Number);
    const acc = accFor(seriesId);
    let used = false;
    for (let k = 0; k < idx.length; k++) {
      const ti = idx[k]!;
      if (ti < 0 || ti >= scales.length) continue;
      merged.pairs += addSamples(samples, scales, ti, acc, k);
      used = true;
    }
    if (used) {
      merged.profiles += nProfiles;
      merged.durationNs += durationNs;
      for (const p of periods) if (!merged.periods.includes(p)) merged.periods.push(p);
    }
  };
  // A merge of every series reads the fleet rollups (one row per minute and
  // profile kind) for the whole windows they cover; what is left of the range
  // (its edges, windows not rolled up yet) goes through the per-series path.
  let rest: [number, number][] = [[range.fromMs, range.toMs]];
  if (sel.ids === null && !merged.bySeries) {
    const [wFrom, wTo] = wholeWindows(range.fromMs, range.toMs, FLEET_WINDOW_MS);
    if (wTo > wFrom) {
      const fleet = new Set<number>();
      await store.eachRollup([FLEET_SERIES_ID], wFrom, wTo, (r) => {
        fleet.add(r.window_ms);
        add(r.series_id, r.profile_type_id, r.scales, r.samples, r.n_profiles, r.duration_ns, r.periods.split(',').map(Number));
      });
      rest = uncovered(range.fromMs, range.toMs, fleet, FLEET_WINDOW_MS);
    }
  }
  for (const [fromMs, toMs] of rest) {
    // Whole rollup windows inside the interval come from the series' rollups,
    // the rest (edges, windows not rolled up yet) from raw rows; see sqlite-store.ts.
    const [wFrom, wTo] = wholeWindows(fromMs, toMs, ROLLUP_WINDOW_MS);
    const covered = new Set<string>();
    if (wTo > wFrom) {
      await store.eachRollup(sel.ids, wFrom, wTo, (r) => {
        covered.add(rollupKey(r.series_id, r.window_ms / ROLLUP_WINDOW_MS));
        add(r.series_id, r.profile_type_id, r.scales, r.samples, r.n_profiles, r.duration_ns, r.periods.split(',').map(Number));
      });
    }
    await store.eachProfile(
      sel.ids,
      fromMs,
      toMs,
      ['series_id', 'profile_type_id', 'scales', 'duration_ns', 'period', 'samples'],
      (row) => add(row.series_id, row.profile_type_id, row.scales, row.samples, 1, row.duration_ns, [row.period]),
      -1,
      covered,
    );
  }
  return merged;
}
