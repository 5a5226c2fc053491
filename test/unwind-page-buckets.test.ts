// The page index's 2 KiB buckets (table-manager.ts pageBuckets, searched by
// find_rule in bpf/profile.bpf.c): a search confined to a bucket's rows, as
// the BPF walker does it, finds the same row as a search of the whole page,
// at every byte of every page of libc and node.
import { describe, expect, it } from 'vitest';
import { buildTable } from '../src/unwind/table-builder.js';
import { BUCKET_BITS, BUCKETS, pageBuckets } from '../src/unwind/table-manager.js';

/** Index of the last row at or below `low` in rows [lo, hi), -1 if none: the search both sides share. */
function lastAtOrBelow(rows: Uint32Array, lo: number, hi: number, low: number): number {
  let found = -1;
  while (lo < hi) {
    const mid = lo + ((hi - lo) >>> 1);
    if ((rows[mid]! & 0xffff) <= low) {
      found = mid;
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return found;
}

describe('unwind page buckets', () => {
  it.each(['/lib/x86_64-linux-gnu/libc.so.6', process.execPath])('confine the row search of %s without changing its result', (path) => {
    const table = buildTable([path]);
    if (table.kind !== 'table') throw new Error(`no table for ${path}: ${table.reason}`);
    let checked = 0;
    let mismatches = 0;
    let widestBucket = 0;
    for (let p = 0; p < table.pages.length; p++) {
      const first = table.pageFirstRow[p]!;
      const count = table.pageRowCount[p]!;
      const buckets = pageBuckets(table.rows, first, count);
      for (let bucket = 0; bucket < BUCKETS; bucket++) {
        // Mirrors find_rule: from the bucket's row to the next bucket's row, inclusive.
        const lo = first + buckets[bucket]!;
        const hi = Math.min(first + count, bucket + 1 < BUCKETS ? first + buckets[bucket + 1]! + 1 : first + count);
        widestBucket = Math.max(widestBucket, hi - lo);
        for (let low = bucket << BUCKET_BITS; low < (bucket + 1) << BUCKET_BITS; low += 7) {
          if (lastAtOrBelow(table.rows, lo, hi, low) !== lastAtOrBelow(table.rows, first, first + count, low)) mismatches++;
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(100_000);
    expect(mismatches).toBe(0);
    // bpf/profile.h's FP_UNWIND_ROW_SEARCH_STEPS (12) covers at most 4095 rows.
    expect(widestBucket).toBeLessThan(4096);
  });
});
