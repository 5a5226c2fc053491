// Ingest: raw request body -> validated pprof -> global symbol ids -> one
// packed profile row. Data only flows forward: nothing here reads queries.
//
// Choices:
// - Sample labels (pid, tid, thread name, ...) are dropped: samples with the
//   same stack are summed. Per-process breakdowns belong in series labels
//   (e.g. `comm`), which keeps the stored unit one (stack, values) pair.
// - The profile time is time_nanos when set, else the time of arrival.
// - Everything a sample references is checked before anything is interned,
//   so a rejected profile leaves no partial state behind.
import { gunzip } from 'node:zlib';
import { promisify } from 'node:util';
import { decodeProfile, stringAt, type RawProfile } from './pprof/decode.js';
import { encodeSamples } from './store/sample-codec.js';
import type { NewProfile, SqliteStore } from './store/sqlite-store.js';
import { errBadGzip, errBadLabel, errBadProfile, errEmptyBody, errTooLarge } from './errors.js';
import { checkProfileTime, type ProfileTimeLimits } from './ingest-checks.js';

const gunzipAsync = promisify(gunzip);

export const DEFAULT_MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const MAX_LABELS = 32;
const MAX_LABEL_VALUE_LENGTH = 1024;

/** Gunzips when the body starts with the gzip magic; the output is capped (zip bomb). */
export async function maybeGunzip(body: Buffer, maxBytes: number): Promise<Buffer> {
  if (body.length === 0) throw errEmptyBody('request body is empty: expected a pprof profile');
  if (body.length < 2 || body[0] !== 0x1f || body[1] !== 0x8b) {
    if (body.length > maxBytes) throw errTooLarge(`profile of ${body.length} bytes exceeds the limit of ${maxBytes} bytes`);
    return body;
  }
  try {
    // zlib inflates in chunks and aborts as soon as the output passes the cap.
    // Large chunks: fewer round trips between the zlib thread and the event loop.
    return await gunzipAsync(body, { maxOutputLength: maxBytes, chunkSize: 256 * 1024 });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) {
      throw errTooLarge(`decompressed profile exceeds the limit of ${maxBytes} bytes`);
    }
    throw errBadGzip(`body has gzip magic but does not decompress: ${err.message}`);
  }
}

export function parseSeriesLabels(query: Record<string, unknown>): Record<string, string> {
  const labels: Record<string, string> = {};
  const names = Object.keys(query);
  if (names.length > MAX_LABELS) throw errBadLabel(`too many labels: ${names.length} (max ${MAX_LABELS})`);
  for (const name of names) {
    const v = query[name];
    if (!LABEL_NAME.test(name)) throw errBadLabel(`invalid label name "${name}": must match ${LABEL_NAME.source}`);
    if (typeof v !== 'string') throw errBadLabel(`label "${name}" is given more than once`);
    if (v.length > MAX_LABEL_VALUE_LENGTH) throw errBadLabel(`value of label "${name}" is longer than ${MAX_LABEL_VALUE_LENGTH} characters`);
    labels[name] = v;
  }
  return labels;
}

/** Local id -> row index of a decoded table; dense array when ids are compact. */
interface IdIndex {
  get(id: number): number; // -1 when absent
  /** Set when ids are compact: dense[id] is row + 1 (0 when absent), for inlined hot loops. */
  dense?: Int32Array;
}

function indexById(ids: Float64Array, n: number, what: string): IdIndex {
  let max = 0;
  for (let k = 0; k < n; k++) if (ids[k]! > max) max = ids[k]!;
  // Up to 1 MiB of index for sparse ids (e.g. 4k locations with ids up to 20k): a
  // typed-array probe is several times cheaper than Map.get in the per-frame loop.
  if (max <= 4 * n + (1 << 18)) {
    // dense[id] = row + 1, 0 when absent (a fresh Int32Array is already zeroed).
    const dense = new Int32Array(max + 1);
    for (let k = 0; k < n; k++) {
      const id = ids[k]!;
      if (id === 0) throw errBadProfile(`${what} with id 0 (ids must be non-zero)`);
      if (dense[id] !== 0) throw errBadProfile(`duplicate ${what} id ${id}`);
      dense[id] = k + 1;
    }
    return { get: (id) => (id <= max ? dense[id]! - 1 : -1), dense }; // ids are non-negative integers (varints)
  }
  const m = new Map<number, number>();
  for (let k = 0; k < n; k++) {
    const id = ids[k]!;
    if (id === 0) throw errBadProfile(`${what} with id 0 (ids must be non-zero)`);
    if (m.has(id)) throw errBadProfile(`duplicate ${what} id ${id}`);
    m.set(id, k);
  }
  return { get: (id) => m.get(id) ?? -1 };
}

/** Checks every cross reference; throws FP_ERR_BAD_PROFILE naming the first dangling one. */
function validate(p: RawProfile) {
  if (p.nStrings === 0) {
    // An absent string table is read as [""].
    p.nStrings = 1;
    p.strStart = new Int32Array(1);
    p.strEnd = new Int32Array(1);
  }
  if (p.strEnd[0] !== p.strStart[0]) throw errBadProfile('string_table[0] must be the empty string');
  const nStr = p.nStrings;
  const str = (i: number, where: string) => {
    if (!Number.isInteger(i) || i < 0 || i >= nStr) throw errBadProfile(`${where}: string index ${i} out of range (string table has ${nStr} entries)`);
  };
  if (p.sampleTypes.length === 0 && p.nSamples > 0) throw errBadProfile('profile has samples but no sample_type');
  p.sampleTypes.forEach((t, i) => {
    str(t.type, `sample_type[${i}].type`);
    str(t.unit, `sample_type[${i}].unit`);
  });
  if (p.periodType) {
    str(p.periodType.type, 'period_type.type');
    str(p.periodType.unit, 'period_type.unit');
  }
  str(p.defaultSampleType, 'default_sample_type');
  const mappings = indexById(
    Float64Array.from(p.mappings, (m) => m.id),
    p.mappings.length,
    'mapping',
  );
  const functions = indexById(p.fnId, p.nFunctions, 'function');
  const locations = indexById(p.locId, p.nLocations, 'location');
  for (const m of p.mappings) {
    str(m.filename, `mapping ${m.id} filename`);
    str(m.buildId, `mapping ${m.id} build_id`);
  }
  for (let k = 0; k < p.nFunctions; k++) {
    const id = p.fnId[k]!;
    str(p.fnName[k]!, `function ${id} name`);
    str(p.fnSystemName[k]!, `function ${id} system_name`);
    str(p.fnFilename[k]!, `function ${id} filename`);
  }
  const fnDense = functions.dense;
  for (let k = 0; k < p.nLocations; k++) {
    const m = p.locMapping[k]!;
    if (m !== 0 && mappings.get(m) < 0) throw errBadProfile(`location ${p.locId[k]} references missing mapping ${m}`);
    for (let j = p.locLineStart[k]!; j < p.locLineStart[k + 1]!; j++) {
      const f = p.lineFn[j]!;
      if ((fnDense && f < fnDense.length ? fnDense[f]! - 1 : functions.get(f)) < 0) throw errBadProfile(`location ${p.locId[k]} references missing function ${f}`);
    }
  }
  const nTypes = p.sampleTypes.length;
  for (let i = 0; i < p.nSamples; i++) {
    const nv = p.sampleValueStart[i + 1]! - p.sampleValueStart[i]!;
    if (nv !== nTypes) throw errBadProfile(`sample ${i} has ${nv} values but the profile has ${nTypes} sample types`);
  }
  // Sample location ids -> location row index, checked once here.
  const locs = p.sampleLocs;
  const locRow = new Int32Array(locs.length);
  const dense = locations.dense;
  const max = dense ? dense.length - 1 : -1;
  for (let j = 0; j < locs.length; j++) {
    const id = locs[j]!;
    const k = dense && id <= max ? dense[id]! - 1 : locations.get(id);
    if (k < 0) throw errBadProfile(`a sample references missing location ${locs[j]}`);
    locRow[j] = k;
  }
  return { mappings, functions, locRow };
}

// Hash mixing for the location content cache (two independent 32-bit lanes).
function mix(h: number, v: number): number {
  h = Math.imul(h ^ v, 0x9e3779b1);
  return h ^ (h >>> 15);
}
function mix2(h: number, v: number): number {
  h = Math.imul(h + v, 0x85ebca77);
  return h ^ (h >>> 13);
}

/** Two independent 32-bit hashes of every string of a profile, four bytes per step. */
function hashStrings(p: RawProfile): { h1: Int32Array; h2: Int32Array } {
  const n = p.nStrings;
  const h1 = new Int32Array(n);
  const h2 = new Int32Array(n);
  const buf = p.buf;
  for (let i = 0; i < n; i++) {
    const s = p.strStart[i]!;
    const e = p.strEnd[i]!;
    let a = 0x811c9dc5 ^ (e - s);
    let b = 0x7f4a7c15 + (e - s);
    let k = s;
    for (; k + 4 <= e; k += 4) {
      const w = buf[k]! | (buf[k + 1]! << 8) | (buf[k + 2]! << 16) | (buf[k + 3]! << 24);
      let x = Math.imul(w, 0xcc9e2d51);
      x = Math.imul((x << 15) | (x >>> 17), 0x1b873593);
      a ^= x;
      a = Math.imul((a << 13) | (a >>> 19), 5) + 0xe6546b64;
      let y = Math.imul(w, 0x85ebca77);
      y = Math.imul((y << 13) | (y >>> 19), 0xc2b2ae3d);
      b ^= y;
      b = Math.imul((b << 17) | (b >>> 15), 9) + 0x165667b1;
    }
    for (; k < e; k++) {
      a = Math.imul(a ^ buf[k]!, 0x01000193);
      b = Math.imul(b + buf[k]!, 0x9e3779b1) ^ (b >>> 15);
    }
    a = Math.imul(a ^ (a >>> 16), 0x85ebca6b);
    a = Math.imul(a ^ (a >>> 13), 0xc2b2ae35);
    b = Math.imul(b ^ (b >>> 15), 0x2c1b3c6d);
    b = Math.imul(b ^ (b >>> 12), 0x297a2d39);
    h1[i] = a ^ (a >>> 16);
    h2[i] = b ^ (b >>> 15);
  }
  return { h1, h2 };
}

/** Reused by every ingest (synchronous part): stack id -> slot + 1, all zero between calls. */
let slotScratch = new Int32Array(1 << 16);

export interface IngestResult {
  id: number;
  seriesId: number;
  timeMs: number;
  samples: number;
  stacks: number;
}

/** Turns one decoded, uncompressed pprof into a stored profile. */
export async function ingestProfile(store: SqliteStore, raw: Uint8Array, labels: Record<string, string>, nowMs: number, timeLimits?: ProfileTimeLimits): Promise<IngestResult> {
  // Everything up to store.append is synchronous: the decoder's reused
  // columns cannot be overwritten by another request meanwhile.
  const p = decodeProfile(raw);
  checkProfileTime(p.timeNanos, nowMs, timeLimits);
  const { mappings, functions, locRow } = validate(p);
  const sym = store.symbols;

  // Local string / mapping / function / location ids -> global, interned lazily
  // so that strings, mappings and functions no location uses are not stored.
  const strMemo = new Int32Array(p.nStrings).fill(-1);
  const gstr = (i: number) => {
    let g = strMemo[i]!;
    if (g < 0) {
      g = sym.stringFromBytes(p.buf, p.strStart[i]!, p.strEnd[i]!);
      strMemo[i] = g;
    }
    return g;
  };
  const mapMemo = new Int32Array(p.mappings.length).fill(-1);
  const mapDense = mappings.dense;
  let lastMapLocal = 0;
  let lastMapGlobal = 0;
  const gmap = (id: number) => {
    if (id === 0) return 0;
    if (id === lastMapLocal) return lastMapGlobal;
    const k = mapDense ? mapDense[id]! - 1 : mappings.get(id);
    let g = mapMemo[k]!;
    if (g < 0) {
      const m = p.mappings[k]!;
      g = sym.mapping({
        memoryStart: m.memoryStart,
        memoryLimit: m.memoryLimit,
        fileOffset: m.fileOffset,
        filename: gstr(m.filename),
        buildId: gstr(m.buildId),
        flags: (m.hasFunctions ? 1 : 0) | (m.hasFilenames ? 2 : 0) | (m.hasLineNumbers ? 4 : 0) | (m.hasInlineFrames ? 8 : 0),
      });
      mapMemo[k] = g;
    }
    lastMapLocal = id;
    lastMapGlobal = g;
    return g;
  };
  const fnMemo = new Int32Array(p.nFunctions).fill(-1);
  const fnDense = functions.dense;
  const gfn = (id: number) => {
    const k = fnDense ? fnDense[id]! - 1 : functions.get(id);
    let g = fnMemo[k]!;
    if (g < 0) {
      g = sym.funcOf(gstr(p.fnName[k]!), gstr(p.fnSystemName[k]!), gstr(p.fnFilename[k]!), p.fnStartLine[k]!);
      fnMemo[k] = g;
    }
    return g;
  };
  // Location row -> global id, resolved once per location (not per frame).
  // Fast path: the same locations arrive with every push of a series, so a
  // location is first looked up by a hash of its content (see
  // SymbolDb.locationByContent), which needs no string, function or location
  // interning; only a miss resolves it fully.
  const { h1: strH1, h2: strH2 } = hashStrings(p);
  const nFn = p.nFunctions;
  const fnH1 = new Int32Array(nFn);
  const fnH2 = new Int32Array(nFn);
  for (let k = 0; k < nFn; k++) {
    const sl = p.fnStartLine[k]!;
    let a = mix(mix(mix(mix(0x3c6ef372, strH1[p.fnName[k]!]!), strH1[p.fnSystemName[k]!]!), strH1[p.fnFilename[k]!]!), sl | 0);
    let b = mix2(mix2(mix2(mix2(0x1b873593, strH2[p.fnName[k]!]!), strH2[p.fnSystemName[k]!]!), strH2[p.fnFilename[k]!]!), (sl / 4294967296) | 0);
    a = mix(a, (sl / 4294967296) | 0);
    b = mix2(b, sl | 0);
    fnH1[k] = a;
    fnH2[k] = b;
  }
  const byContent = sym.locationByContent;
  const locGlobal = new Int32Array(p.nLocations);
  const lines: number[] = [];
  for (let k = 0; k < p.nLocations; k++) {
    const gm = gmap(p.locMapping[k]!);
    const hi = p.locAddrHi[k]!;
    const lo = p.locAddrLo[k]!;
    const folded = p.locFolded[k] !== 0;
    const j0 = p.locLineStart[k]!;
    const j1 = p.locLineStart[k + 1]!;
    let a = mix(mix(mix(0x6a09e667, gm), hi), lo + (folded ? 0x55555555 : 0));
    let b = mix2(mix2(mix2(0x3c6ef372 + j1 - j0, lo), gm), hi ^ (folded ? 1 : 0));
    for (let j = j0; j < j1; j++) {
      const f = p.lineFn[j]!;
      const row = fnDense ? fnDense[f]! - 1 : functions.get(f);
      const ln = p.lineNo[j]!;
      a = mix(mix(mix(a, fnH1[row]!), ln | 0), (ln / 4294967296) | 0);
      b = mix2(mix2(mix2(b, fnH2[row]!), (ln / 4294967296) | 0), ln | 0);
    }
    const k1 = (a ^ (a >>> 16)) >>> 1;
    const k2 = (b ^ (b >>> 13)) & 0x7fffffff;
    const cached = byContent.get(k1, k2);
    if (cached !== -1 && sym.locationIs(cached, gm, hi, lo, folded, j1 - j0)) {
      locGlobal[k] = cached;
      continue;
    }
    lines.length = 0;
    for (let j = j0; j < j1; j++) lines.push(gfn(p.lineFn[j]!), p.lineNo[j]!);
    const g = sym.locationOf(gm, hi, lo, folded, lines);
    byContent.set(k1, k2, g);
    locGlobal[k] = g;
  }

  // Samples -> stack ids (walking root to leaf), summing duplicates.
  const nTypes = p.sampleTypes.length;
  const nSamples = p.nSamples;
  const globalLocs = locRow; // rewritten in place: row index -> global location id
  for (let j = 0; j < globalLocs.length; j++) globalLocs[j] = locGlobal[globalLocs[j]!]!;
  const sampleStart = p.sampleStart;
  const sampleValueStart = p.sampleValueStart;
  const sampleValues = p.sampleValues;
  // stack id -> slot + 1 in a reused array indexed by stack id (reset below).
  let slotOf = slotScratch;
  const stackIds = new Float64Array(nSamples);
  const acc = new Float64Array(nSamples * nTypes);
  let nStacks = 0;
  for (let i = 0; i < nSamples; i++) {
    const stack = sym.stackOf(globalLocs, sampleStart[i]!, sampleStart[i + 1]!);
    if (stack >= slotOf.length) {
      const grown = new Int32Array(Math.max(slotOf.length * 2, stack + 1));
      grown.set(slotOf);
      slotOf = slotScratch = grown;
    }
    let slot = slotOf[stack]! - 1;
    if (slot < 0) {
      slot = nStacks++;
      slotOf[stack] = slot + 1;
      stackIds[slot] = stack;
    }
    const vs = sampleValueStart[i]!;
    for (let t = 0; t < nTypes; t++) acc[slot * nTypes + t]! += sampleValues[vs + t]!;
  }
  // Sort by stack id for delta encoding.
  const sortedIds = stackIds.subarray(0, nStacks).slice().sort();
  const sortedVals = new Float64Array(nStacks * nTypes);
  const totals = new Array<number>(nTypes).fill(0);
  for (let k = 0; k < nStacks; k++) {
    const id = sortedIds[k]!;
    const slot = slotOf[id]! - 1;
    slotOf[id] = 0;
    for (let t = 0; t < nTypes; t++) {
      const v = acc[slot * nTypes + t]!;
      sortedVals[k * nTypes + t] = v;
      totals[t]! += v;
    }
  }
  const { blob, scales } = encodeSamples(sortedIds, sortedVals, nTypes);

  const vt = (t: { type: number; unit: number }) => ({ type: stringAt(p, t.type), unit: stringAt(p, t.unit) });
  const profileTypeId = store.profileTypeId({
    sampleTypes: p.sampleTypes.map(vt),
    periodType: p.periodType ? vt(p.periodType) : undefined,
    defaultSampleType: stringAt(p, p.defaultSampleType),
  });
  const seriesId = store.seriesId(labels);
  const timeMs = p.timeNanos > 0n ? Number(p.timeNanos / 1_000_000n) : nowMs;
  const row: NewProfile = {
    seriesId,
    timeMs,
    durationNs: p.durationNanos,
    period: p.period,
    profileTypeId,
    scales,
    totals,
    nStacks,
    samples: blob,
  };
  const id = await store.append(row);
  return { id, seriesId, timeMs, samples: nSamples, stacks: nStacks };
}
