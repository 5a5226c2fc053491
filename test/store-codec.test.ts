// The packed-sample codec (server/store/sample-codec.ts): whatever goes in
// comes back exactly, through the full decoder, the merge loop and a re-map
// to new stack ids; a column that is column 0 times a constant is not stored.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { addSamples, decodeSamples, encodeSamples, remapSamples } from '../server/store/sample-codec.js';
import { StackAccumulator } from '../server/store/accumulator.js';

/** A profile: ascending distinct stack ids and nTypes values per stack (integers, or column 1 = column 0 * k). */
const profileArb = fc
  .record({
    ids: fc.uniqueArray(fc.integer({ min: 0, max: 2 ** 40 }), { maxLength: 200 }),
    nTypes: fc.integer({ min: 1, max: 3 }),
    proportional: fc.boolean(),
    k: fc.integer({ min: 1, max: 100 }), // values stay below 2^53, as stored values do
    seed: fc.array(fc.integer({ min: -1_000_000, max: 1_000_000 }), { minLength: 600, maxLength: 600 }),
    multiplier: fc.constantFrom(1, 3, 10_101_010),
  })
  .map(({ ids, nTypes, proportional, k, seed, multiplier }) => {
    const sorted = [...ids].sort((a, b) => a - b);
    const values: number[] = [];
    for (let i = 0; i < sorted.length; i++) {
      for (let t = 0; t < nTypes; t++) {
        const base = seed[(i * nTypes + t) % seed.length]! * multiplier;
        values.push(t === 1 && proportional ? values[i * nTypes]! * k : base);
      }
    }
    return { ids: sorted, values, nTypes };
  });

describe('sample codec', () => {
  it('round-trips through decodeSamples and addSamples (property)', () => {
    fc.assert(
      fc.property(profileArb, ({ ids, values, nTypes }) => {
        const { blob, scales } = encodeSamples(ids, values, nTypes);
        const back = decodeSamples(blob, scales);
        expect(back.stackIds).toEqual(ids);
        expect(back.values).toEqual(values);
        for (let t = 0; t < nTypes; t++) {
          const acc = new StackAccumulator(1);
          expect(addSamples(blob, scales, t, acc, 0)).toBe(ids.length);
          const got = new Map<number, number>();
          for (let s = 0; s < acc.length; s++) got.set(acc.ids[s]!, acc.values[s]!);
          ids.forEach((id, i) => expect(got.get(id)).toBe(values[i * nTypes + t]));
        }
      }),
      { numRuns: 300 },
    );
  });

  it('re-maps stack ids and keeps every value (property)', () => {
    fc.assert(
      fc.property(profileArb, fc.integer({ min: 1, max: 1000 }), ({ ids, values, nTypes }, salt) => {
        const { blob, scales } = encodeSamples(ids, values, nTypes);
        // A bijection that reorders: reverse rank, spaced by salt.
        const rank = new Map(ids.map((id, i) => [id, (ids.length - i) * salt]));
        const back = decodeSamples(remapSamples(blob, scales, (id) => rank.get(id)!), scales);
        expect(back.stackIds).toEqual([...back.stackIds].sort((a, b) => a - b));
        const want = new Map(ids.map((id, i) => [rank.get(id)!, values.slice(i * nTypes, (i + 1) * nTypes)]));
        back.stackIds.forEach((id, i) => expect(back.values.slice(i * nTypes, (i + 1) * nTypes)).toEqual(want.get(id)));
        expect(back.stackIds.length).toBe(ids.length);
      }),
      { numRuns: 200 },
    );
  });

  it('does not store a column that is column 0 times a constant (cpu = samples * period)', () => {
    const ids = [1, 2, 5, 9, 40];
    const counts = [1, 7, 3, 1, 2];
    const periodNs = 10_101_010;
    const both = encodeSamples(ids, counts.flatMap((c) => [c, c * periodNs]), 2);
    expect(both.scales).toEqual([1, -periodNs]);
    // The same bytes as the samples column alone.
    expect(both.blob.equals(encodeSamples(ids, counts, 1).blob)).toBe(true);
    expect(decodeSamples(both.blob, both.scales).values).toEqual(counts.flatMap((c) => [c, c * periodNs]));
    // One stack off the ratio: both columns stored.
    const off = encodeSamples(ids, counts.flatMap((c, i) => [c, c * periodNs + (i === 3 ? periodNs : 0)]), 2);
    expect(off.scales).toEqual([1, periodNs]);
    expect(off.blob.length).toBeGreaterThan(both.blob.length);
  });

  it('decodes blobs written before the rule (positive scales only)', () => {
    // Hand-packed: stack 3 -> (2, 20), stack 4 -> (1, 10) as zigzag varints of value / scale, scales 1 and 10.
    const old = Buffer.from([3, 4, 4, 1, 2, 2]);
    expect(decodeSamples(old, [1, 10])).toEqual({ stackIds: [3, 4], values: [2, 20, 1, 10] });
  });
});
