// Content ids: the fleet-wide identity of code, computed by the server at
// ingest (server/ingest.ts) and by the agent for its lean pushes
// (src/profile/push-encode.ts), from this one module so both agree exactly.
// Every symbol row (mapping, function, location, stack), series and profile
// kind is identified by a hash of its content, so any number of servers (and
// agents) compute the same id for the same code without asking anyone (no id
// allocator, no single writer).
//
// Identity of code (the same code in 1,000 processes is one set of rows):
// - a mapping is its binary: build ID, else path;
// - a location is (binary, file-relative address, folded flag, its lines):
//   native addresses are turned from runtime addresses into file offsets
//   (address - memory_start + file_offset), so ASLR and process restarts do
//   not make new ids; resolved kernel and JIT frames keep no address at all
//   (KASLR differs per host, JIT addresses die with the process), unresolved
//   ones keep theirs;
// - a function is (name, system name, file, start line); a stack is its
//   location list, leaf first.
//
import { frameKindOfMapping } from './frame-kind.js';

// Width: 53 bits, so an id is an exact JS number, an exact SQLite INTEGER as
// the sqlite3 driver reads it (it converts through a double) and a PostgreSQL
// bigint we can parse as a number. The price is the collision probability:
// about n^2 / 2^54 for n rows of one kind (1e6 rows: 6e-5, 1e7 rows: 0.6%).
// A collision is never merged silently: a third, independent 32-bit lane
// (`check`) travels with every id in the ingest cache, and the database only
// accepts an existing id when the stored content is equal (see the stores'
// upserts); otherwise the profile is refused with FP_ERR_ID_COLLISION and
// counted. Two independent lanes of murmur3-style mixing give the 53 bits.

// The three lanes' mixing steps as pure functions of (lane, value), so the
// hot loops (a stack's ~30 location ids, a string's bytes) keep the lanes in
// locals instead of loading and storing the Hasher's fields per value.
const mixA = (a0: number, v: number): number => {
  let k = Math.imul(v, 0xcc9e2d51);
  k = Math.imul((k << 15) | (k >>> 17), 0x1b873593);
  let a = a0 ^ k;
  a = (a << 13) | (a >>> 19);
  return (Math.imul(a, 5) + 0xe6546b64) | 0;
};
const mixB = (b0: number, v: number): number => {
  let j = Math.imul(v ^ 0x5bd1e995, 0x85ebca77);
  j = Math.imul((j << 13) | (j >>> 19), 0xc2b2ae3d);
  let b = b0 ^ j;
  b = (b << 17) | (b >>> 15);
  return (Math.imul(b, 9) + 0x165667b1) | 0;
};
const mixC = (c0: number, v: number): number => {
  let c = Math.imul(c0 ^ v, 0x01000193);
  c ^= c >>> 15;
  return Math.imul(c, 0x27d4eb2f);
};

/** Lane state; read the result with `id()` / `check()` after feeding values. */
export class Hasher {
  a = 0;
  b = 0;
  c = 0;

  reset(seed: number): this {
    this.a = seed ^ 0x6a09e667;
    this.b = Math.imul(seed, 0x9e3779b1) ^ 0x3c6ef372;
    this.c = seed + 0x510e527f;
    return this;
  }

  /** Feeds a 32-bit integer (any JS number; only its low 32 bits count). */
  int(v: number): this {
    this.a = mixA(this.a, v);
    this.b = mixB(this.b, v);
    this.c = mixC(this.c, v);
    return this;
  }

  /** Feeds a non-negative integer below 2^53 (ids, line numbers, addresses below 2^53). */
  num(v: number): this {
    return this.int(v >>> 0).int((v / 4294967296) | 0);
  }

  /** Same as num(values[index[j]]) for j in [from, to): a stack's location ids. */
  numsAt(values: Float64Array, index: Int32Array, from: number, to: number): this {
    let a = this.a;
    let b = this.b;
    let c = this.c;
    for (let j = from; j < to; j++) {
      const v = values[index[j]!]!;
      const lo = v >>> 0;
      const hi = (v / 4294967296) | 0;
      a = mixA(mixA(a, lo), hi);
      b = mixB(mixB(b, lo), hi);
      c = mixC(mixC(c, lo), hi);
    }
    this.a = a;
    this.b = b;
    this.c = c;
    return this;
  }

  /** Feeds bytes buf[s..e), four at a time. */
  bytes(buf: Uint8Array, s: number, e: number): this {
    this.int(e - s);
    let a = this.a;
    let b = this.b;
    let c = this.c;
    let k = s;
    for (; k + 4 <= e; k += 4) {
      const v = buf[k]! | (buf[k + 1]! << 8) | (buf[k + 2]! << 16) | (buf[k + 3]! << 24);
      a = mixA(a, v);
      b = mixB(b, v);
      c = mixC(c, v);
    }
    this.a = a;
    this.b = b;
    this.c = c;
    let tail = 0;
    for (let sh = 0; k < e; k++, sh += 8) tail |= buf[k]! << sh;
    return this.int(tail);
  }

  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    return this.bytes(b, 0, b.length);
  }

  /** The finalizer, for check lanes computed outside a Hasher. */
  static fmixCheck(h: number): number {
    return Hasher.fmix(h) | 0;
  }

  private static fmix(h: number): number {
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    return h ^ (h >>> 16);
  }

  /** 53-bit id, never 0 (0 is "none": the root stack, a location without mapping). */
  id(): number {
    const hi = Hasher.fmix(this.a ^ Math.imul(this.b, 0x2c1b3c6d)) >>> 11;
    const lo = Hasher.fmix(this.b ^ 0x7f4a7c15) >>> 0;
    const v = hi * 4294967296 + lo;
    return v === 0 ? 1 : v;
  }

  /** A 32-bit value independent of id(), kept beside ids to notice collisions. */
  check(): number {
    return Hasher.fmix(this.c ^ 0x2545f491) | 0;
  }
}

/**
 * A 32-bit mix of checks[index[j]] for j in [from, to) (a stack's locations'
 * check lanes), folded into the stack's check in the ingest cache. Only in
 * memory: never part of a stored id.
 */
export function mixChecks(checks: Int32Array, index: Int32Array, from: number, to: number): number {
  let c = 0x2545f491;
  for (let j = from; j < to; j++) c = mixC(c, checks[index[j]!]!);
  return Hasher.fmixCheck(c);
}

/** Seeds: one per kind, so equal content of different kinds gets different ids. */
export const SEED = {
  mapping: 0x11,
  function: 0x22,
  location: 0x33,
  stack: 0x44,
  series: 0x55,
  profileType: 0x66,
  string: 0x77,
} as const;

const h = new Hasher();

/** Id of a text (series labels, profile kind descriptors). */
export function textId(seed: number, text: string): number {
  return h.reset(seed).str(text).id();
}

// ---- The identity of each kind of row. Each function resets `h` and feeds
// the row's content; read the id and check with h.id() / h.check(). Strings
// enter as their own (id, check), so a row's hash does not depend on how the
// sender numbered its string table.

export const TWO32 = 4294967296;

/** Feeds a string's UTF-8 bytes buf[s..e). */
export function stringIdentity(hs: Hasher, buf: Uint8Array, s: number, e: number): Hasher {
  return hs.reset(SEED.string).bytes(buf, s, e);
}

/** A mapping is its binary: the build ID's string (byBuildId) else the path's. */
export function mappingIdentity(hs: Hasher, byBuildId: boolean, keyStrId: number, keyStrCheck: number): Hasher {
  return hs.reset(SEED.mapping).int(byBuildId ? 1 : 2).num(keyStrId).int(keyStrCheck);
}

/** A function: (name, system name, file name) as string (id, check) pairs, and its start line. */
export function functionIdentity(
  hs: Hasher,
  nameId: number,
  nameCheck: number,
  systemNameId: number,
  systemNameCheck: number,
  fileId: number,
  fileCheck: number,
  startLine: number,
): Hasher {
  hs.reset(SEED.function).num(nameId).int(nameCheck).num(systemNameId).int(systemNameCheck).num(fileId).int(fileCheck);
  return hs.int(startLine).int((startLine / TWO32) | 0);
}

/** Starts a location: its mapping's id (0 for none), its normalized address (uint32 halves), folded flag and number of lines; then lineIdentity per line. */
export function locationIdentity(hs: Hasher, mappingId: number, addrHi: number, addrLo: number, folded: number, nLines: number): Hasher {
  return hs.reset(SEED.location).num(mappingId).int(addrHi).int(addrLo).int(folded).int(nLines);
}

/** One line of a location (innermost first): its function's id and line number. */
export function lineIdentity(hs: Hasher, functionId: number, line: number): Hasher {
  return hs.num(functionId).int(line).int((line / TWO32) | 0);
}

/** Starts a stack of n locations; then feed their ids in order, leaf first (num or numsAt). */
export function stackIdentity(hs: Hasher, nLocations: number): Hasher {
  return hs.reset(SEED.stack).int(nLocations);
}

/** How a mapping's locations are addressed (see normalizeAddress). */
export const ADDRESS_KEPT = 0;
/** Native code: runtime addresses become file offsets. */
export const ADDRESS_FILE_RELATIVE = 1;
/** Kernel and JIT code: a resolved frame keeps no address. */
export const ADDRESS_DROPPED_WHEN_RESOLVED = 2;

/** Address rule of a mapping, from its file name (frame-kind.ts) and its bounds. */
export function addressRuleOf(filename: string, memoryLimit: bigint, fileOffset: bigint): number {
  const kind = frameKindOfMapping(filename);
  if (kind === 'native') return memoryLimit < 2n ** 53n && fileOffset < 2n ** 53n ? ADDRESS_FILE_RELATIVE : ADDRESS_KEPT;
  return kind === 'kernel' || kind === 'jit' ? ADDRESS_DROPPED_WHEN_RESOLVED : ADDRESS_KEPT;
}

/** Result of normalizeAddress (uint32 halves), reused: read before the next call. */
export const normalized = { hi: 0, lo: 0 };

/**
 * The stored, fleet-wide address of a location: a native address inside its
 * mapping becomes its file offset, a resolved (nLines > 0) kernel or JIT
 * frame's address is dropped (0), anything else is kept.
 */
export function normalizeAddress(rule: number, hi: number, lo: number, memoryStart: number, memoryLimit: number, fileOffset: number, nLines: number): typeof normalized {
  if (rule === ADDRESS_FILE_RELATIVE) {
    const addr = hi * TWO32 + lo;
    if (addr >= memoryStart && addr < memoryLimit) {
      const fo = addr - memoryStart + fileOffset;
      hi = Math.floor(fo / TWO32);
      lo = fo >>> 0;
    }
  } else if (rule === ADDRESS_DROPPED_WHEN_RESOLVED && nLines > 0) {
    hi = 0;
    lo = 0;
  }
  normalized.hi = hi;
  normalized.lo = lo;
  return normalized;
}

/**
 * The check lane the ingest cache keeps for a stack: its own check with its
 * locations' checks mixed in (mixChecks), so a stack found stored also
 * vouches for its locations' content. A lean push's stack references carry
 * this value.
 */
export function stackCacheCheck(stackCheck: number, mixedLocationChecks: number): number {
  return stackCheck ^ mixedLocationChecks;
}
