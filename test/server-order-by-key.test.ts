// orderByKey (server/store/accumulator.ts) orders a profile's stacks by
// dense id before they are packed (stack-ids.ts encodeDense) and a merge's
// before a rollup is written: a radix sort for ids below 2^31, a packed or
// comparator sort above. Whatever the path, the order must be the stable
// ascending order of the keys.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { orderByKey } from '../server/store/accumulator.js';
import { IdMap } from '../server/store/id-map.js';

/** The reference: indices sorted by key, ties by index (stable). */
function referenceOrder(keys: readonly number[]): number[] {
  return keys.map((_, i) => i).sort((a, b) => keys[a]! - keys[b]! || a - b);
}

describe('orderByKey', () => {
  const check = (maxKey: number, maxLength: number) =>
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: maxKey }), { maxLength, size: 'max' }), (keys) => {
        expect(Array.from(orderByKey(Float64Array.from(keys), keys.length))).toEqual(referenceOrder(keys));
      }),
      { numRuns: 100 },
    );

  it('is the stable ascending order for dense ids of one, two and three radix digits (property)', () => {
    check(2047, 3000); // one 11-bit digit
    check(2 ** 22 - 1, 3000); // two
    check(2 ** 31 - 1, 3000); // three
    check(5, 3000); // many ties
  });

  it('is the stable ascending order for keys above 2^31 and for few keys (property)', () => {
    check(Number.MAX_SAFE_INTEGER, 200);
    check(2 ** 40, 3000);
    check(100, 63); // below the radix threshold
  });

  it('sorts only the first n keys', () => {
    const keys = Float64Array.from([5, 3, 9, 1, 7, 2, 8]);
    expect(Array.from(orderByKey(keys, 4))).toEqual([3, 1, 0, 2]);
  });
});

describe('IdMap (wide)', () => {
  it('keeps three values per key through growth, and holds/thirdIfHolds agree (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 1, max: 2 ** 53 - 1 }), fc.integer({ min: 0, max: 1000 }), fc.integer(), fc.nat()), { maxLength: 500 }),
        (entries) => {
          const map = new IdMap(4, true);
          const want = new Map<number, [number, number, number]>();
          for (const [key, a, b, c] of entries) {
            map.set3(key, a, b, c);
            want.set(key, [a, b, c]);
          }
          expect(map.size).toBe(want.size);
          for (const [key, [a, b, c]] of want) {
            expect(map.get(key)).toBe(a);
            expect(map.get3(key)).toBe(c);
            expect(map.holds(key, a, b)).toBe(true);
            expect(map.thirdIfHolds(key, a, b)).toBe(c);
            expect(map.thirdIfHolds(key, a + 1, b)).toBe(-1); // a mark below the one asked for
            expect(map.thirdIfHolds(key, a, b ^ 1)).toBe(-1); // another check
          }
          // The batched probe (ingest's) agrees with thirdIfHolds key by key; 0 (no stack) and absent keys give -1.
          const keys = Float64Array.from([0, ...want.keys(), 2 ** 53]);
          const checks = Int32Array.from(keys, (k, i) => (i % 3 === 2 ? (want.get(k)?.[1] ?? 0) ^ 1 : (want.get(k)?.[1] ?? 0)));
          const minA = 500;
          const out = new Float64Array(keys.length);
          map.thirdIfHoldsEach(keys, checks, keys.length, minA, out);
          keys.forEach((k, i) => expect(out[i]).toBe(k === 0 ? -1 : map.thirdIfHolds(k, minA, checks[i]!)));
        },
      ),
      { numRuns: 100 },
    );
  });

  it('a narrow map has no third value: thirdIfHolds says held with 0 and never reads the next slot, set3 refuses', () => {
    const map = new IdMap(4);
    // Neighbouring keys: the slot after a key's is the next key's (linear probing by the low bits).
    for (let key = 1; key <= 6; key++) map.set(key, 10, 7);
    for (let key = 1; key <= 6; key++) {
      expect(map.thirdIfHolds(key, 10, 7)).toBe(0);
      expect(map.thirdIfHolds(key, 11, 7)).toBe(-1);
    }
    expect(() => map.set3(9, 1, 2, 3)).toThrow(/wide/);
    expect(() => map.get3(1)).toThrow(/wide/);
    expect(map.size).toBe(6);
  });
});
