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
import { decodeProfile, type RawProfile } from './pprof/decode.js';
import { encodeSamples } from './store/sample-codec.js';
import type { NewProfile, SqliteStore } from './store/sqlite-store.js';
import { errBadGzip, errBadLabel, errBadProfile, errEmptyBody, errTooLarge } from './errors.js';

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
    return await gunzipAsync(body, { maxOutputLength: maxBytes });
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

function indexById<T extends { id: number }>(items: T[], what: string): Map<number, T> {
  const m = new Map<number, T>();
  for (const it of items) {
    if (it.id === 0) throw errBadProfile(`${what} with id 0 (ids must be non-zero)`);
    if (m.has(it.id)) throw errBadProfile(`duplicate ${what} id ${it.id}`);
    m.set(it.id, it);
  }
  return m;
}

/** Checks every cross reference; throws FP_ERR_BAD_PROFILE naming the first dangling one. */
function validate(p: RawProfile) {
  if (p.strings.length === 0) p.strings.push('');
  if (p.strings[0] !== '') throw errBadProfile('string_table[0] must be the empty string');
  const nStr = p.strings.length;
  const str = (i: number, where: string) => {
    if (!Number.isInteger(i) || i < 0 || i >= nStr) throw errBadProfile(`${where}: string index ${i} out of range (string table has ${nStr} entries)`);
  };
  if (p.sampleTypes.length === 0 && p.sampleStart.length > 1) throw errBadProfile('profile has samples but no sample_type');
  p.sampleTypes.forEach((t, i) => {
    str(t.type, `sample_type[${i}].type`);
    str(t.unit, `sample_type[${i}].unit`);
  });
  if (p.periodType) {
    str(p.periodType.type, 'period_type.type');
    str(p.periodType.unit, 'period_type.unit');
  }
  str(p.defaultSampleType, 'default_sample_type');
  const mappings = indexById(p.mappings, 'mapping');
  const functions = indexById(p.functions, 'function');
  const locations = indexById(p.locations, 'location');
  for (const m of p.mappings) {
    str(m.filename, `mapping ${m.id} filename`);
    str(m.buildId, `mapping ${m.id} build_id`);
  }
  for (const f of p.functions) {
    str(f.name, `function ${f.id} name`);
    str(f.systemName, `function ${f.id} system_name`);
    str(f.filename, `function ${f.id} filename`);
  }
  for (const l of p.locations) {
    if (l.mappingId !== 0 && !mappings.has(l.mappingId)) throw errBadProfile(`location ${l.id} references missing mapping ${l.mappingId}`);
    for (const line of l.lines) {
      if (!functions.has(line.functionId)) throw errBadProfile(`location ${l.id} references missing function ${line.functionId}`);
    }
  }
  const nTypes = p.sampleTypes.length;
  const nSamples = p.sampleStart.length - 1;
  for (let i = 0; i < nSamples; i++) {
    const nv = p.sampleValueStart[i + 1]! - p.sampleValueStart[i]!;
    if (nv !== nTypes) throw errBadProfile(`sample ${i} has ${nv} values but the profile has ${nTypes} sample types`);
  }
  for (const id of p.sampleLocs) {
    if (!locations.has(id)) throw errBadProfile(`a sample references missing location ${id}`);
  }
  return { mappings, functions, locations };
}

export interface IngestResult {
  id: number;
  seriesId: number;
  timeMs: number;
  samples: number;
  stacks: number;
}

/** Turns one decoded, uncompressed pprof into a stored profile. */
export async function ingestProfile(store: SqliteStore, raw: Uint8Array, labels: Record<string, string>, nowMs: number): Promise<IngestResult> {
  const p = decodeProfile(raw);
  const { mappings, functions } = validate(p);
  const sym = store.symbols;

  // Local string / mapping / function / location ids -> global, interned lazily
  // so that symbols no sample uses are not stored.
  const strMemo = new Map<number, number>();
  const gstr = (i: number) => {
    let g = strMemo.get(i);
    if (g === undefined) {
      g = sym.string(p.strings[i]!);
      strMemo.set(i, g);
    }
    return g;
  };
  const mapMemo = new Map<number, number>();
  const gmap = (id: number) => {
    if (id === 0) return 0;
    let g = mapMemo.get(id);
    if (g === undefined) {
      const m = mappings.get(id)!;
      g = sym.mapping({
        memoryStart: m.memoryStart,
        memoryLimit: m.memoryLimit,
        fileOffset: m.fileOffset,
        filename: gstr(m.filename),
        buildId: gstr(m.buildId),
        flags: (m.hasFunctions ? 1 : 0) | (m.hasFilenames ? 2 : 0) | (m.hasLineNumbers ? 4 : 0) | (m.hasInlineFrames ? 8 : 0),
      });
      mapMemo.set(id, g);
    }
    return g;
  };
  const fnMemo = new Map<number, number>();
  const gfn = (id: number) => {
    let g = fnMemo.get(id);
    if (g === undefined) {
      const f = functions.get(id)!;
      g = sym.func({ name: gstr(f.name), systemName: gstr(f.systemName), filename: gstr(f.filename), startLine: f.startLine });
      fnMemo.set(id, g);
    }
    return g;
  };
  // Local location id -> global, resolved once per location (not per frame).
  const maxLocalLoc = p.locations.reduce((m, l) => Math.max(m, l.id), 0);
  const dense = maxLocalLoc <= 4 * p.locations.length + 1024;
  const locDense = dense ? new Int32Array(maxLocalLoc + 1) : undefined;
  const locSparse = dense ? undefined : new Map<number, number>();
  for (const l of p.locations) {
    const lines: number[] = [];
    for (const line of l.lines) lines.push(gfn(line.functionId), line.line);
    const g = sym.location({ mappingId: gmap(l.mappingId), address: l.address, isFolded: l.isFolded, lines });
    if (locDense) locDense[l.id] = g;
    else locSparse!.set(l.id, g);
  }
  const gloc = locDense ? (id: number) => locDense[id]! : (id: number) => locSparse!.get(id)!;

  // Samples -> stack ids (walking root to leaf), summing duplicates.
  const nTypes = p.sampleTypes.length;
  const nSamples = p.sampleStart.length - 1;
  const slotOfStack = new Map<number, number>();
  const stackIds: number[] = [];
  const acc: number[] = [];
  const locs = p.sampleLocs;
  const globalLocs = new Int32Array(locs.length);
  for (let j = 0; j < locs.length; j++) globalLocs[j] = gloc(locs[j]!);
  for (let i = 0; i < nSamples; i++) {
    const stack = sym.stackOf(globalLocs, p.sampleStart[i]!, p.sampleStart[i + 1]!);
    let slot = slotOfStack.get(stack);
    if (slot === undefined) {
      slot = stackIds.length;
      slotOfStack.set(stack, slot);
      stackIds.push(stack);
      for (let t = 0; t < nTypes; t++) acc.push(0);
    }
    const vs = p.sampleValueStart[i]!;
    for (let t = 0; t < nTypes; t++) acc[slot * nTypes + t]! += p.sampleValues[vs + t]!;
  }
  // Sort by stack id for delta encoding.
  const order = stackIds.map((_, i) => i).sort((a, b) => stackIds[a]! - stackIds[b]!);
  const sortedIds = new Float64Array(order.length);
  const sortedVals = new Float64Array(order.length * nTypes);
  const totals = new Array<number>(nTypes).fill(0);
  order.forEach((slot, k) => {
    sortedIds[k] = stackIds[slot]!;
    for (let t = 0; t < nTypes; t++) {
      const v = acc[slot * nTypes + t]!;
      sortedVals[k * nTypes + t] = v;
      totals[t]! += v;
    }
  });
  const { blob, scales } = encodeSamples(sortedIds, sortedVals, nTypes);

  const vt = (t: { type: number; unit: number }) => ({ type: p.strings[t.type]!, unit: p.strings[t.unit]! });
  const profileTypeId = store.profileTypeId({
    sampleTypes: p.sampleTypes.map(vt),
    periodType: p.periodType ? vt(p.periodType) : undefined,
    defaultSampleType: p.strings[p.defaultSampleType]!,
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
    nStacks: stackIds.length,
    samples: blob,
  };
  const id = await store.append(row);
  return { id, seriesId, timeMs, samples: nSamples, stacks: stackIds.length };
}
