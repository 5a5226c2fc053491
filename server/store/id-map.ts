// Open-addressing hash map from a 53-bit id (a double) to two int32 values,
// backed by typed arrays. Ingest probes it once per location and once per
// sample (the marks cache), and queries once per stack-value pair (the merge
// accumulator); a Map would box every key and cost several times the memory.
// Keys must be non-zero numbers (0 marks an empty slot); content ids never are 0.
export class IdMap {
  private keys: Float64Array;
  private v1: Int32Array;
  private v2: Int32Array;
  private mask: number;
  size = 0;

  constructor(initialCapacity = 1024) {
    let cap = 16;
    while (cap < initialCapacity * 2) cap <<= 1;
    this.keys = new Float64Array(cap); // 0 = empty (ids are never 0)
    this.v1 = new Int32Array(cap);
    this.v2 = new Int32Array(cap);
    this.mask = cap - 1;
  }

  private slot(key: number): number {
    // Ids are already hashes: their low bits are uniform.
    let i = (key >>> 0) & this.mask;
    const keys = this.keys;
    for (;;) {
      const k = keys[i]!;
      if (k === key || k === 0) return i;
      i = (i + 1) & this.mask;
    }
  }

  has(key: number): boolean {
    return this.keys[this.slot(key)] === key;
  }

  /** First value for key, or `missing`. */
  get(key: number, missing = -1): number {
    const i = this.slot(key);
    return this.keys[i] === key ? this.v1[i]! : missing;
  }

  /** Whether key is present with first value >= minA and second value === b (one probe). */
  holds(key: number, minA: number, b: number): boolean {
    const i = this.slot(key);
    return this.keys[i] === key && this.v1[i]! >= minA && this.v2[i] === b;
  }

  /** Second value for key (call only when has(key)). */
  get2(key: number): number {
    return this.v2[this.slot(key)]!;
  }

  set(key: number, a: number, b = 0): void {
    let i = this.slot(key);
    if (this.keys[i] !== key) {
      if ((this.size + 1) * 2 > this.mask + 1) {
        this.grow();
        i = this.slot(key);
      }
      this.keys[i] = key;
      this.size++;
    }
    this.v1[i] = a;
    this.v2[i] = b;
  }

  clear(): void {
    this.keys.fill(0);
    this.size = 0;
  }

  /** Calls fn for every entry (any order). */
  forEach(fn: (key: number, a: number, b: number) => void): void {
    const keys = this.keys;
    for (let i = 0; i < keys.length; i++) if (keys[i] !== 0) fn(keys[i]!, this.v1[i]!, this.v2[i]!);
  }

  private grow(): void {
    const { keys, v1, v2 } = this;
    const cap = keys.length * 2;
    this.keys = new Float64Array(cap);
    this.v1 = new Int32Array(cap);
    this.v2 = new Int32Array(cap);
    this.mask = cap - 1;
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i]!;
      if (k === 0) continue;
      const j = this.slot(k);
      this.keys[j] = k;
      this.v1[j] = v1[i]!;
      this.v2[j] = v2[i]!;
    }
  }
}
