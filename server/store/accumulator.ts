// Sums of stack values keyed by stack id, in columns (sample types, or the
// two sides of a diff). Memory and time follow the stacks actually added,
// not the size of the stack table: a query touches what it reads.
import { IdMap } from './id-map.js';

const ROOT_KEY = 2 ** 53;
/** IdMap keys must be non-zero; the empty stack (id 0: a sample without frames) gets 2^53, above every id. */
const hashKey = (stackId: number) => (stackId === 0 ? ROOT_KEY : stackId);
/** Direct-index entries per slot of room (4 bytes each: 32 bytes per slot, beside the slot's own 16 or more and the hash map's 48), and a cap. */
const DIRECT_IDS_PER_SLOT = 8;
const MAX_DIRECT_IDS = 1 << 24;
const directRoomFor = (slots: number) => Math.min(DIRECT_IDS_PER_SLOT * slots, MAX_DIRECT_IDS);

/** Keys below this (dense ids, in practice every one) are sorted by radix; larger ones (content hashes) by comparison. */
const RADIX_MAX_KEY = 2 ** 31;
const RADIX_BITS = 11;
const RADIX_SIZE = 1 << RADIX_BITS;
/** Below this many keys a comparison sort beats clearing the radix counts. */
const RADIX_MIN_N = 64;
/** Counts of the three digit positions, reused (single-threaded; orderByKey does not re-enter). */
const radixCounts = new Int32Array(3 * (RADIX_SIZE + 1));

/**
 * Indices 0..n-1 ordered by ascending keys[i] (non-negative integers), ties
 * in index order. Dense stack ids (below 2^31) go through an LSD radix sort
 * of 11-bit digits (two passes for ids below 4M): a commit sorts every new
 * profile's 2,000 ids and a rollup its window's, and V8's Float64Array sort
 * took ~4x as long for 2,000 keys (measured: 180 us against 46 us). Larger
 * keys (content hashes): when key * 2^bits + index fits in a double, those
 * packed numbers are sorted natively; otherwise a comparator sort.
 */
export function orderByKey(keys: ArrayLike<number>, n: number): Int32Array {
  let max = 0;
  for (let i = 0; i < n; i++) if (keys[i]! > max) max = keys[i]!;
  if (max < RADIX_MAX_KEY && n >= RADIX_MIN_N) return radixOrder(keys, n, max);
  const order = new Int32Array(n);
  let scale = 1;
  while (scale < n) scale *= 2;
  if (max * scale + scale < 2 ** 53) {
    const packed = new Float64Array(n);
    for (let i = 0; i < n; i++) packed[i] = keys[i]! * scale + i;
    packed.sort();
    for (let k = 0; k < n; k++) order[k] = packed[k]! % scale;
    return order;
  }
  for (let i = 0; i < n; i++) order[i] = i;
  order.sort((a, b) => keys[a]! - keys[b]! || a - b);
  return order;
}

function radixOrder(keys: ArrayLike<number>, n: number, max: number): Int32Array {
  const k32 = new Int32Array(n);
  for (let i = 0; i < n; i++) k32[i] = keys[i]!;
  const passes = max < RADIX_SIZE ? 1 : max < RADIX_SIZE * RADIX_SIZE ? 2 : 3;
  const counts = radixCounts;
  const stride = RADIX_SIZE + 1;
  counts.fill(0);
  const mask = RADIX_SIZE - 1;
  for (let i = 0; i < n; i++) {
    const v = k32[i]!;
    counts[(v & mask) + 1]!++;
    counts[stride + ((v >>> RADIX_BITS) & mask) + 1]!++;
    counts[2 * stride + (v >>> (2 * RADIX_BITS)) + 1]!++;
  }
  let a = new Int32Array(n);
  let b = new Int32Array(n);
  for (let i = 0; i < n; i++) a[i] = i;
  for (let p = 0; p < passes; p++) {
    const base = p * stride;
    const shift = p * RADIX_BITS;
    // Prefix sums: counts[base + d] becomes the first output position of digit d.
    for (let d = 0; d < RADIX_SIZE; d++) counts[base + d + 1]! += counts[base + d]!;
    for (let i = 0; i < n; i++) {
      const x = a[i]!;
      b[counts[base + ((k32[x]! >>> shift) & mask)]!++] = x;
    }
    const t = a;
    a = b;
    b = t;
  }
  return a;
}

export class StackAccumulator {
  private readonly slots: IdMap;
  /** Stack id of each slot, in first-seen order. */
  ids: Float64Array;
  /** values[slot * cols + col] */
  values: Float64Array;
  /**
   * Ingest only (made with `withDenseIds`): the store's dense id of each
   * slot's stack when ingest already knew it (the marks cache keeps them,
   * stack-ids.ts), 0 when not; the commit then need not look it up.
   */
  denseIds: Float64Array | undefined;
  length = 0;
  /** direct[id] = slot + 1 (0: not looked up by index yet); ids below directRoom may be indexed. */
  private direct = new Int32Array(0);
  private directRoom: number;

  /** `expected`: how many stacks are likely (e.g. a profile's samples), so the tables need not grow. */
  constructor(
    readonly cols: number,
    expected = 1024,
    withDenseIds = false,
  ) {
    const cap = Math.max(16, expected);
    this.slots = new IdMap(cap);
    this.ids = new Float64Array(cap);
    this.values = new Float64Array(cap * Math.max(1, cols));
    this.denseIds = withDenseIds ? new Float64Array(cap) : undefined;
    this.directRoom = directRoomFor(cap);
  }

  /** Empties the accumulator for reuse, keeping its tables (ingest-series.ts pools them). */
  reset(): void {
    const used = this.length;
    this.slots.clear();
    this.values.fill(0, 0, used * Math.max(1, this.cols));
    this.denseIds?.fill(0, 0, used);
    for (let s = 0; s < used; s++) {
      const id = this.ids[s]!;
      if (id < this.direct.length) this.direct[id] = 0;
    }
    this.length = 0;
  }

  /** Slots it has room for without growing. */
  get capacity(): number {
    return this.ids.length;
  }

  slotOf(stackId: number): number {
    if (stackId < this.directRoom) {
      if (stackId >= this.direct.length) this.growDirect();
      let s = this.direct[stackId]! - 1;
      if (s >= 0) return s;
      // Below the limit now, but the slot may have been made before the limit grew to cover it.
      s = this.slots.get(hashKey(stackId));
      if (s < 0) s = this.newSlot(stackId, false);
      this.direct[stackId] = s + 1;
      return s;
    }
    let s = this.slots.get(hashKey(stackId));
    if (s < 0) s = this.newSlot(stackId, true);
    return s;
  }

  private newSlot(stackId: number, hashed: boolean): number {
    const s = this.length++;
    if (s === this.ids.length) {
      const ids = new Float64Array(s * 2);
      ids.set(this.ids);
      this.ids = ids;
      const vals = new Float64Array(s * 2 * Math.max(1, this.cols));
      vals.set(this.values);
      this.values = vals;
      if (this.denseIds) {
        const dense = new Float64Array(s * 2);
        dense.set(this.denseIds);
        this.denseIds = dense;
      }
      this.directRoom = directRoomFor(this.ids.length);
    }
    this.ids[s] = stackId;
    if (hashed) this.slots.set(hashKey(stackId), s);
    return s;
  }

  /**
   * Dense stack ids (the store's, server/store/stack-ids.ts) small enough
   * are found by indexing, not hashing: a packed profile lists its stacks in
   * ascending id order, so a merge sweeps the table instead of probing at
   * random. The table covers ids below DIRECT_IDS_PER_SLOT times the slots
   * the accumulator has room for, so its memory follows the stacks held, not
   * the size of the stack table. It is made when the first such id comes:
   * content hashes (ingest) never fall in it.
   */
  private growDirect(): void {
    const direct = new Int32Array(this.directRoom);
    direct.set(this.direct);
    this.direct = direct;
  }

  add(stackId: number, col: number, v: number): void {
    // The slot first: slotOf may replace this.values (growth), and `this.values[...] += v` would read the
    // array before the index and add into the old one, losing the value.
    const slot = this.slotOf(stackId);
    this.values[slot * this.cols + col]! += v;
  }

  /** Slots sorted by ascending stack id (for delta encoding). */
  sortedSlots(): Int32Array {
    return orderByKey(this.ids, this.length);
  }

  /** The stacks in ascending id order as (ids, values) columns, for encodeSamples. */
  sortedColumns(): { ids: Float64Array; vals: Float64Array } {
    const order = this.sortedSlots();
    const n = order.length;
    const cols = this.cols;
    const ids = new Float64Array(n);
    const vals = new Float64Array(n * cols);
    for (let k = 0; k < n; k++) {
      const s = order[k]!;
      ids[k] = this.ids[s]!;
      for (let t = 0; t < cols; t++) vals[k * cols + t] = this.values[s * cols + t]!;
    }
    return { ids, vals };
  }
}
