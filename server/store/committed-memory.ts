// What a store backend remembers in memory once a group of ingests committed
// (both sqlite-store.ts and pg-store.ts, after their own transaction): the
// marks cache ingest consults to skip rows already stored, and the series and
// profile kinds queries list without a database round trip.
import type { IdMap } from './id-map.js';
import type { IngestBatch, ProfileType, Series } from './store.js';

/** Rows kept in the ingest marks cache before it starts over (32 bytes each, doubled by the hash table). */
export const MARKS_CACHE_MAX_ROWS = 2_000_000;

export interface CommittedMemory {
  readonly marks: IdMap;
  readonly series: Map<number, Series>;
  readonly profileTypes: Map<number, ProfileType>;
}

/**
 * Call only after the transaction holding `batches` committed: the cache must never claim a row that is not stored.
 * `stackIds`: hash -> dense id of the stacks the commit wrote or resolved (stack-ids.ts); the marks cache (a wide
 * IdMap) keeps each stack's dense id as its third value, 0 for other rows, so ingest's one probe per stack gives both.
 */
export function rememberCommitted(memory: CommittedMemory, batches: readonly IngestBatch[], stackIds: IdMap): void {
  const { marks, series, profileTypes } = memory;
  if (marks.size > MARKS_CACHE_MAX_ROWS) marks.clear();
  for (const b of batches) {
    b.checks.forEach((id, check) => {
      if (marks.get(id, -1) < b.mark) marks.set3(id, b.mark, check, Math.max(0, stackIds.get(id, 0)));
    });
    for (const t of b.profileTypes) if (!profileTypes.has(t.id)) profileTypes.set(t.id, t);
    for (const s of b.series) {
      if (!series.has(s.id)) series.set(s.id, { id: s.id, labels: s.labels, firstMs: Infinity, lastMs: -Infinity, typeIds: new Set() });
    }
    for (const p of b.profiles) {
      // Every profile's series is known by now (in the batch or remembered before); skip defensively rather than throw after a commit.
      const s = series.get(p.seriesId);
      if (!s) continue;
      s.typeIds.add(p.profileTypeId);
      s.firstMs = Math.min(s.firstMs, p.timeMs);
      s.lastMs = Math.max(s.lastMs, p.timeMs);
    }
  }
}
