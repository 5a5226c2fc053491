// Packed per-profile samples. A stored profile is one row whose `samples`
// blob holds its distinct stacks in ascending stack id order, in one of two
// codings (the blob says which; both decode, so a store written by an older
// server keeps working):
// - coding 2 (written since 2026-12-01): the 3 bytes 0x80 0x00 0x02, then
//   per stack varint((stackId - previousStackId) * 4 + c). c = 1..3: column
//   0's stored value (after its scale) is c and is not written; c = 0: it
//   follows as a zigzag varint. Then a zigzag varint(value / scale) for
//   every other stored column. In the fleet bench 83% of the values are 1
//   and 97% are 1..3, while 74% of the deltas are below 16 and 88% below
//   32, so nearly every stack costs one byte (1.15 bytes per pair over the
//   bench's hour, against 2.02 for coding 1; flagging only "value is 1" in
//   one bit: 1.22, three bits for 1..7: 1.26). 0x80 0x00 is a varint of
//   0 in two bytes, which coding 1 never writes (its varints are minimal),
//   so no coding-1 blob starts with it; the third byte names the coding.
// - coding 1 (before): per stack varint(stackId - previousStackId), then a
//   zigzag varint(value / scale) per stored column.
// `scales` (kept in the row, one per sample type):
// - scale > 0: the GCD of that sample type's values within the profile. CPU
//   values in nanoseconds are multiples of the sampling period, so dividing
//   by it turns 4-byte varints into 1-byte ones (and mostly into 1).
// - scale < 0: the column is not stored; its value is column 0's stored
//   (divided) value times -scale. A CPU profile's `cpu` column is its
//   `samples` column times the period, so this halves the bytes per pair.
//   Column 0 is always stored. Blobs written before this rule have only
//   positive scales and decode unchanged.
// Stack ids are dense integers the database hands out (stack-ids.ts): a
// profile with n of the N live stacks has sorted deltas of about N / n, one
// or two bytes each (they were 6-7 bytes when ids were 53-bit hashes).
// Coding 2 packs ids below 2^51 only; coding-1 blobs of 53-bit hash ids (a
// migration's input) still decode. A merge is one linear scan per profile.
//
// Hand-written rather than protobuf/varint packages: the merge loop below
// decodes tens of millions of pairs per query straight into the accumulator,
// without allocating per pair.
import type { StackAccumulator } from './accumulator.js';

export interface EncodedSamples {
  blob: Buffer;
  scales: number[];
}

/** The bytes every coding-2 blob starts with (see the header). */
const CODING2_MARKER = [0x80, 0x00, 0x02] as const;
/** delta * 4 + c must stay an exact double. */
export const MAX_CODING2_STACK_ID = 2 ** 51 - 1;

/** Which coding a blob is in (see the header); a marker with an unknown coding byte is refused, not misread. */
export function sampleCoding(blob: Uint8Array): 1 | 2 {
  if (blob.length < 2 || blob[0] !== 0x80 || blob[1] !== 0x00) return 1;
  if (blob[2] === 0x02) return 2;
  throw new Error(`samples blob in an unknown coding (marker byte ${blob[2] ?? 'missing'}): written by a newer server?`);
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
 * Packs in coding 2 (see the header). stackIds must be ascending and
 * distinct integers in 0..MAX_CODING2_STACK_ID; values[i * nTypes + t] is
 * the value of sample type t for stackIds[i]. `given` scales (a re-pack of a
 * stored row) must divide the values as the row's did.
 */
export function encodeSamples(stackIds: ArrayLike<number>, values: ArrayLike<number>, nTypes: number, given?: readonly number[]): EncodedSamples {
  const scales = given ? [...given] : chooseScales(values, nTypes);
  const s0 = scales[0]!;
  if (stackIds.length > 0 && !(s0 > 0)) throw new Error(`samples: column 0 must be stored (scale ${s0})`);
  // Worst case 10 bytes per varint, in a scratch buffer reused across calls
  // (the blob is copied out below): a new one per profile was ~60 KB of
  // garbage per ingested profile, and ArrayBuffers count towards full GCs.
  const need = CODING2_MARKER.length + stackIds.length * (1 + nTypes) * 10;
  if (encodeScratch.length < need) encodeScratch = Buffer.allocUnsafe(Math.max(need, encodeScratch.length * 2));
  const out = encodeScratch;
  let pos = 0;
  for (const b of CODING2_MARKER) out[pos++] = b;
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
    if (!(id >= prev && id <= MAX_CODING2_STACK_ID)) throw new Error(`samples: stack id ${id} after ${prev} is not ascending within 0..${MAX_CODING2_STACK_ID}`);
    const v0 = values[i * nTypes]! / s0;
    const c = v0 === 1 || v0 === 2 || v0 === 3 ? v0 : 0;
    write((id - prev) * 4 + c);
    prev = id;
    if (c === 0) write(v0 >= 0 ? v0 * 2 : -v0 * 2 - 1);
    for (let t = 1; t < nTypes; t++) {
      const s = scales[t]!;
      if (s < 0) continue;
      const v = values[i * nTypes + t]! / s;
      write(v >= 0 ? v * 2 : -v * 2 - 1);
    }
  }
  return { blob: Buffer.from(out.subarray(0, pos)), scales };
}

/** Number of varints stored per stack after its id delta (coding 1; coding 2 leaves column 0's out when it is 1..3). */
function storedColumns(scales: readonly number[]): number {
  let n = 0;
  for (const s of scales) if (s > 0) n++;
  return n;
}

/**
 * Adds sample type `typeIndex` of one packed profile into column `col` of
 * `acc`; returns the number of stacks. This is the hot loop of every merged
 * query, so it is written for the common 1-byte varints and allocates nothing.
 */
export function addSamples(blob: Uint8Array, scales: readonly number[], typeIndex: number, acc: StackAccumulator, col: number): number {
  const stored = storedColumns(scales);
  let want = 0; // which stored varint holds the value
  let scale = scales[typeIndex]!;
  if (scale > 0) {
    for (let t = 0; t < typeIndex; t++) if (scales[t]! > 0) want++;
  } else scale = -scale;
  return sampleCoding(blob) === 2 ? addCoding2(blob, stored, want, scale, acc, col) : addCoding1(blob, stored, want, scale, acc, col);
}

/**
 * Adds every sample type of one packed profile into columns 0..n-1 of `acc`
 * (n = min(scales.length, acc.cols)) in one pass; returns the number of
 * stacks. A rollup merges every type of every profile in its window: per
 * type, addSamples decoded each blob once per type and found each stack's
 * slot once per type (a CPU profile twice over).
 */
export function addSamplesAll(blob: Uint8Array, scales: readonly number[], acc: StackAccumulator): number {
  const n = Math.min(scales.length, acc.cols);
  if (n === 1 || sampleCoding(blob) !== 2 || storedColumns(scales) !== 1) {
    let stacks = 0;
    for (let t = 0; t < n; t++) stacks = addSamples(blob, scales, t, acc, t);
    return stacks;
  }
  return addCoding2OneColumnAll(blob, scales, n, acc);
}

/**
 * addSamplesAll for rows that store one column (the others are column 0 times -scale: CPU profiles).
 * Its varint loop repeats addCoding2OneColumn's on purpose: a shared decode step would be a call per pair in the merge's hot loop.
 */
function addCoding2OneColumnAll(blob: Uint8Array, scales: readonly number[], n: number, acc: StackAccumulator): number {
  const factors = new Float64Array(n);
  for (let t = 0; t < n; t++) factors[t] = Math.abs(scales[t]!);
  const cols = acc.cols;
  const len = blob.length;
  let pos = CODING2_MARKER.length;
  let stack = 0;
  let count = 0;
  while (pos < len) {
    let b = blob[pos++]!;
    let value: number;
    if (b < 128) {
      value = b & 3;
      stack += b >> 2;
    } else {
      let v = b & 127;
      let mul = 128;
      do {
        b = blob[pos++]!;
        v += (b & 127) * mul;
        mul *= 128;
      } while (b >= 128);
      value = v % 4;
      stack += (v - value) / 4;
    }
    if (value === 0) {
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
      value = z % 2 === 0 ? z / 2 : -(z + 1) / 2;
    }
    // slotOf before reading acc.values: it may grow (replace) the array.
    const base = acc.slotOf(stack) * cols;
    const values = acc.values;
    for (let t = 0; t < n; t++) values[base + t]! += value * factors[t]!;
    count++;
  }
  return count;
}

function addCoding2(blob: Uint8Array, stored: number, want: number, scale: number, acc: StackAccumulator, col: number): number {
  if (stored === 1) return addCoding2OneColumn(blob, scale, acc, col);
  const len = blob.length;
  let pos = CODING2_MARKER.length;
  let stack = 0;
  let n = 0;
  while (pos < len) {
    let b = blob[pos++]!;
    let c: number;
    if (b < 128) {
      c = b & 3;
      stack += b >> 2;
    } else {
      let v = b & 127;
      let mul = 128;
      do {
        b = blob[pos++]!;
        v += (b & 127) * mul;
        mul *= 128;
      } while (b >= 128);
      c = v % 4;
      stack += (v - c) / 4;
    }
    // One call site for the accumulator (V8 inlines it once): column 0's value is c unless c = 0.
    let value = c;
    for (let t = c === 0 ? 0 : 1; t < stored; t++) {
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
      if (t === want) value = z % 2 === 0 ? z / 2 : -(z + 1) / 2;
    }
    acc.add(stack, col, value * scale);
    n++;
  }
  return n;
}

/** addCoding2 for rows that store one column (CPU profiles: cpu = samples * period), the common case, without the per-column loop. */
function addCoding2OneColumn(blob: Uint8Array, scale: number, acc: StackAccumulator, col: number): number {
  const len = blob.length;
  let pos = CODING2_MARKER.length;
  let stack = 0;
  let n = 0;
  while (pos < len) {
    let b = blob[pos++]!;
    let value: number;
    if (b < 128) {
      value = b & 3;
      stack += b >> 2;
    } else {
      let v = b & 127;
      let mul = 128;
      do {
        b = blob[pos++]!;
        v += (b & 127) * mul;
        mul *= 128;
      } while (b >= 128);
      value = v % 4;
      stack += (v - value) / 4;
    }
    if (value === 0) {
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
      value = z % 2 === 0 ? z / 2 : -(z + 1) / 2;
    }
    acc.add(stack, col, value * scale);
    n++;
  }
  return n;
}

function addCoding1(blob: Uint8Array, stored: number, want: number, scale: number, acc: StackAccumulator, col: number): number {
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

/** Decodes a whole packed profile (all sample types, either coding), for /profiles/:id, rollups and migrations. */
export function decodeSamples(blob: Uint8Array, scales: readonly number[]): { stackIds: number[]; values: number[] } {
  const coding2 = sampleCoding(blob) === 2;
  const nTypes = scales.length;
  const stackIds: number[] = [];
  const values: number[] = [];
  let pos = coding2 ? CODING2_MARKER.length : 0;
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
    const d = read();
    // Coding 2: the low two bits are column 0's value when 1..3 (see the header).
    const c = coding2 ? d % 4 : 0;
    stack += coding2 ? (d - c) / 4 : d;
    stackIds.push(stack);
    let first = 0;
    for (let t = 0; t < nTypes; t++) {
      const s = scales[t]!;
      if (s < 0) {
        values.push(first * -s);
        continue;
      }
      let v: number;
      if (t === 0 && c !== 0) v = c;
      else {
        const z = read();
        v = z % 2 === 0 ? z / 2 : -(z + 1) / 2;
      }
      if (t === 0) first = v;
      values.push(v * s);
    }
  }
  return { stackIds, values };
}

/**
 * Re-encodes a packed profile under new stack ids (schema migrations):
 * newId(oldId) must be defined for every stack of the blob; the values and
 * scales stay as they are, and the result is in coding 2 whatever the input's.
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
