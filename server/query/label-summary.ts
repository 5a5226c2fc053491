// Label summary: every label name of the selected series with its values
// ranked by their share of the selection (CPU time by default), so the viewer
// can answer "which workload burns this?" before anyone types a selector.
import type { LabelSummaryResponse, SampleTypeJson } from '../../src/profile/api-types.js';
import type { SampleTypeDesc } from '../store/store.js';
import type { SeriesSelection } from './merge.js';

/** `totals`: the selection's value per series id (seriesTotals in group-by.ts). */
export function labelSummary(sel: SeriesSelection, totals: Map<number, number>, st: SampleTypeDesc | undefined, limit: number): LabelSummaryResponse {
  const byName = new Map<string, Map<string, number>>();
  let total = 0;
  for (const s of sel.series) {
    const v = totals.get(s.id) ?? 0;
    total += v;
    for (const [name, value] of Object.entries(s.labels)) {
      let values = byName.get(name);
      if (!values) byName.set(name, (values = new Map()));
      values.set(value, (values.get(value) ?? 0) + v);
    }
  }
  const labels = [...byName.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, values]) => ({
      name,
      distinct: values.size,
      values: [...values.entries()]
        .map(([value, t]) => ({ value, total: t }))
        .sort((a, b) => b.total - a.total || (a.value < b.value ? -1 : a.value > b.value ? 1 : 0))
        .slice(0, limit),
    }));
  const sampleType: SampleTypeJson = st ?? { type: '', unit: '' };
  return { sampleType, total, labels };
}
