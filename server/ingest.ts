// Ingest of a pprof: raw request body -> validated pprof -> fleet-wide
// content ids -> one packed profile row per series. Data only flows forward:
// nothing here reads queries. (A lean push, which references stacks the store
// holds by content id, goes through ingest-push.ts; both end in
// ingest-series.ts.)
//
// Identity of code (the same code in 1,000 processes is one set of rows) is
// defined in src/profile/identity.ts, which the agent's lean-push encoder
// uses too: mapping = build ID else path, location = (binary, file-relative
// address, folded flag, lines), resolved kernel/JIT frames without address,
// function = (name, system name, file, start line), stack = its locations.
// Ids are content hashes; the store gives stacks dense ids too
// (store/stack-ids.ts).
//
// Labels: string sample labels become series labels (as Pyroscope does), so a
// whole-host profile keeps `comm`/`process` per sample. Labels named in
// dropSampleLabels (default pid,tid: one series per process or thread would
// grow the series table with every process start) and numeric labels (e.g.
// the agent's pid/tid) are dropped and their samples summed. Request labels
// win over sample labels of the same name (the operator's label is the
// deployment's truth); label names are sanitized to [a-zA-Z_][a-zA-Z0-9_]*.
//
// The profile time is time_nanos when set, else the time of arrival.
// Everything a sample references is checked before anything is written, so a
// rejected profile leaves nothing behind.
import { gunzip, gunzipSync } from 'node:zlib';
import { promisify } from 'node:util';
import { decodeProfile, stringAt, type RawProfile } from './pprof/decode.js';
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
} from '../src/profile/identity.js';
import { IdMap } from './store/id-map.js';
import type { StackAccumulator } from './store/accumulator.js';
import { markEpoch, type ProfileStore, type SymbolRows } from './store/store.js';
import { errBadGzip, errBadLabel, errBadProfile, errEmptyBody, errTooLarge } from './errors.js';
import { checkProfileTime, type ProfileTimeLimits } from './ingest-checks.js';
import { DEFAULT_INGEST_OPTIONS, finishIngest, LABEL_NAME, profileHeader, MAX_LABELS, MAX_LABEL_VALUE_LENGTH, SeriesSplit, type IngestOptions, type IngestResult } from './ingest-series.js';

export { DEFAULT_DROP_SAMPLE_LABELS, DEFAULT_INGEST_OPTIONS, type IngestOptions, type IngestResult } from './ingest-series.js';

const gunzipAsync = promisify(gunzip);

export const DEFAULT_MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024;
/** Gzipped bodies up to this size are inflated synchronously (see maybeGunzip). */
const SYNC_GUNZIP_MAX_BYTES = 1024 * 1024;

/** Gunzips when the body starts with the gzip magic; the output is capped (zip bomb). */
export async function maybeGunzip(body: Buffer, maxBytes: number): Promise<Buffer> {
  if (body.length === 0) throw errEmptyBody('request body is empty: expected a pprof profile');
  if (body.length < 2 || body[0] !== 0x1f || body[1] !== 0x8b) {
    if (body.length > maxBytes) throw errTooLarge(`profile of ${body.length} bytes exceeds the limit of ${maxBytes} bytes`);
    return body;
  }
  try {
    // zlib inflates in chunks and aborts as soon as the output passes the cap.
    // A chunk of about 4x the body (pprof compresses ~3.5x) usually holds
    // the whole output: no concatenation, one round trip. Bodies up to
    // SYNC_GUNZIP_MAX_BYTES are inflated on the event loop (~2 ms for a
    // 150 KB fleet profile, as long as decoding it, which is synchronous too):
    // measured, the hand-off to zlib's thread costs ~0.3 ms of CPU per profile.
    const opts = { maxOutputLength: maxBytes, chunkSize: Math.min(4 << 20, Math.max(64 << 10, Math.ceil((body.length * 4) / 65536) * 65536)) };
    return body.length <= SYNC_GUNZIP_MAX_BYTES ? gunzipSync(body, opts) : await gunzipAsync(body, opts);
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

/** `slot`: a reusable column for the dense index (columns below), for the big tables. */
function indexById(ids: Float64Array, n: number, what: string, slot?: number): IdIndex {
  let max = 0;
  for (let k = 0; k < n; k++) if (ids[k]! > max) max = ids[k]!;
  // Up to 1 MiB of index for sparse ids (e.g. 4k locations with ids up to 20k): a
  // typed-array probe is several times cheaper than Map.get in the per-frame loop.
  if (max <= 4 * n + (1 << 18)) {
    // dense[id] = row + 1, 0 when absent.
    const dense = slot === undefined ? new Int32Array(max + 1) : column(slot, max + 1, I32, true);
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

// Per-request columns (per frame, string, function, location: ~1 MB of
// typed arrays per fleet profile) are reused across requests instead of
// allocated per request, which kept the garbage collector busy: ingest uses
// them only in its synchronous part, before it awaits the store, so no two
// requests share them at once (a request that throws leaves them to the
// next). Like the decoder's columns, they keep the size of the largest
// profile seen (bounded by the decompressed size cap). Each slot is one
// column; `zeroed` when the caller reads entries it has not written.
type Column = Float64Array | Int32Array | Uint32Array | Uint8Array;
const columns: Column[] = [];
export function column<T extends Column>(slot: number, n: number, make: (n: number) => T, zeroed = false): T {
  let c = columns[slot] as T | undefined;
  if (c === undefined || c.length < n) {
    c = make(Math.max(n, 1024, (c?.length ?? 0) * 2));
    columns[slot] = c;
    return c.subarray(0, n) as T;
  }
  const view = c.subarray(0, n) as T;
  if (zeroed) view.fill(0);
  return view;
}
export const F64 = (n: number) => new Float64Array(n);
export const I32 = (n: number) => new Int32Array(n);
export const U32 = (n: number) => new Uint32Array(n);
export const U8 = (n: number) => new Uint8Array(n);
// Column slots (ingest-push.ts uses slots from PUSH_COLUMN_BASE on).
const C_LOC_ROW = 0;
const C_FN_INDEX = 1;
const C_LOC_INDEX = 2;
const C_STR_ID = 3;
const C_STR_CHK = 4;
const C_STR_DONE = 5;
const C_FN_GID = 6;
const C_FN_CHK = 7;
const C_LOC_GID = 8;
const C_LOC_CHK = 9;
const C_LOC_HI = 10;
const C_LOC_LO = 11;
const C_LOC_MK = 12;
const C_LOC_SEEN = 13;
const C_SAMPLE_STACK = 14;
const C_SAMPLE_CHECK = 15;
const C_SAMPLE_HELD = 16;
export const PUSH_COLUMN_BASE = 17;

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
  // `where` is a function: the message is built only for a bad index (a template per field of 7,000 functions costs more than the check).
  const str = (i: number, where: () => string) => {
    if (!(i >= 0 && i < nStr && Number.isInteger(i))) throw errBadProfile(`${where()}: string index ${i} out of range (string table has ${nStr} entries)`);
  };
  if (p.sampleTypes.length === 0 && p.nSamples > 0) throw errBadProfile('profile has samples but no sample_type');
  p.sampleTypes.forEach((t, i) => {
    str(t.type, () => `sample_type[${i}].type`);
    str(t.unit, () => `sample_type[${i}].unit`);
  });
  if (p.periodType) {
    str(p.periodType.type, () => 'period_type.type');
    str(p.periodType.unit, () => 'period_type.unit');
  }
  str(p.defaultSampleType, () => 'default_sample_type');
  const mappings = indexById(
    Float64Array.from(p.mappings, (m) => m.id),
    p.mappings.length,
    'mapping',
  );
  const functions = indexById(p.fnId, p.nFunctions, 'function', C_FN_INDEX);
  const locations = indexById(p.locId, p.nLocations, 'location', C_LOC_INDEX);
  for (const m of p.mappings) {
    str(m.filename, () => `mapping ${m.id} filename`);
    str(m.buildId, () => `mapping ${m.id} build_id`);
  }
  for (let k = 0; k < p.nFunctions; k++) {
    const id = p.fnId[k]!;
    // String indices are varints (non-negative integers): in range is one comparison each.
    if (p.fnName[k]! < nStr && p.fnSystemName[k]! < nStr && p.fnFilename[k]! < nStr) continue;
    str(p.fnName[k]!, () => `function ${id} name`);
    str(p.fnSystemName[k]!, () => `function ${id} system_name`);
    str(p.fnFilename[k]!, () => `function ${id} filename`);
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
  for (let j = 0; j < p.labelKey.length; j++) {
    if (p.labelKey[j]! < nStr && p.labelStr[j]! < nStr) continue;
    str(p.labelKey[j]!, () => 'sample label key');
    str(p.labelStr[j]!, () => 'sample label value');
  }
  const nTypes = p.sampleTypes.length;
  for (let i = 0; i < p.nSamples; i++) {
    const nv = p.sampleValueStart[i + 1]! - p.sampleValueStart[i]!;
    if (nv !== nTypes) throw errBadProfile(`sample ${i} has ${nv} values but the profile has ${nTypes} sample types`);
  }
  // Sample location ids -> location row index, checked once here.
  const locs = p.sampleLocs;
  const locRow = column(C_LOC_ROW, locs.length, I32);
  const dense = locations.dense;
  if (dense) {
    const max = dense.length - 1;
    for (let j = 0; j < locs.length; j++) {
      const id = locs[j]!;
      const k = id <= max ? dense[id]! - 1 : -1;
      if (k < 0) throw errBadProfile(`a sample references missing location ${id}`);
      locRow[j] = k;
    }
  } else {
    for (let j = 0; j < locs.length; j++) {
      const k = locations.get(locs[j]!);
      if (k < 0) throw errBadProfile(`a sample references missing location ${locs[j]}`);
      locRow[j] = k;
    }
  }
  return { mappings, functions, locRow };
}

/** Turns one decoded, uncompressed pprof into stored profiles, one per series its samples belong to. */
export async function ingestProfile(
  store: ProfileStore,
  raw: Uint8Array,
  labels: Record<string, string>,
  nowMs: number,
  opts: IngestOptions = DEFAULT_INGEST_OPTIONS,
  timeLimits?: ProfileTimeLimits,
): Promise<IngestResult> {
  // Everything up to store.write is synchronous: the decoder's reused
  // columns cannot be overwritten by another request meanwhile.
  const p = decodeProfile(raw);
  checkProfileTime(p.timeNanos, nowMs, timeLimits);
  const { mappings, functions, locRow } = validate(p);
  const timeMs = p.timeNanos > 0n ? Number(p.timeNanos / 1_000_000n) : nowMs;
  const mark = Math.max(markEpoch(timeMs), markEpoch(nowMs));
  const marks = store.marks;
  const h = new Hasher();
  const rows: SymbolRows = { mappings: [], functions: [], locations: [], stacks: [] };
  const checks = new IdMap(256);
  /** Whether row `id` must be written: not known stored with this mark (and this content), nor written by this request already. */
  const needs = (id: number, check: number): boolean => {
    if (marks.holds(id, mark, check) || checks.has(id)) return false;
    checks.set(id, check);
    return true;
  };

  // Strings: one id + check per string, computed when first used.
  const strId = column(C_STR_ID, p.nStrings, F64);
  const strChk = column(C_STR_CHK, p.nStrings, I32);
  const strDone = column(C_STR_DONE, p.nStrings, U8, true);
  const hs = new Hasher(); // not `h`: strings are hashed in the middle of other rows' hashes
  const feedStr = (i: number) => {
    if (!strDone[i]) {
      stringIdentity(hs, p.buf, p.strStart[i]!, p.strEnd[i]!);
      strId[i] = hs.id();
      strChk[i] = hs.check();
      strDone[i] = 1;
    }
  };

  // Mappings: identity + how to turn runtime addresses into file offsets.
  const nMap = p.mappings.length;
  const mapGid = new Float64Array(nMap);
  const mapChk = new Int32Array(nMap);
  const mapStart = new Float64Array(nMap);
  const mapLimit = new Float64Array(nMap);
  const mapOffset = new Float64Array(nMap);
  /** 1 native (addresses normalized), 2 kernel/JIT (resolved frames drop the address), 0 other. */
  const mapKind = new Uint8Array(nMap);
  const mapRow: (SymbolRows['mappings'][number] | undefined)[] = new Array(nMap);
  for (let k = 0; k < nMap; k++) {
    const m = p.mappings[k]!;
    const filename = stringAt(p, m.filename);
    const buildId = stringAt(p, m.buildId);
    const byBuildId = buildId !== '';
    feedStr(byBuildId ? m.buildId : m.filename);
    const si = byBuildId ? m.buildId : m.filename;
    mappingIdentity(h, byBuildId, strId[si]!, strChk[si]!);
    mapGid[k] = h.id();
    mapChk[k] = h.check();
    mapKind[k] = addressRuleOf(filename, m.memoryLimit, m.fileOffset);
    mapStart[k] = Number(m.memoryStart);
    mapLimit[k] = Number(m.memoryLimit);
    mapOffset[k] = Number(m.fileOffset);
    mapRow[k] = { id: mapGid[k]!, buildId, filename, fileOffset: m.fileOffset, size: m.memoryLimit > m.memoryStart ? m.memoryLimit - m.memoryStart : 0n };
  }

  // Functions.
  const fnGid = column(C_FN_GID, p.nFunctions, F64);
  const fnChk = column(C_FN_CHK, p.nFunctions, I32);
  for (let k = 0; k < p.nFunctions; k++) {
    const sl = p.fnStartLine[k]!;
    const name = p.fnName[k]!;
    const sys = p.fnSystemName[k]!;
    const file = p.fnFilename[k]!;
    feedStr(name);
    feedStr(sys);
    feedStr(file);
    functionIdentity(h, strId[name]!, strChk[name]!, strId[sys]!, strChk[sys]!, strId[file]!, strChk[file]!, sl);
    fnGid[k] = h.id();
    fnChk[k] = h.check();
  }
  const fnRowOf = (fid: number) => (functions.dense && fid < functions.dense.length ? functions.dense[fid]! - 1 : functions.get(fid));

  // Locations: every id is needed (stack ids hash them), but a location row
  // is looked up in the marks cache and written only when a stack using it
  // is not known stored (emitLocation, from the sample loop): a stored stack
  // row is marked no later than its locations (store.ts), so its locations,
  // functions and mappings are stored with at least that mark too. In steady
  // state that is one cache probe per stack instead of one per location.
  const nLoc = p.nLocations;
  const locGid = column(C_LOC_GID, nLoc, F64);
  const locChk = column(C_LOC_CHK, nLoc, I32);
  const locHi = column(C_LOC_HI, nLoc, U32);
  const locLo = column(C_LOC_LO, nLoc, U32);
  const locMk = column(C_LOC_MK, nLoc, I32);
  /** 1 once emitLocation looked at location k. */
  const locSeen = column(C_LOC_SEEN, nLoc, U8, true);
  for (let k = 0; k < nLoc; k++) {
    const localMap = p.locMapping[k]!;
    const mk = localMap === 0 ? -1 : mappings.dense ? mappings.dense[localMap]! - 1 : mappings.get(localMap);
    let hi = p.locAddrHi[k]!;
    let lo = p.locAddrLo[k]!;
    const j0 = p.locLineStart[k]!;
    const j1 = p.locLineStart[k + 1]!;
    if (mk >= 0) {
      const a = normalizeAddress(mapKind[mk]!, hi, lo, mapStart[mk]!, mapLimit[mk]!, mapOffset[mk]!, j1 - j0);
      hi = a.hi;
      lo = a.lo;
    }
    const gm = mk >= 0 ? mapGid[mk]! : 0;
    const folded = p.locFolded[k]!;
    locationIdentity(h, gm, hi, lo, folded, j1 - j0);
    for (let j = j0; j < j1; j++) lineIdentity(h, fnGid[fnRowOf(p.lineFn[j]!)]!, p.lineNo[j]!);
    locGid[k] = h.id();
    locChk[k] = h.check();
    locHi[k] = hi;
    locLo[k] = lo;
    locMk[k] = mk;
  }
  /** Adds location k's row (and its functions' and mapping's) to the batch unless known stored. */
  const emitLocation = (k: number): void => {
    locSeen[k] = 1;
    const id = locGid[k]!;
    if (!needs(id, locChk[k]!)) return;
    const j0 = p.locLineStart[k]!;
    const j1 = p.locLineStart[k + 1]!;
    const lines: number[] = [];
    for (let j = j0; j < j1; j++) {
      const fr = fnRowOf(p.lineFn[j]!);
      lines.push(fnGid[fr]!, p.lineNo[j]!);
      if (needs(fnGid[fr]!, fnChk[fr]!)) {
        rows.functions.push({
          id: fnGid[fr]!,
          name: stringAt(p, p.fnName[fr]!),
          systemName: stringAt(p, p.fnSystemName[fr]!),
          filename: stringAt(p, p.fnFilename[fr]!),
          startLine: p.fnStartLine[fr]!,
        });
      }
    }
    const mk = locMk[k]!;
    const gm = mk >= 0 ? mapGid[mk]! : 0;
    if (mk >= 0 && needs(gm, mapChk[mk]!)) rows.mappings.push(mapRow[mk]!);
    rows.locations.push({ id, mappingId: gm, address: (BigInt(locHi[k]!) << 32n) | BigInt(locLo[k]!), isFolded: p.locFolded[k]! !== 0, lines });
  };

  // Series of each sample: request labels plus its kept string labels.
  const nTypes = p.sampleTypes.length;
  const split = new SeriesSplit(labels, opts, nTypes, Math.min(p.nSamples, 1 << 16));
  split.droppedLabels = p.numericLabels;
  /** Sample label indices ("key=value," of string indices) -> its series' accumulator; few distinct per profile. */
  const groupOf = new Map<string, { acc: StackAccumulator; dropped: number }>();
  const accFor = (i: number): StackAccumulator => {
    const l0 = p.sampleLabelStart[i]!;
    const l1 = p.sampleLabelStart[i + 1]!;
    let key = '';
    for (let j = l0; j < l1; j++) key += `${p.labelKey[j]}=${p.labelStr[j]},`;
    let g = groupOf.get(key);
    if (!g) {
      const keys: string[] = [];
      const values: string[] = [];
      for (let j = l0; j < l1; j++) {
        keys.push(stringAt(p, p.labelKey[j]!));
        values.push(stringAt(p, p.labelStr[j]!));
      }
      g = split.forLabels(keys, values);
      groupOf.set(key, g);
    }
    split.droppedLabels += g.dropped;
    return g.acc;
  };

  // Samples -> stack ids (hash of the location ids), summed per series. In
  // passes: the ids and checks, then the marks-cache probes alone (a loop
  // with nothing else keeps many of its cache misses in flight at once, see
  // ingest-push.ts), then the rows and the sums.
  const sampleStart = p.sampleStart;
  const sampleValueStart = p.sampleValueStart;
  const sampleValues = p.sampleValues;
  const n = p.nSamples;
  const sampleStack = column(C_SAMPLE_STACK, n, F64);
  const sampleCheck = column(C_SAMPLE_CHECK, n, I32);
  for (let i = 0; i < n; i++) {
    const from = sampleStart[i]!;
    const to = sampleStart[i + 1]!;
    if (to === from) {
      sampleStack[i] = 0;
      continue;
    }
    stackIdentity(h, to - from);
    h.numsAt(locGid, locRow, from, to);
    sampleStack[i] = h.id();
    // The cache's check of a stack also covers its locations' checks: a
    // stack found stored vouches for its locations (emitLocation), so a
    // location id collision must still be noticed here.
    sampleCheck[i] = stackCacheCheck(h.check(), mixChecks(locChk, locRow, from, to));
  }
  // Each probe also gives the stored row's dense id (stack-ids.ts).
  const held = column(C_SAMPLE_HELD, n, F64);
  marks.thirdIfHoldsEach(sampleStack, sampleCheck, n, mark, held);
  for (let i = 0; i < n; i++) {
    const stack = sampleStack[i]!;
    const hit = held[i]!;
    if (stack !== 0 && hit < 0 && !checks.has(stack)) {
      checks.set(stack, sampleCheck[i]!);
      const from = sampleStart[i]!;
      const to = sampleStart[i + 1]!;
      const locations: number[] = [];
      for (let j = from; j < to; j++) {
        const k = locRow[j]!;
        if (locSeen[k] === 0) emitLocation(k);
        locations.push(locGid[k]!);
      }
      rows.stacks.push({ id: stack, locations });
    }
    const acc = accFor(i);
    const slot = acc.slotOf(stack);
    if (hit > 0) acc.denseIds![slot] = hit;
    const vs = sampleValueStart[i]!;
    for (let t = 0; t < nTypes; t++) acc.values[slot * nTypes + t]! += sampleValues[vs + t]!;
  }
  const header = profileHeader(p, timeMs);
  return finishIngest(store, header, split, mark, rows, checks);
}
