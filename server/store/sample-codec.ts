// Packed per-profile samples. A stored profile is one row whose `samples`
// blob holds, for each distinct stack (ascending stack id):
//   varint(stackId - previousStackId), then per sample type zigzag-varint(value / scale)
// `scale` is the GCD of that sample type's values within the profile, kept in
// the row: CPU values in nanoseconds are multiples of the sampling period, so
// dividing by it turns 4-byte varints into 1-byte ones. Stack ids are 53-bit
// content hashes (hash.ts), so the deltas between the sorted ids of a profile
// with n stacks are about 2^53 / n: 6-7 bytes each. A merge is one linear
// scan per profile.
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

/**
 * stackIds must be ascending and distinct; values[i * nTypes + t] is the value
 * of sample type t for stackIds[i].
 */
export function encodeSamples(stackIds: ArrayLike<number>, values: ArrayLike<number>, nTypes: number): EncodedSamples {
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
  // Worst case 10 bytes per varint.
  const out = Buffer.allocUnsafe(stackIds.length * (1 + nTypes) * 10);
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
      const v = values[i * nTypes + t]! / scales[t]!;
      write(v >= 0 ? v * 2 : -v * 2 - 1);
    }
  }
  return { blob: Buffer.from(out.subarray(0, pos)), scales };
}

/**
 * Adds sample type `typeIndex` of one packed profile (multiplied by `scale`)
 * into column `col` of `acc`. This is the hot loop of every merged query, so
 * it is written for the common 1-byte value varint.
 */
export function addSamples(blob: Uint8Array, nTypes: number, typeIndex: number, scale: number, acc: StackAccumulator, col: number): number {
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
    for (let t = 0; t < nTypes; t++) {
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
      if (t === typeIndex) {
        const value = z % 2 === 0 ? z / 2 : -(z + 1) / 2;
        acc.add(stack, col, value * scale);
      }
    }
    n++;
  }
  return n;
}

/** Decodes a whole packed profile (all sample types), for /profiles/:id. */
export function decodeSamples(blob: Uint8Array, nTypes: number, scales: readonly number[]): { stackIds: number[]; values: number[] } {
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
    for (let t = 0; t < nTypes; t++) {
      const z = read();
      values.push((z % 2 === 0 ? z / 2 : -(z + 1) / 2) * scales[t]!);
    }
  }
  return { stackIds, values };
}
