// Encoder of the lean push (push-format.ts), used by the agent's shipper and
// by bench/fleet-ingest.ts. Two steps:
// - preparePush: a pprof (pprof-format objects) -> every mapping, function,
//   location and stack under its fleet-wide content id (identity.ts, the
//   server's own rules), samples merged per (stack, string labels);
// - encodePush: one push from a prepared profile, referencing the stacks the
//   caller says the server holds and defining the others in full.
// A prepared profile can be encoded again (after a 409 FP_ERR_UNKNOWN_STACKS,
// with the missing stacks defined), so the spool keeps only the pprof.
// The agent does not prepare from the pprof while it still has the profile
// it built: its builder gives a LeanProfile (stacks under ids it keeps across
// intervals, push-identity-cache.ts), and prepareLeanPush turns that into a
// PreparedPush holding definitions only for the stacks this push defines.
import { endianness } from 'node:os';
import { gzipSync } from 'node:zlib';
import type { Profile } from 'pprof-format';
import {
  addressRuleOf,
  functionIdentity,
  Hasher,
  lineIdentity,
  locationIdentity,
  mappingIdentity,
  mixChecks,
  normalizeAddress,
  stackCacheCheck,
  stackIdentity,
  stringIdentity,
} from './identity.js';
import { ProtoWriter, PUSH_FIELD as F, PUSH_VERSION } from './push-format.js';
import type { LocationDef } from './push-identity-cache.js';

export interface PreparedPush {
  /** The pprof's string table; every string index below refers to it. */
  strings: string[];
  sampleTypes: [number, number][];
  periodType: [number, number] | undefined;
  period: number;
  timeNanos: bigint;
  durationNanos: number;
  defaultSampleType: number;
  /** One per distinct content id, in order of first use. */
  mappings: { id: number; buildId: number; filename: number; fileOffset: number; size: number }[];
  functions: { id: number; name: number; systemName: number; filename: number; startLine: number }[];
  locations: { id: number; mapping: number; addrHi: number; addrLo: number; folded: boolean; lines: number[] }[];
  /** `check`: the stack's cache check (identity.ts stackCacheCheck); `locations`: indices into locations, leaf first. */
  stacks: { id: number; check: number; locations: number[] }[];
  /** String labels as (key, value) string index pairs. */
  labelSets: number[][];
  /** Per sample: index into stacks (-1: the empty stack), into labelSets (-1: none), and nTypes values. */
  sampleStack: Int32Array;
  sampleLabelSet: Int32Array;
  sampleValues: Float64Array;
  nSamples: number;
}

/** A stack under its fleet-wide id and cache check, with its locations' definitions (leaf first). */
export interface LeanStack {
  id: number;
  check: number;
  locs: readonly LocationDef[];
}

/** A profile as the agent's builder gives it for lean pushes (CpuProfileBuilder.buildLean): strings by value, stacks by id. */
export interface LeanProfile {
  sampleTypes: [string, string][];
  periodType: [string, string];
  period: number;
  timeNanos: bigint;
  durationNanos: number;
  defaultSampleType: string;
  /** Distinct ids, in order of first use. */
  stacks: LeanStack[];
  /** String labels as flat (key, value) pairs. */
  labelSets: string[][];
  /** As in PreparedPush: per sample, index into stacks (-1: empty), into labelSets (-1: none), and two values. */
  sampleStack: Int32Array;
  sampleLabelSet: Int32Array;
  sampleValues: Float64Array;
  nSamples: number;
}

/**
 * A PreparedPush of a LeanProfile for one encodePush with the same `holds`
 * and `define`: every stack is listed with its id and check, but only those
 * the push defines get their locations, functions, mappings and strings
 * (encodePush reads no others), so a push of references costs O(stacks +
 * samples) with no hashing. encodePush gives the bytes it gives for
 * preparePush of the same profile's pprof (test/push-identity-cache.test.ts).
 */
export function prepareLeanPush(p: LeanProfile, holds: (id: number, check: number) => boolean, define?: ReadonlySet<number>): PreparedPush {
  const strings: string[] = [''];
  const stringIndex = new Map<string, number>([['', 0]]);
  const str = (v: string): number => {
    let i = stringIndex.get(v);
    if (i === undefined) {
      i = strings.push(v) - 1;
      stringIndex.set(v, i);
    }
    return i;
  };
  const mappings: PreparedPush['mappings'] = [];
  const functions: PreparedPush['functions'] = [];
  const locations: PreparedPush['locations'] = [];
  let mappingIndex: Map<number, number> | undefined;
  let functionIndex: Map<number, number> | undefined;
  let locationIndex: Map<number, number> | undefined;
  const stacks: PreparedPush['stacks'] = new Array<PreparedPush['stacks'][number]>(p.stacks.length);
  const none: number[] = [];
  for (let si = 0; si < p.stacks.length; si++) {
    const st = p.stacks[si]!;
    if (holds(st.id, st.check) && !define?.has(st.id)) {
      stacks[si] = { id: st.id, check: st.check, locations: none };
      continue;
    }
    // Defined: its locations (deduplicated by id, as preparePush does), their functions and mappings.
    mappingIndex ??= new Map();
    functionIndex ??= new Map();
    locationIndex ??= new Map();
    const locs = new Array<number>(st.locs.length);
    for (let j = 0; j < st.locs.length; j++) {
      const l = st.locs[j]!;
      let li = locationIndex.get(l.id);
      if (li === undefined) {
        let mi = -1;
        if (l.mapping !== undefined) {
          const m = l.mapping;
          mi = mappingIndex.get(m.id) ?? -1;
          if (mi < 0) {
            mi = mappings.push({ id: m.id, buildId: str(m.buildId), filename: str(m.filename), fileOffset: m.fileOffset, size: m.size }) - 1;
            mappingIndex.set(m.id, mi);
          }
        }
        const lines: number[] = [];
        if (l.fn !== undefined) {
          const f = l.fn;
          let fi = functionIndex.get(f.id);
          if (fi === undefined) {
            const name = str(f.name);
            fi = functions.push({ id: f.id, name, systemName: name, filename: str(f.filename), startLine: 0 }) - 1;
            functionIndex.set(f.id, fi);
          }
          lines.push(fi, 0);
        }
        li = locations.push({ id: l.id, mapping: mi, addrHi: l.addrHi, addrLo: l.addrLo, folded: false, lines }) - 1;
        locationIndex.set(l.id, li);
      }
      locs[j] = li;
    }
    stacks[si] = { id: st.id, check: st.check, locations: locs };
  }
  return {
    strings,
    sampleTypes: p.sampleTypes.map(([t, u]) => [str(t), str(u)]),
    periodType: [str(p.periodType[0]), str(p.periodType[1])],
    period: p.period,
    timeNanos: p.timeNanos,
    durationNanos: p.durationNanos,
    defaultSampleType: str(p.defaultSampleType),
    mappings,
    functions,
    locations,
    stacks,
    labelSets: p.labelSets.map((pairs) => pairs.map(str)),
    sampleStack: p.sampleStack,
    sampleLabelSet: p.sampleLabelSet,
    sampleValues: p.sampleValues,
    nSamples: p.nSamples,
  };
}

const num = (v: number | bigint): number => (typeof v === 'bigint' ? Number(v) : v);
const big = (v: number | bigint): bigint => (typeof v === 'bigint' ? v : BigInt(v));

/** Computes the content id of everything a pprof's samples use, by the server's rules (identity.ts). */
export function preparePush(p: Profile): PreparedPush {
  const strings = p.stringTable.strings;
  const h = new Hasher();
  const hs = new Hasher();
  const strId = new Float64Array(strings.length);
  const strChk = new Int32Array(strings.length);
  const strDone = new Uint8Array(strings.length);
  const str = (i: number): number => {
    if (!(i >= 0 && i < strings.length)) throw new Error(`string index ${i} out of range`);
    if (!strDone[i]) {
      const b = Buffer.from(strings[i]!, 'utf8');
      stringIdentity(hs, b, 0, b.length);
      strId[i] = hs.id();
      strChk[i] = hs.check();
      strDone[i] = 1;
    }
    return i;
  };
  const out: PreparedPush = {
    strings,
    sampleTypes: p.sampleType.map((t) => [num(t.type), num(t.unit)]),
    periodType: p.periodType ? [num(p.periodType.type), num(p.periodType.unit)] : undefined,
    period: num(p.period),
    timeNanos: big(p.timeNanos),
    durationNanos: num(p.durationNanos),
    defaultSampleType: num(p.defaultSampleType),
    mappings: [],
    functions: [],
    locations: [],
    stacks: [],
    labelSets: [],
    sampleStack: new Int32Array(0),
    sampleLabelSet: new Int32Array(0),
    sampleValues: new Float64Array(0),
    nSamples: 0,
  };

  // Per pprof mapping: its content id (deduplicated into out.mappings) and address rule.
  const mappingById = new Map<number, { gid: number; check: number; index: number; rule: number; start: number; limit: number; offset: number }>();
  const mappingIndexOfGid = new Map<number, number>();
  for (const m of p.mapping) {
    const filename = strings[num(m.filename)] ?? '';
    const byBuildId = (strings[num(m.buildId)] ?? '') !== '';
    const key = str(byBuildId ? num(m.buildId) : num(m.filename));
    mappingIdentity(h, byBuildId, strId[key]!, strChk[key]!);
    const start = big(m.memoryStart);
    const limit = big(m.memoryLimit);
    mappingById.set(num(m.id), {
      gid: h.id(),
      check: h.check(),
      index: -1,
      rule: addressRuleOf(filename, limit, big(m.fileOffset)),
      start: Number(start),
      limit: Number(limit),
      offset: num(m.fileOffset),
    });
  }
  const useMapping = (id: number, m: PprofMapping): number => {
    const e = mappingById.get(id)!;
    let idx = mappingIndexOfGid.get(e.gid);
    if (idx === undefined) {
      idx = out.mappings.length;
      mappingIndexOfGid.set(e.gid, idx);
      const start = big(m.memoryStart);
      const limit = big(m.memoryLimit);
      out.mappings.push({ id: e.gid, buildId: str(num(m.buildId)), filename: str(num(m.filename)), fileOffset: num(m.fileOffset), size: limit > start ? Number(limit - start) : 0 });
    }
    return idx;
  };
  const pprofMappings = new Map<number, PprofMapping>(p.mapping.map((m) => [num(m.id), m]));

  const functionById = new Map<number, PprofFunction>(p.function.map((f) => [num(f.id), f]));
  const fnIndexOfId = new Map<number, number>(); // pprof id -> index in out.functions
  const fnIndexOfGid = new Map<number, number>();
  const useFunction = (id: number): number => {
    let idx = fnIndexOfId.get(id);
    if (idx !== undefined) return idx;
    const f = functionById.get(id);
    if (!f) throw new Error(`a location references missing function ${id}`);
    const name = str(num(f.name));
    const sys = str(num(f.systemName));
    const file = str(num(f.filename));
    const sl = num(f.startLine);
    functionIdentity(h, strId[name]!, strChk[name]!, strId[sys]!, strChk[sys]!, strId[file]!, strChk[file]!, sl);
    const gid = h.id();
    idx = fnIndexOfGid.get(gid);
    if (idx === undefined) {
      idx = out.functions.length;
      fnIndexOfGid.set(gid, idx);
      out.functions.push({ id: gid, name, systemName: sys, filename: file, startLine: sl });
    }
    fnIndexOfId.set(id, idx);
    return idx;
  };

  const locationById = new Map<number, PprofLocation>(p.location.map((l) => [num(l.id), l]));
  const locIndexOfId = new Map<number, number>();
  const locIndexOfGid = new Map<number, number>();
  const locCheck: number[] = [];
  const useLocation = (id: number): number => {
    let idx = locIndexOfId.get(id);
    if (idx !== undefined) return idx;
    const l = locationById.get(id);
    if (!l) throw new Error(`a sample references missing location ${id}`);
    const mid = num(l.mappingId);
    const addr = big(l.address);
    let hi = Number(addr >> 32n) >>> 0;
    let lo = Number(addr & 0xffffffffn) >>> 0;
    let mapping = -1;
    let gm = 0;
    if (mid !== 0) {
      const e = mappingById.get(mid);
      if (!e) throw new Error(`location ${id} references missing mapping ${mid}`);
      const a = normalizeAddress(e.rule, hi, lo, e.start, e.limit, e.offset, l.line.length);
      hi = a.hi;
      lo = a.lo;
      gm = e.gid;
      mapping = -2; // resolved to an index below, once the location is known new
    }
    const lines: number[] = [];
    const fnGids: number[] = [];
    for (const ln of l.line) {
      const fi = useFunction(num(ln.functionId));
      lines.push(fi, num(ln.line));
      fnGids.push(out.functions[fi]!.id);
    }
    locationIdentity(h, gm, hi, lo, l.isFolded ? 1 : 0, l.line.length);
    for (let j = 0; j < fnGids.length; j++) lineIdentity(h, fnGids[j]!, lines[2 * j + 1]!);
    const gid = h.id();
    idx = locIndexOfGid.get(gid);
    if (idx === undefined) {
      idx = out.locations.length;
      locIndexOfGid.set(gid, idx);
      if (mapping === -2) mapping = useMapping(mid, pprofMappings.get(mid)!);
      out.locations.push({ id: gid, mapping, addrHi: hi, addrLo: lo, folded: l.isFolded, lines });
      locCheck.push(h.check());
    }
    locIndexOfId.set(id, idx);
    return idx;
  };

  // Samples: stacks by content, merged per (stack, string labels); numeric labels are not sent (push-format.ts).
  const stackIndexOfGid = new Map<number, number>();
  const labelSetIndex = new Map<string, number>();
  const merged = new Map<string, number>(); // "stack,labelSet" -> sample index
  const nTypes = out.sampleTypes.length;
  const sStack: number[] = [];
  const sLabels: number[] = [];
  const sValues: number[] = [];
  const locChecks = new Int32Array(256);
  let idxBuf = new Int32Array(256);
  for (const s of p.sample) {
    const n = s.locationId.length;
    let stack = -1;
    if (n > 0) {
      if (idxBuf.length < n) idxBuf = new Int32Array(n * 2);
      const locs: number[] = new Array<number>(n);
      for (let j = 0; j < n; j++) locs[j] = useLocation(num(s.locationId[j]!));
      stackIdentity(h, n);
      for (let j = 0; j < n; j++) h.num(out.locations[locs[j]!]!.id);
      const gid = h.id();
      const existing = stackIndexOfGid.get(gid);
      if (existing !== undefined) stack = existing;
      else {
        const checks = n <= locChecks.length ? locChecks : new Int32Array(n);
        for (let j = 0; j < n; j++) {
          checks[j] = locCheck[locs[j]!]!;
          idxBuf[j] = j;
        }
        stack = out.stacks.length;
        stackIndexOfGid.set(gid, stack);
        out.stacks.push({ id: gid, check: stackCacheCheck(h.check(), mixChecks(checks, idxBuf, 0, n)), locations: locs });
      }
    }
    const pairs: number[] = [];
    for (const l of s.label) {
      const v = num(l.str);
      if (v !== 0) pairs.push(str(num(l.key)), str(v));
    }
    let ls = -1;
    if (pairs.length > 0) {
      const key = pairs.join(',');
      const known = labelSetIndex.get(key);
      if (known !== undefined) ls = known;
      else {
        ls = out.labelSets.length;
        labelSetIndex.set(key, ls);
        out.labelSets.push(pairs);
      }
    }
    const mk = `${stack},${ls}`;
    let si = merged.get(mk);
    if (si === undefined) {
      si = sStack.length;
      merged.set(mk, si);
      sStack.push(stack);
      sLabels.push(ls);
      for (let t = 0; t < nTypes; t++) sValues.push(0);
    }
    if (s.value.length !== nTypes) throw new Error(`a sample has ${s.value.length} values for ${nTypes} sample types`);
    for (let t = 0; t < nTypes; t++) sValues[si * nTypes + t]! += num(s.value[t]!);
  }
  out.sampleStack = Int32Array.from(sStack);
  out.sampleLabelSet = Int32Array.from(sLabels);
  out.sampleValues = Float64Array.from(sValues);
  out.nSamples = sStack.length;
  return out;
}

type PprofMapping = Profile['mapping'][number];
type PprofFunction = Profile['function'][number];
type PprofLocation = Profile['location'][number];

export interface EncodedPush {
  /** The Push message, uncompressed. */
  body: Buffer;
  /** Stacks defined in full (content id, cache check): the server holds them once it acknowledged the push. */
  defined: { id: number; check: number }[];
  /** Samples whose stack went by reference only. */
  referenced: number;
  /** Samples in the push. */
  samples: number;
}

/**
 * Encodes one push. Definitions of mappings, functions and locations go
 * without their ids (the server computes them, and a stack's id, which is
 * sent and checked, covers them all); stacks carry theirs. `holds(id, check)` says whether the server is known to
 * hold a stack (it acknowledged a push defining or referencing it); those go
 * by id, the others are defined with their locations, functions, mappings and
 * strings. `define` forces definitions (the missing stacks of a 409).
 */
export function encodePush(p: PreparedPush, holds: (id: number, check: number) => boolean, define?: ReadonlySet<number>): EncodedPush {
  const w = new ProtoWriter(64 * 1024 + p.nSamples * 24);
  const strMap = new Int32Array(p.strings.length).fill(-1);
  const usedStrings: number[] = [];
  const s = (i: number): number => {
    let k = strMap[i]!;
    if (k < 0) {
      k = usedStrings.length;
      strMap[i] = k;
      usedStrings.push(i);
    }
    return k;
  };
  s(0); // string_table[0] = ""
  const mapOut = new Int32Array(p.mappings.length).fill(-1);
  const fnOut = new Int32Array(p.functions.length).fill(-1);
  const locOut = new Int32Array(p.locations.length).fill(-1);
  const stackOut = new Uint8Array(p.stacks.length);
  const mappings: number[] = [];
  const functions: number[] = [];
  const locations: number[] = [];
  const stacks: number[] = [];
  const defined: EncodedPush['defined'] = [];
  let referenced = 0;
  for (let i = 0; i < p.nSamples; i++) {
    const si = p.sampleStack[i]!;
    if (si < 0 || stackOut[si] === 1) continue;
    const st = p.stacks[si]!;
    if (holds(st.id, st.check) && !define?.has(st.id)) continue;
    stackOut[si] = 1;
    stacks.push(si);
    defined.push({ id: st.id, check: st.check });
    for (const li of st.locations) {
      if (locOut[li]! >= 0) continue;
      locOut[li] = locations.length;
      locations.push(li);
      const loc = p.locations[li]!;
      if (loc.mapping >= 0 && mapOut[loc.mapping]! < 0) {
        mapOut[loc.mapping] = mappings.length;
        mappings.push(loc.mapping);
      }
      for (let j = 0; j < loc.lines.length; j += 2) {
        const fi = loc.lines[j]!;
        if (fnOut[fi]! < 0) {
          fnOut[fi] = functions.length;
          functions.push(fi);
        }
      }
    }
  }
  // Counted per sample, as the server sees them.
  for (let i = 0; i < p.nSamples; i++) {
    const si = p.sampleStack[i]!;
    if (si >= 0 && stackOut[si] === 0) referenced++;
  }

  w.varintField(F.version, PUSH_VERSION);
  for (const [t, u] of p.sampleTypes) {
    w.message(F.sampleType, () => {
      w.varintField(1, s(t));
      w.varintField(2, s(u));
    });
  }
  if (p.periodType) {
    const [t, u] = p.periodType;
    w.message(F.periodType, () => {
      w.varintField(1, s(t));
      w.varintField(2, s(u));
    });
  }
  w.int64Field(F.period, p.period);
  w.key(F.timeNanos, 0);
  w.int64Big(p.timeNanos);
  w.int64Field(F.durationNanos, p.durationNanos);
  w.varintField(F.defaultSampleType, s(p.defaultSampleType));
  for (const mi of mappings) {
    const m = p.mappings[mi]!;
    w.message(F.mapping, () => {
      w.varintField(2, s(m.buildId));
      w.varintField(3, s(m.filename));
      w.varintField(4, m.fileOffset);
      w.varintField(5, m.size);
    });
  }
  for (const fi of functions) {
    const f = p.functions[fi]!;
    w.message(F.function, () => {
      w.varintField(2, s(f.name));
      w.varintField(3, s(f.systemName));
      w.varintField(4, s(f.filename));
      w.int64Field(5, f.startLine);
    });
  }
  for (const li of locations) {
    const l = p.locations[li]!;
    w.message(F.location, () => {
      if (l.mapping >= 0) w.varintField(2, mapOut[l.mapping]! + 1);
      w.key(3, 0);
      w.varint64(l.addrHi, l.addrLo);
      if (l.folded) w.varintField(4, 1);
      if (l.lines.length > 0) {
        w.message(5, () => {
          for (let j = 0; j < l.lines.length; j += 2) {
            w.varint(fnOut[l.lines[j]!]! + 1);
            w.int64(l.lines[j + 1]!);
          }
        });
      }
    });
  }
  for (const si of stacks) {
    const st = p.stacks[si]!;
    w.message(F.stack, () => {
      w.key(1, 1);
      w.fixed64(st.id);
      w.key(2, 5);
      w.fixed32(st.check);
      w.message(3, () => {
        for (const li of st.locations) w.varint(locOut[li]! + 1);
      });
    });
  }
  for (const pairs of p.labelSets) {
    w.message(F.labelSet, () => {
      w.message(1, () => {
        for (const x of pairs) w.varint(s(x));
      });
    });
  }
  if (LITTLE_ENDIAN) {
    // Per sample a fixed64 id and a fixed32 check, filled into typed arrays and
    // copied in once: the agent encodes a push every few seconds, in code V8
    // has not optimized, where a Buffer method call per value cost more than
    // the rest of a push of references.
    const ids = new Uint32Array(2 * p.nSamples);
    const checks = new Int32Array(p.nSamples);
    for (let i = 0; i < p.nSamples; i++) {
      const si = p.sampleStack[i]!;
      if (si < 0) continue; // the empty stack: id 0, check 0
      const st = p.stacks[si]!;
      ids[2 * i] = st.id >>> 0;
      ids[2 * i + 1] = Math.floor(st.id / 4294967296) >>> 0;
      checks[i] = st.check;
    }
    w.message(F.sampleStack, () => appendBytes(w, new Uint8Array(ids.buffer)));
    w.message(F.sampleStackCheck, () => appendBytes(w, new Uint8Array(checks.buffer)));
  } else {
    w.message(F.sampleStack, () => {
      for (let i = 0; i < p.nSamples; i++) {
        const si = p.sampleStack[i]!;
        w.fixed64(si < 0 ? 0 : p.stacks[si]!.id);
      }
    });
    w.message(F.sampleStackCheck, () => {
      for (let i = 0; i < p.nSamples; i++) {
        const si = p.sampleStack[i]!;
        w.fixed32(si < 0 ? 0 : p.stacks[si]!.check);
      }
    });
  }
  w.message(F.sampleLabelSet, () => {
    for (let i = 0; i < p.nSamples; i++) w.varint(p.sampleLabelSet[i]! + 1);
  });
  w.message(F.sampleValue, () => {
    for (let k = 0; k < p.sampleValues.length; k++) w.int64(p.sampleValues[k]!);
  });
  // The string table last: only now is every string the push uses known.
  for (const i of usedStrings) w.string(F.stringTable, p.strings[i]!);
  return { body: w.bytes(), defined, referenced, samples: p.nSamples };
}

/** Typed arrays are in the platform's byte order; protobuf's fixed-width fields are little-endian. */
const LITTLE_ENDIAN = endianness() === 'LE';

/** Appends raw bytes to a ProtoWriter (its buffer grown as its own ensure() does). */
function appendBytes(w: ProtoWriter, bytes: Uint8Array): void {
  if (w.pos + bytes.length > w.buf.length) {
    const b = Buffer.allocUnsafe(Math.max(w.buf.length * 2, w.pos + bytes.length));
    w.buf.copy(b, 0, 0, w.pos);
    w.buf = b;
  }
  w.buf.set(bytes, w.pos);
  w.pos += bytes.length;
}

/**
 * Lean pushes that define stacks go gzipped from this size (definitions are
 * names and paths, which compress several times); pushes of references only
 * do not: they are mostly random 8-byte ids, which gzip barely shrinks and
 * the server would have to inflate.
 */
export const PUSH_GZIP_MIN_BYTES = 2048;

/**
 * The request body of an encoded push, as the agent sends it (the server
 * sniffs gzip). `level`: zlib's compression level (default 6); the agent uses
 * 1, which costs about half the CPU for a body a few percent larger.
 */
export function pushRequestBody(push: EncodedPush, level?: number): Buffer {
  return push.defined.length > 0 && push.body.length >= PUSH_GZIP_MIN_BYTES ? gzipSync(push.body, level === undefined ? {} : { level }) : push.body;
}
