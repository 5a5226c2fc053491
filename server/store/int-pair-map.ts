// Open-addressing hash map from a pair of non-negative int32 keys to an
// int32 value, backed by typed arrays. The stack prefix tree needs one lookup
// per frame of every ingested sample (~70k per agent profile), and millions
// of entries; a Map with composite string keys would cost ~10x the memory and
// the time.
export class IntPairMap {
  private keysA: Int32Array;
  private keysB: Int32Array;
  private vals: Int32Array;
  private mask: number;
  size = 0;

  constructor(initialCapacity = 1 << 16) {
    let cap = 16;
    while (cap < initialCapacity * 2) cap <<= 1;
    this.keysA = new Int32Array(cap).fill(-1);
    this.keysB = new Int32Array(cap);
    this.vals = new Int32Array(cap);
    this.mask = cap - 1;
  }

  private static hash(a: number, b: number): number {
    let h = Math.imul(a, 0x9e3779b1) ^ Math.imul(b + 0x7f4a7c15, 0x85ebca6b);
    h ^= h >>> 15;
    h = Math.imul(h, 0x2c1b3c6d);
    return h ^ (h >>> 13);
  }

  /** Value for (a, b), or -1. */
  get(a: number, b: number): number {
    let i = IntPairMap.hash(a, b) & this.mask;
    for (;;) {
      const ka = this.keysA[i]!;
      if (ka === -1) return -1;
      if (ka === a && this.keysB[i] === b) return this.vals[i]!;
      i = (i + 1) & this.mask;
    }
  }

  /** Sets (a, b) -> v; the key must not be present yet. */
  insert(a: number, b: number, v: number): void {
    if ((this.size + 1) * 2 > this.mask + 1) this.grow();
    let i = IntPairMap.hash(a, b) & this.mask;
    while (this.keysA[i] !== -1) i = (i + 1) & this.mask;
    this.keysA[i] = a;
    this.keysB[i] = b;
    this.vals[i] = v;
    this.size++;
  }

  /** Sets (a, b) -> v, overwriting an existing value. */
  set(a: number, b: number, v: number): void {
    let i = IntPairMap.hash(a, b) & this.mask;
    for (;;) {
      const ka = this.keysA[i]!;
      if (ka === -1) break;
      if (ka === a && this.keysB[i] === b) {
        this.vals[i] = v;
        return;
      }
      i = (i + 1) & this.mask;
    }
    this.insert(a, b, v);
  }

  private grow(): void {
    const { keysA, keysB, vals } = this;
    const cap = (this.mask + 1) * 2;
    this.keysA = new Int32Array(cap).fill(-1);
    this.keysB = new Int32Array(cap);
    this.vals = new Int32Array(cap);
    this.mask = cap - 1;
    this.size = 0;
    for (let i = 0; i < keysA.length; i++) {
      if (keysA[i] !== -1) this.insert(keysA[i]!, keysB[i]!, vals[i]!);
    }
  }
}
