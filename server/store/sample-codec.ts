// Packed per-profile samples. A stored profile is one row whose `samples`
// blob holds, for each distinct stack (ascending stack id):
//   varint(stackId - previousStackId), then per stored sample type zigzag-varint(value / scale)
// `scales` (kept in the row, one per sample type):
// - scale > 0: the GCD of that sample type's values within the profile. CPU
//   values in nanoseconds are multiples of the sampling period, so dividing
//   by it turns 4-byte varints into 1-byte ones.
// - scale < 0: the column is not stored; its value is column 0's stored
//   (divided) value times -scale. A CPU profile's `cpu` column is its
//   `samples` column times the period, so this halves the bytes per pair.
//   Column 0 is always stored. Blobs written before this rule have only
//   positive scales and decode unchanged.
// Stack ids are dense integers the database hands out (stack-ids.ts): a
// profile with n of the N live stacks has sorted deltas of about N / n, one
// or two bytes each (they were 6-7 bytes when ids were 53-bit hashes). A
// merge is one linear scan per profile.
//
// Hand-written rather than protobuf/varint packages: the merge loop below
// decodes tens of millions of pairs per query straight into the accumulator,
// without allocating per pair.
import type { StackAccumulator } from './accumulator.js';

export interface EncodedSamples {
  blob: Buffer;
  scales: number[];
}

function gcd(a: number, b: number): number {
  while (b !== 0) {
    const t = a % b;
    a = b;
    b = t;
  }
  return a;
}

/** Scales of the columns (see the header): GCDs, negated for columns that are column 0 times a constant. */
function chooseScales(values: ArrayLike<number>, nTypes: number): number[] {
  const scales: number[] = [];
  for (let t = 0; t < nTypes; t++) {
    let g = 0;
    for (let i = t; i < values.length; i += nTypes) {
      const v = Math.abs(values[i]!);
      if (v !== 0 && Number.isSafeInteger(v)) g = g === 0 ? v : gcd(g, v);
      else if (v !== 0) g = 1; // non-integral or huge: keep exact values
      if (g === 1) break;
    }
    scales.push(g === 0 ? 1 : g);
  }
  const s0 = scales[0]!;
  for (let t = 1; t < nTypes; t++) {
    const st = scales[t]!;
    let same = values.length > 0;
    for (let i = 0; i < values.length && same; i += nTypes) same = values[i + t]! / st === values[i]! / s0 && (values[i]! / s0) * st === values[i + t]!;
    if (same) scales[t] = -st;
  }
  return scales;
}

let encodeScratch = Buffer.allocUnsafe(1 << 16);

/**
 * stackIds must be ascending and distinct non-negative integers; values[i * nTypes + t]
 * is the value of sample type t for stackIds[i].
 */
export function encodeSamples(stackIds: ArrayLike<number>, values: ArrayLike<number>, nTypes: number, given?: readonly number[]): EncodedSamples {
  const scales = given ? [...given] : chooseScales(values, nTypes);
  // Worst case 10 bytes per varint, in a scratch buffer reused across calls
  // (the blob is copied out below): a new one per profile was ~60 KB of
  // garbage per ingested profile, and ArrayBuffers count towards full GCs.
  const need = stackIds.length * (1 + nTypes) * 10;
  if (encodeScratch.length < need) encodeScratch = Buffer.allocUnsafe(Math.max(need, encodeScratch.length * 2));
  const out = encodeScratch;
  let pos = 0;
  let prev = 0;
  const write = (v: number) => {
    while (v >= 128) {
      out[pos++] = (v % 128) | 128;
      v = Math.floor(v / 128);
    }
    out[pos++] = v;
  };
  for (let i = 0; i < stackIds.length; i++) {
    const id = stackIds[i]!;
    write(id - prev);
    prev = id;
    for (let t = 0; t < nTypes; t++) {
      const s = scales[t]!;
      if (s < 0) continue;
      const v = values[i * nTypes + t]! / s;
      write(v >= 0 ? v * 2 : -v * 2 - 1);
    }
  }
  return { blob: Buffer.from(out.subarray(0, pos)), scales };
}

/** Number of varints stored per stack after its id delta. */
function storedColumns(scales: readonly number[]): number {
  let n = 0;
  for (const s of scales) if (s > 0) n++;
  return n;
}

/**
 * Adds sample type `typeIndex` of one packed profile into column `col` of
 * `acc`. This is the hot loop of every merged query, so it is written for
 * the common 1-byte varints and allocates nothing.
 */
export function addSamples(blob: Uint8Array, scales: readonly number[], typeIndex: number, acc: StackAccumulator, col: number): number {
  const stored = storedColumns(scales);
  let want = 0; // which stored varint holds the value
  let scale = scales[typeIndex]!;
  if (scale > 0) {
    for (let t = 0; t < typeIndex; t++) if (scales[t]! > 0) want++;
  } else scale = -scale;
  const len = blob.length;
  let pos = 0;
  let stack = 0;
  let n = 0;
  while (pos < len) {
    let b = blob[pos++]!;
    let v = b & 127;
    if (b >= 128) {
      let mul = 128;
      do {
        b = blob[pos++]!;
        v += (b & 127) * mul;
        mul *= 128;
      } while (b >= 128);
    }
    stack += v;
    for (let t = 0; t < stored; t++) {
      b = blob[pos++]!;
      let z = b & 127;
      if (b >= 128) {
        let mul = 128;
        do {
          b = blob[pos++]!;
          z += (b & 127) * mul;
          mul *= 128;
        } while (b >= 128);
      }
      if (t === want) {
        const value = z % 2 === 0 ? z / 2 : -(z + 1) / 2;
        acc.add(stack, col, value * scale);
      }
    }
    n++;
  }
  return n;
}

/** Decodes a whole packed profile (all sample types), for /profiles/:id, rollups and migrations. */
export function decodeSamples(blob: Uint8Array, scales: readonly number[]): { stackIds: number[]; values: number[] } {
  const nTypes = scales.length;
  const stackIds: number[] = [];
  const values: number[] = [];
  let pos = 0;
  let stack = 0;
  const read = () => {
    let v = 0;
    let mul = 1;
    let b: number;
    do {
      b = blob[pos++]!;
      v += (b & 127) * mul;
      mul *= 128;
    } while (b >= 128);
    return v;
  };
  while (pos < blob.length) {
    stack += read();
    stackIds.push(stack);
    let first = 0;
    for (let t = 0; t < nTypes; t++) {
      const s = scales[t]!;
      if (s < 0) {
        values.push(first * -s);
        continue;
      }
      const z = read();
      const v = z % 2 === 0 ? z / 2 : -(z + 1) / 2;
      if (t === 0) first = v;
      values.push(v * s);
    }
  }
  return { stackIds, values };
}

/**
 * Re-encodes a packed profile under new stack ids (schema migrations):
 * newId(oldId) must be defined for every stack of the blob; the values and
 * scales stay as they are.
 */
export function remapSamples(blob: Uint8Array, scales: readonly number[], newId: (oldId: number) => number): Buffer {
  const { stackIds, values } = decodeSamples(blob, scales);
  const n = stackIds.length;
  const nTypes = scales.length;
  const order = Array.from({ length: n }, (_, i) => i);
  const ids = stackIds.map(newId);
  order.sort((a, b) => ids[a]! - ids[b]!);
  const sortedIds = new Float64Array(n);
  const sortedVals = new Float64Array(n * nTypes);
  order.forEach((i, k) => {
    sortedIds[k] = ids[i]!;
    for (let t = 0; t < nTypes; t++) sortedVals[k * nTypes + t] = values[i * nTypes + t]!;
  });
  // The row's scales stay valid: the values are the same, only their order changes.
  return encodeSamples(sortedIds, sortedVals, nTypes, scales).blob;
}
