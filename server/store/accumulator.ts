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

/**
 * Indices 0..n-1 ordered by ascending keys[i] (non-negative integers). When
 * key * 2^bits + index fits in a double, those packed numbers are sorted by
 * the native numeric sort of a Float64Array, several times faster than a
 * comparator; otherwise a comparator sort.
 */
export function orderByKey(keys: ArrayLike<number>, n: number): Int32Array {
  const order = new Int32Array(n);
  let max = 0;
  for (let i = 0; i < n; i++) if (keys[i]! > max) max = keys[i]!;
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
  order.sort((a, b) => keys[a]! - keys[b]!);
  return order;
}

export class StackAccumulator {
  private readonly slots: IdMap;
  /** Stack id of each slot, in first-seen order. */
  ids: Float64Array;
  /** values[slot * cols + col] */
  values: Float64Array;
  length = 0;
  /** direct[id] = slot + 1 (0: not looked up by index yet); ids below directRoom may be indexed. */
  private direct = new Int32Array(0);
  private directRoom: number;

  /** `expected`: how many stacks are likely (e.g. a profile's samples), so the tables need not grow. */
  constructor(
    readonly cols: number,
    expected = 1024,
  ) {
    const cap = Math.max(16, expected);
    this.slots = new IdMap(cap);
    this.ids = new Float64Array(cap);
    this.values = new Float64Array(cap * Math.max(1, cols));
    this.directRoom = directRoomFor(cap);
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
