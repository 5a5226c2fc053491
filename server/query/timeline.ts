// Timeline: value per time step, one series per group. A stored profile
// covers [time, time + duration); its value is spread over that span in
// proportion to the overlap with each step, so an agent pushing a steady load
// every 10 s draws a flat line rather than one spike per push.
import type { GroupLabels, SampleTypeJson, TimelineResponse } from '../../src/profile/api-types.js';
import type { SampleTypeDesc, ProfileStore } from '../store/store.js';
import type { TimeRange } from '../time-range.js';
import type { SeriesSelection } from './merge.js';
import type { SeriesGroup } from './group-by.js';

/**
 * How far before the range to look for profiles that started earlier but run
 * into it. Agents push every 5-60 s; a longer profile starting earlier than
 * this contributes only from its own start onwards to a range it overlaps.
 */
export const TIMELINE_LOOKBACK_MS = 10 * 60 * 1000;

export interface TimelineRequest {
  range: TimeRange;
  stepMs: number;
  sampleType: SampleTypeDesc | undefined;
  /** Groups to split by, in any order; a single group of every series when not grouped. */
  groups: readonly SeriesGroup[];
  groupBy: string[];
}

/**
 * Adds `value` spread over [startMs, endMs) to `values` (steps of stepMs from
 * fromMs), clipped to the steps; a zero-length profile lands in its start step.
 */
export function spreadOver(values: number[], fromMs: number, stepMs: number, startMs: number, endMs: number, value: number): void {
  const n = values.length;
  const toMs = fromMs + n * stepMs;
  if (endMs <= startMs) {
    if (startMs >= fromMs && startMs < toMs) values[Math.floor((startMs - fromMs) / stepMs)]! += value;
    return;
  }
  const perMs = value / (endMs - startMs);
  const a = Math.max(startMs, fromMs);
  const b = Math.min(endMs, toMs);
  if (b <= a) return;
  let i = Math.floor((a - fromMs) / stepMs);
  for (let t = a; t < b && i < n; i++) {
    const stepEnd = Math.min(b, fromMs + (i + 1) * stepMs);
    values[i]! += perMs * (stepEnd - t);
    t = stepEnd;
  }
}

export async function buildTimeline(store: ProfileStore, sel: SeriesSelection, req: TimelineRequest): Promise<TimelineResponse> {
  const { range, stepMs, sampleType: st } = req;
  const steps = Math.max(0, Math.ceil((range.toMs - range.fromMs) / stepMs));
  const timestampsMs = Array.from({ length: steps }, (_, i) => range.fromMs + i * stepMs);
  const groupOfSeries = new Map<number, number>();
  req.groups.forEach((g, gi) => {
    for (const s of g.series) groupOfSeries.set(s.id, gi);
  });
  const perGroup = req.groups.map(() => new Array<number>(steps).fill(0));
  const sampleType: SampleTypeJson = st ?? { type: '', unit: '' };
  if (st && sel.series.length > 0 && steps > 0) {
    const idxOf = new Map<number, number>();
    await store.eachProfile(
      sel.ids,
      range.fromMs - TIMELINE_LOOKBACK_MS,
      range.toMs,
      ['series_id', 'time_ms', 'duration_ns', 'profile_type_id', 'totals'],
      (row) => {
        const gi = groupOfSeries.get(row.series_id);
        if (gi === undefined) return;
        let ti = idxOf.get(row.profile_type_id);
        if (ti === undefined) {
          ti = store.profileType(row.profile_type_id)?.sampleTypes.findIndex((t) => t.type === st.type && t.unit === st.unit) ?? -1;
          idxOf.set(row.profile_type_id, ti);
        }
        if (ti < 0) return;
        spreadOver(perGroup[gi]!, range.fromMs, stepMs, row.time_ms, row.time_ms + row.duration_ns / 1e6, Number(row.totals.split(',')[ti]));
      },
    );
  }
  const values = new Array<number>(steps).fill(0);
  const series: { labels: GroupLabels; total: number; values: number[] }[] = [];
  req.groups.forEach((g, gi) => {
    const v = perGroup[gi]!;
    let total = 0;
    for (let i = 0; i < steps; i++) {
      values[i]! += v[i]!;
      total += v[i]!;
    }
    // Grouped: groups without data in the range are left out.
    if (total > 0 || req.groupBy.length === 0) series.push({ labels: g.labels, total, values: v });
  });
  if (series.length === 0 && req.groupBy.length === 0) series.push({ labels: {}, total: 0, values: new Array<number>(steps).fill(0) });
  series.sort((a, b) => b.total - a.total);
  return { sampleType, stepMs, timestampsMs, values, groupBy: req.groupBy, series };
}
