// Fleet-wide identities (identity.ts, the server's own rules) of what the
// agent's profile builder writes, for lean pushes made straight from the
// builder instead of from the pprof (preparePush hashed every string,
// function, location and stack of the pprof again at every push, and cost
// the agent more CPU than pushing the pprof; docs/benchmarks.md).
//
// What is hashed when:
// - strings, i.e. functions (name, file) and mappings (build ID or path):
//   once per content while it stays in this cache, which the agent keeps
//   across intervals; bounded by `maxEntries`, started over when full, counted;
// - locations and stacks: once per builder (interval and series), as the
//   builder creates them, from their function's and mapping's cached ids:
//   integer mixing only, no strings. Caching them per frame object across
//   intervals was tried: on a host with process churn (a new process has new
//   frame objects) its WeakMap bookkeeping cost more than the hashing it saved
//   (bench/agent-push-prepare.ts).
// The ids equal what preparePush computes from the builder's pprof
// (test/push-identity-cache.test.ts, bench/agent-push-prepare.ts).
import type { Mapping } from 'pprof-format';
import { addressRuleOf, functionIdentity, Hasher, lineIdentity, locationIdentity, mappingIdentity, mixChecks, normalizeAddress, stackCacheCheck, stackIdentity, stringIdentity, TWO32 } from './identity.js';

/** A mapping as a lean push defines it (identity: build ID, else path). */
export interface MappingDef {
  id: number;
  buildId: string;
  filename: string;
  fileOffset: number;
  size: number;
}

/** A function as the builder writes it: system name = name, start line 0. */
export interface FunctionDef {
  id: number;
  name: string;
  filename: string;
}

/** A location as the builder writes it (not folded, at most one line, line number 0), address normalized. */
export interface LocationDef {
  id: number;
  check: number;
  mapping: MappingDef | undefined;
  addrHi: number;
  addrLo: number;
  fn: FunctionDef | undefined;
}

/** One builder mapping: its definition and what normalizing an address in it needs. */
export interface MappingContext {
  def: MappingDef;
  rule: number;
  start: number;
  limit: number;
  offset: number;
}

/** Rough heap per entry (key string, the def object, the Map slot). */
export const BYTES_PER_IDENTITY_ENTRY = 256;
const DEFAULT_MAX_ENTRIES = 200_000;

const big = (v: number | bigint): bigint => (typeof v === 'bigint' ? v : BigInt(v));

export class PushIdentityCache {
  /** Function definitions by `${name}\0${file}` (the builder's own key). */
  private readonly functions = new Map<string, FunctionDef>();
  /** Mapping ids by identity key: 'b' + build ID or 'f' + path. */
  private readonly mappingIds = new Map<string, number>();
  private readonly maxEntries: number;
  private readonly h = new Hasher();
  private readonly hs = new Hasher();
  private checks = new Int32Array(256);
  private order = new Int32Array(256);
  private ids = new Float64Array(256);
  /** Entries dropped to stay within maxEntries. */
  evictions = 0;
  /** Strings hashed (cache misses) and found (hits), for tests and benchmarks. */
  readonly counters = { hits: 0, misses: 0 };

  constructor(options: { maxEntries?: number } = {}) {
    this.maxEntries = Math.max(1, options.maxEntries ?? DEFAULT_MAX_ENTRIES);
  }

  get entries(): number {
    return this.functions.size + this.mappingIds.size;
  }

  /** Estimated bytes held. */
  get bytes(): number {
    return this.entries * BYTES_PER_IDENTITY_ENTRY;
  }

  /** A builder mapping's definition (its string indices in `strings`). */
  mapping(m: Mapping, strings: readonly string[]): MappingContext {
    const filename = strings[Number(m.filename)] ?? '';
    const buildId = strings[Number(m.buildId)] ?? '';
    const start = big(m.memoryStart);
    const limit = big(m.memoryLimit);
    const offset = big(m.fileOffset);
    const byBuildId = buildId !== '';
    const key = byBuildId ? `b${buildId}` : `f${filename}`;
    let id = this.mappingIds.get(key);
    if (id === undefined) {
      const s = this.stringId(byBuildId ? buildId : filename);
      id = mappingIdentity(this.h, byBuildId, s.id, s.check).id();
      this.makeRoom();
      this.mappingIds.set(key, id);
    } else this.counters.hits++;
    return {
      def: { id, buildId, filename, fileOffset: Number(offset), size: limit > start ? Number(limit - start) : 0 },
      rule: addressRuleOf(filename, limit, offset),
      start: Number(start),
      limit: Number(limit),
      offset: Number(offset),
    };
  }

  /** The function the builder writes for (name, file); `key` is `${name}\0${file}`. */
  function(name: string, file: string, key: string): FunctionDef {
    let f = this.functions.get(key);
    if (f === undefined) {
      const n = this.stringId(name);
      const fl = this.stringId(file);
      f = { id: functionIdentity(this.h, n.id, n.check, n.id, n.check, fl.id, fl.check, 0).id(), name, filename: file };
      this.makeRoom();
      this.functions.set(key, f);
    } else this.counters.hits++;
    return f;
  }

  /** The location the builder writes at `address` in `mapping` (undefined: none) with `fn` as its one line (or none). */
  location(mapping: MappingContext | undefined, address: bigint, fn: FunctionDef | undefined): LocationDef {
    let hi: number;
    let lo: number;
    const a = Number(address);
    if (a < 2 ** 53) {
      hi = Math.floor(a / TWO32);
      lo = a >>> 0;
    } else {
      hi = Number(address >> 32n) >>> 0;
      lo = Number(address & 0xffffffffn) >>> 0;
    }
    const nLines = fn === undefined ? 0 : 1;
    if (mapping !== undefined) {
      const n = normalizeAddress(mapping.rule, hi, lo, mapping.start, mapping.limit, mapping.offset, nLines);
      hi = n.hi;
      lo = n.lo;
    }
    const h = locationIdentity(this.h, mapping?.def.id ?? 0, hi, lo, 0, nLines);
    if (fn !== undefined) lineIdentity(h, fn.id, 0);
    return { id: h.id(), check: h.check(), mapping: mapping?.def, addrHi: hi, addrLo: lo, fn };
  }

  /** Id and cache check of a stack of these locations, leaf first. */
  stack(locs: readonly LocationDef[]): { id: number; check: number } {
    const n = locs.length;
    if (this.ids.length < n) {
      this.ids = new Float64Array(n * 2);
      this.checks = new Int32Array(n * 2);
      this.order = new Int32Array(n * 2);
    }
    for (let j = 0; j < n; j++) {
      this.ids[j] = locs[j]!.id;
      this.checks[j] = locs[j]!.check;
      this.order[j] = j;
    }
    const h = stackIdentity(this.h, n).numsAt(this.ids, this.order, 0, n);
    return { id: h.id(), check: stackCacheCheck(h.check(), mixChecks(this.checks, this.order, 0, n)) };
  }

  private stringId(s: string): { id: number; check: number } {
    this.counters.misses++;
    const b = Buffer.from(s, 'utf8');
    stringIdentity(this.hs, b, 0, b.length);
    return { id: this.hs.id(), check: this.hs.check() };
  }

  /** Full: start over (counted); what is in use is hashed again as it comes back. */
  private makeRoom(): void {
    if (this.entries < this.maxEntries) return;
    this.evictions += this.entries;
    this.functions.clear();
    this.mappingIds.clear();
  }
}
