// A growable typed array, for columns whose length is known only at the end
// (a decoded profile's tables, a flame graph's nodes, a table's pages).
// Written here because JavaScript's typed arrays cannot grow and no small,
// maintained library offers this without a dependency tree around it.
export type TypedArray = Float64Array | Int32Array | Uint32Array | Uint8Array;

/** `data` may be longer than `length`; view() is the filled part. */
export class TypedVec<T extends TypedArray> {
  length = 0;
  constructor(
    public data: T,
    private readonly make: (n: number) => T,
  ) {}
  push(v: number): void {
    if (this.length === this.data.length) this.reserve(1);
    this.data[this.length++] = v;
  }
  /** Makes room for n more values, so a hot loop can write data[length++] without checks. */
  reserve(n: number): void {
    if (this.length + n <= this.data.length) return;
    let cap = Math.max(1, this.data.length) * 2;
    while (cap < this.length + n) cap *= 2;
    const next = this.make(cap);
    next.set(this.data.subarray(0, this.length));
    this.data = next;
  }
  /** The filled part, sharing memory with `data` (until the next growth). */
  view(): T {
    return this.data.subarray(0, this.length) as T;
  }
}

export const f64Vec = (n = 1024) => new TypedVec(new Float64Array(n), (k) => new Float64Array(k));
export const i32Vec = (n = 1024) => new TypedVec(new Int32Array(n), (k) => new Int32Array(k));
export const u32Vec = (n = 1024) => new TypedVec(new Uint32Array(n), (k) => new Uint32Array(k));
export const u8Vec = (n = 1024) => new TypedVec(new Uint8Array(n), (k) => new Uint8Array(k));

/** `array` with room for `size` elements, its contents kept: the same array when it has room, else a copy of exactly `size`. */
export function grownTo<T extends TypedArray>(array: T, size: number, make: (n: number) => T): T {
  if (array.length >= size) return array;
  const grown = make(size);
  grown.set(array);
  return grown;
}
