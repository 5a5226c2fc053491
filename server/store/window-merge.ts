// The merge of one rollup window (store.ts ROLLUP_WINDOW_MS), shared by both
// backends: profile rows in, one rollup row per profile kind out, packed
// like a profile (sample-codec.ts), so queries read rollups and profiles
// with the same loop.
import { addSamplesAll, encodeSamples } from './sample-codec.js';
import { StackAccumulator } from './accumulator.js';
import type { ProfileRow, RollupRow } from './store.js';

interface KindMerge {
  n: number;
  durationNs: number;
  periods: Set<number>;
  acc: StackAccumulator;
}

export class WindowMerge {
  private readonly byType = new Map<number, KindMerge>();

  constructor(private readonly nTypesOf: (profileTypeId: number) => number) {}

  add(r: Pick<ProfileRow, 'profile_type_id' | 'scales' | 'duration_ns' | 'period' | 'samples'>): void {
    const nTypes = this.nTypesOf(r.profile_type_id);
    let agg = this.byType.get(r.profile_type_id);
    if (!agg) {
      agg = { n: 0, durationNs: 0, periods: new Set(), acc: new StackAccumulator(nTypes) };
      this.byType.set(r.profile_type_id, agg);
    }
    agg.n++;
    agg.durationNs += r.duration_ns;
    agg.periods.add(r.period);
    const scales = r.scales.split(',').map(Number);
    addSamplesAll(r.samples, scales, agg.acc);
  }

  rows(seriesId: number, windowMs: number): RollupRow[] {
    const out: RollupRow[] = [];
    for (const [typeId, agg] of this.byType) {
      const { ids, vals } = agg.acc.sortedColumns();
      const { blob, scales } = encodeSamples(ids, vals, agg.acc.cols);
      out.push({
        series_id: seriesId,
        window_ms: windowMs,
        profile_type_id: typeId,
        n_profiles: agg.n,
        duration_ns: agg.durationNs,
        periods: [...agg.periods].join(','),
        scales: scales.join(','),
        samples: blob,
      });
    }
    return out;
  }
}
