// Open-addressing hash map from a 53-bit id (a double) to a double and an
// int32 (and, when made wide, a third double), in one Float64Array of
// (key, value 1, value 2[, value 3]) slots so a probe touches one cache line,
// not three or four arrays. Ingest probes it once per
// location and once per sample (the marks cache), and queries once per
// stack-value pair (the merge accumulator); a Map would box every key and
// cost several times the memory.
// Keys must be non-zero numbers (0 marks an empty slot); content ids never are 0.
export class IdMap {
  /** slots[w * i] key, [w * i + 1] first value (a mark, a slot, a dense id), [w * i + 2] second value (int32), [w * i + 3] third value (wide maps); w = stride. */
  private slots: Float64Array;
  private mask: number;
  /** Doubles per slot: 3, or 4 for a wide map (the ingest marks cache keeps a stack's dense id there). */
  private readonly stride: number;
  size = 0;

  constructor(initialCapacity = 1024, wide = false) {
    let cap = 16;
    while (cap < initialCapacity * 2) cap <<= 1;
    this.stride = wide ? 4 : 3;
    this.slots = new Float64Array(cap * this.stride); // key 0 = empty (ids are never 0)
    this.mask = cap - 1;
  }

  /** Index (in slots) of key's slot, or of the empty slot where it would go. */
  private slot(key: number): number {
    // Ids are already hashes (or dense): their low bits spread well.
    let i = (key >>> 0) & this.mask;
    const slots = this.slots;
    const w = this.stride;
    for (;;) {
      const k = slots[i * w]!;
      if (k === key || k === 0) return i * w;
      i = (i + 1) & this.mask;
    }
  }

  has(key: number): boolean {
    return this.slots[this.slot(key)] === key;
  }

  /** First value for key, or `missing`. */
  get(key: number, missing = -1): number {
    const i = this.slot(key);
    return this.slots[i] === key ? this.slots[i + 1]! : missing;
  }

  /** Whether key is present with first value >= minA and second value === b (one probe). */
  holds(key: number, minA: number, b: number): boolean {
    const i = this.slot(key);
    const s = this.slots;
    return s[i] === key && s[i + 1]! >= minA && s[i + 2] === b;
  }

  /**
   * The third value if key is present with first value >= minA and second
   * value === b (one probe), else -1. A map that is not wide has no third
   * value: 0 when the key holds (a marks cache made narrow then only loses its
   * dense ids, which the commit looks up; it never reads a neighbour's key).
   */
  thirdIfHolds(key: number, minA: number, b: number): number {
    const i = this.slot(key);
    const s = this.slots;
    if (!(s[i] === key && s[i + 1]! >= minA && s[i + 2] === b)) return -1;
    return this.stride === 4 ? s[i + 3]! : 0;
  }

  /**
   * thirdIfHolds for keys[0..n) (checks[i] the second value each must have),
   * into out; a key of 0 (no stack) gives -1. The loop lives in this small
   * method so TurboFan inlines thirdIfHolds here: called per sample from
   * ingest's big functions it was not inlined, and every call boxed its
   * double arguments (a heap number each, ~100 KB of garbage per push).
   */
  thirdIfHoldsEach(keys: Float64Array, checks: Int32Array, n: number, minA: number, out: Float64Array): void {
    for (let j = 0; j < n; j++) {
      const key = keys[j]!;
      out[j] = key === 0 ? -1 : this.thirdIfHolds(key, minA, checks[j]!);
    }
  }

  /** Third value for key in a wide map, or `missing`. */
  get3(key: number, missing = -1): number {
    this.mustBeWide();
    const i = this.slot(key);
    return this.slots[i] === key ? this.slots[i + 3]! : missing;
  }

  private mustBeWide(): void {
    if (this.stride !== 4) throw new Error('IdMap: a third value needs a wide map (new IdMap(capacity, true))');
  }

  /** Second value for key (call only when has(key)). */
  get2(key: number): number {
    return this.slots[this.slot(key) + 2]!;
  }

  set(key: number, a: number, b = 0): void {
    const i = this.slotFor(key);
    this.slots[i + 1] = a;
    this.slots[i + 2] = b | 0;
  }

  /** Sets all three values of a wide map's entry. */
  set3(key: number, a: number, b: number, c: number): void {
    this.mustBeWide();
    const i = this.slotFor(key);
    this.slots[i + 1] = a;
    this.slots[i + 2] = b | 0;
    this.slots[i + 3] = c;
  }

  /** The slot of key, made (and the table grown) if it is not there. */
  private slotFor(key: number): number {
    let i = this.slot(key);
    if (this.slots[i] !== key) {
      if ((this.size + 1) * 2 > this.mask + 1) {
        this.grow();
        i = this.slot(key);
      }
      this.slots[i] = key;
      this.size++;
    }
    return i;
  }

  clear(): void {
    this.slots.fill(0);
    this.size = 0;
  }

  /** Calls fn for every entry (any order). */
  forEach(fn: (key: number, a: number, b: number) => void): void {
    const s = this.slots;
    const w = this.stride;
    for (let i = 0; i < s.length; i += w) if (s[i] !== 0) fn(s[i]!, s[i + 1]!, s[i + 2]!);
  }

  private grow(): void {
    const old = this.slots;
    const w = this.stride;
    const cap = (this.mask + 1) * 2;
    this.slots = new Float64Array(cap * w);
    this.mask = cap - 1;
    for (let i = 0; i < old.length; i += w) {
      const k = old[i]!;
      if (k === 0) continue;
      const j = this.slot(k);
      for (let v = 0; v < w; v++) this.slots[j + v] = old[i + v]!;
    }
  }
}
