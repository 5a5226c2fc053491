// Coding 2 of the packed samples (server/store/sample-codec.ts): column 0's
// value 1..3 folded into the id delta. Whatever goes in comes back exactly,
// through the full decoder and the merge loop, for any ids and values
// (zero, negative, huge, several columns, columns not stored); blobs in the
// coding older servers wrote (coding 1) decode the same; a blob in a coding
// this server does not know is refused, not misread.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { addSamples, addSamplesAll, decodeSamples, encodeSamples, MAX_CODING2_STACK_ID, remapSamples, sampleCoding } from '../server/store/sample-codec.js';
import { StackAccumulator } from '../server/store/accumulator.js';
import { legacyEncode } from './helpers/legacy-sample-codec.js';

/** A value as stored profiles and rollups have them: mostly 1..3, sometimes anything an int64 sample value can be below 2^51. */
const valueArb = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 1, max: 3 }) },
  { weight: 2, arbitrary: fc.integer({ min: -3, max: 200 }) },
  { weight: 1, arbitrary: fc.integer({ min: -(2 ** 50), max: 2 ** 50 }) },
  { weight: 1, arbitrary: fc.constantFrom(0, -1, 4, 2 ** 50, -(2 ** 50)) },
);

/** Ascending distinct ids: small gaps (dense ids), sometimes huge ones, up to the coding's limit. */
const idsArb = fc
  .tuple(
    fc.array(fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 1, max: 40 }) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 2 ** 40 }) }), { maxLength: 150 }),
    fc.constantFrom(0, 1, 5000, MAX_CODING2_STACK_ID - 2 ** 41),
  )
  .map(([gaps, first]) => {
    const ids: number[] = [];
    let id = first;
    for (const [i, g] of gaps.entries()) {
      if (i > 0) id += g;
      ids.push(Math.min(id, MAX_CODING2_STACK_ID));
    }
    return [...new Set(ids)];
  });

/**
 * A profile: nTypes columns; each column after the first is independent,
 * or column 0 times a constant (stored with a negative scale), and every
 * column is sometimes multiplied by a common factor (stored with scale > 1).
 */
const profileArb = fc
  .record({
    ids: idsArb,
    nTypes: fc.integer({ min: 1, max: 4 }),
    kinds: fc.array(fc.constantFrom('free', 'proportional'), { minLength: 4, maxLength: 4 }),
    ks: fc.array(fc.integer({ min: 1, max: 1000 }), { minLength: 4, maxLength: 4 }),
    multipliers: fc.array(fc.constantFrom(1, 3, 10_101_010), { minLength: 4, maxLength: 4 }),
    seed: fc.array(valueArb, { minLength: 1, maxLength: 64 }),
  })
  .map(({ ids, nTypes, kinds, ks, multipliers, seed }) => {
    const values: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      for (let t = 0; t < nTypes; t++) {
        const base = seed[(i * 7 + t * 13) % seed.length]!;
        // Values stay within +-2^50 (stored ones are far below 2^53; zigzag doubles them): a base is multiplied only while the product stays there.
        const free = Math.abs(base * multipliers[t]!) > 2 ** 50 ? base : base * multipliers[t]!;
        values.push(t > 0 && kinds[t] === 'proportional' && Math.abs(values[i * nTypes]!) <= 2 ** 40 ? values[i * nTypes]! * ks[t]! : free);
      }
    }
    return { ids, values, nTypes };
  });

/** Column t of every stack, as addSamples accumulates it. */
function addColumn(blob: Buffer, scales: number[], t: number, n: number): Map<number, number> {
  const acc = new StackAccumulator(2);
  // Into column 1 of a two-column accumulator, so `col` is honoured too.
  expect(addSamples(blob, scales, t, acc, 1)).toBe(n);
  const got = new Map<number, number>();
  for (let s = 0; s < acc.length; s++) {
    expect(acc.values[s * 2]).toBe(0);
    got.set(acc.ids[s]!, acc.values[s * 2 + 1]!);
  }
  return got;
}

function expectRoundTrip(blob: Buffer, scales: number[], ids: number[], values: number[], nTypes: number): void {
  const back = decodeSamples(blob, scales);
  expect(back.stackIds).toEqual(ids);
  expect(back.values).toEqual(values);
  for (let t = 0; t < nTypes; t++) {
    const got = addColumn(blob, scales, t, ids.length);
    // Zero values are added too (the accumulator keeps the stack); compare every id.
    expect(got.size).toBe(ids.length);
    ids.forEach((id, i) => expect(got.get(id)).toBe(values[i * nTypes + t]));
  }
  // Every column in one pass (rollups), twice over: the second pass doubles every value.
  const all = new StackAccumulator(nTypes);
  expect(addSamplesAll(blob, scales, all)).toBe(ids.length);
  addSamplesAll(blob, scales, all);
  expect(all.length).toBe(ids.length);
  for (let s = 0; s < all.length; s++) {
    const i = ids.indexOf(all.ids[s]!);
    for (let t = 0; t < nTypes; t++) expect(all.values[s * nTypes + t]).toBe(2 * values[i * nTypes + t]!);
  }
}

describe('sample codec, coding 2', () => {
  it('round-trips any ids and values through decodeSamples and addSamples (property)', () => {
    fc.assert(
      fc.property(profileArb, ({ ids, values, nTypes }) => {
        const { blob, scales } = encodeSamples(ids, values, nTypes);
        expect(sampleCoding(blob)).toBe(2);
        expectRoundTrip(blob, scales, ids, values, nTypes);
      }),
      { numRuns: 400 },
    );
  });

  it('decodes blobs in coding 1 (written by older servers) the same, and re-maps them into coding 2 (property)', () => {
    fc.assert(
      fc.property(profileArb, fc.integer({ min: 1, max: 1000 }), ({ ids, values, nTypes }, salt) => {
        // Scales are chosen as before; only the packing changed.
        const { scales } = encodeSamples(ids, values, nTypes);
        const old = legacyEncode(ids, values, scales);
        if (ids.length > 0) expect(sampleCoding(old)).toBe(1);
        expectRoundTrip(old, scales, ids, values, nTypes);
        // A migration re-packs an old row under new ids: coding 2, same content.
        const rank = new Map(ids.map((id, i) => [id, (ids.length - i) * salt]));
        const remapped = remapSamples(old, scales, (id) => rank.get(id)!);
        expect(sampleCoding(remapped)).toBe(2);
        const back = decodeSamples(remapped, scales);
        const want = new Map(ids.map((id, i) => [rank.get(id)!, values.slice(i * nTypes, (i + 1) * nTypes)]));
        expect(back.stackIds).toEqual([...want.keys()].sort((a, b) => a - b));
        back.stackIds.forEach((id, i) => expect(back.values.slice(i * nTypes, (i + 1) * nTypes)).toEqual(want.get(id)));
      }),
      { numRuns: 300 },
    );
  });

  it('decodes coding-1 bytes an older server wrote (captured from main e463f7c) to the same values', () => {
    // ids 0, 3, 200, 100000; samples 1, 5, -2, 300; cpu = samples * 10 (not stored).
    const a = Buffer.from([0, 2, 3, 10, 197, 1, 3, 216, 139, 6, 216, 4]);
    expect(sampleCoding(a)).toBe(1);
    expect(decodeSamples(a, [1, -10])).toEqual({ stackIds: [0, 3, 200, 100000], values: [1, 10, 5, 50, -2, -20, 300, 3000] });
    expect([...addColumn(a, [1, -10], 1, 4)]).toEqual([
      [0, 10],
      [3, 50],
      [200, -20],
      [100000, 3000],
    ]);
    // Two stored columns under scales 4 and 1; the first stack's delta is 7.
    const b = Buffer.from([7, 2, 2, 2, 0, 4, 163, 2, 4, 5]);
    expect(decodeSamples(b, [4, 1])).toEqual({ stackIds: [7, 9, 300], values: [4, 1, 0, 2, 8, -3] });
    expect([...addColumn(b, [4, 1], 0, 3)]).toEqual([
      [7, 4],
      [9, 0],
      [300, 8],
    ]);
    // A coding-1 blob whose first delta is 128 starts with 0x80 0x01: not the coding-2 marker (0x80 0x00).
    const c = legacyEncode([128, 130], [1, 2], [1]);
    expect([...c.subarray(0, 2)]).toEqual([0x80, 0x01]);
    expect(decodeSamples(c, [1])).toEqual({ stackIds: [128, 130], values: [1, 2] });
  });

  it('spends no byte on a value of 1..3 beside a delta below 32', () => {
    const ids = [0, 3, 200, 100000];
    const both = encodeSamples(ids, [1, 10, 5, 50, -2, -20, 300, 3000], 2);
    expect(both.scales).toEqual([1, -10]);
    // marker; 0*4+1; 3*4+0, zz(5); 197*4+0 (2 bytes), zz(-2); 99800*4+0 (3 bytes), zz(300) (2 bytes).
    expect([...both.blob]).toEqual([0x80, 0x00, 0x02, 1, 12, 10, 148, 6, 3, 224, 174, 24, 216, 4]);
    const ones = encodeSamples([1, 2, 3, 34], [1, 2, 3, 1], 1);
    expect([...ones.blob]).toEqual([0x80, 0x00, 0x02, 5, 6, 7, 125]);
    expect(decodeSamples(ones.blob, ones.scales).values).toEqual([1, 2, 3, 1]);
    // An empty profile is the marker alone and decodes to nothing.
    const empty = encodeSamples([], [], 2);
    expect(decodeSamples(empty.blob, empty.scales)).toEqual({ stackIds: [], values: [] });
    expect(addSamples(empty.blob, empty.scales, 0, new StackAccumulator(1), 0)).toBe(0);
    // So does an empty coding-1 blob.
    expect(decodeSamples(Buffer.alloc(0), [1])).toEqual({ stackIds: [], values: [] });
  });

  it('refuses a blob in an unknown coding and ids it cannot pack exactly', () => {
    const future = Buffer.from([0x80, 0x00, 0x03, 5]);
    expect(() => decodeSamples(future, [1])).toThrow(/unknown coding \(marker byte 3\)/);
    expect(() => addSamples(future, [1], 0, new StackAccumulator(1), 0)).toThrow(/unknown coding/);
    expect(() => encodeSamples([MAX_CODING2_STACK_ID + 1], [1], 1)).toThrow(/not ascending within/);
    expect(() => encodeSamples([5, 4], [1, 1], 1)).toThrow(/not ascending within/);
    expect(() => encodeSamples([1], [1, 2], 2, [-1, 1])).toThrow(/column 0 must be stored/);
  });
});
