// Ingest of a lean push (src/profile/push-format.ts): samples reference
// stacks by fleet-wide content id; stacks the sender has not had
// acknowledged come with their definitions. The server trusts nothing it is
// given: every definition's id is recomputed from its content with the same
// identity module the agent used (src/profile/identity.ts), and a mismatch
// is a 400. A referenced stack the marks cache vouches for costs one probe;
// any other is resolved by the store in the ingest's transaction (its rows
// found and their marks raised, or the push refused with 409
// FP_ERR_UNKNOWN_STACKS listing them; store/stack-ids.ts resolveStackRefs).
// From there on it is the pprof path's tail (ingest-series.ts): the same
// series, the same rows.
import { decodePush, type RawPush } from './pprof/decode-push.js';
import { stringAt } from './pprof/decode.js';
import {
  functionIdentity,
  Hasher,
  lineIdentity,
  locationIdentity,
  mappingIdentity,
  mixChecks,
  stackCacheCheck,
  stackIdentity,
  stringIdentity,
} from '../src/profile/identity.js';
import { frameKindOfMapping } from '../src/profile/frame-kind.js';
import { PUSH_VERSION } from '../src/profile/push-format.js';
import { IdMap } from './store/id-map.js';
import type { StackAccumulator } from './store/accumulator.js';
import { markEpoch, type ProfileStore, type SymbolRows } from './store/store.js';
import { errBadProfile } from './errors.js';
import { checkProfileTime, type ProfileTimeLimits } from './ingest-checks.js';
import { column, F64, I32, PUSH_COLUMN_BASE, U8 } from './ingest.js';
import { DEFAULT_INGEST_OPTIONS, finishIngest, profileHeader, SeriesSplit, type IngestOptions, type IngestResult } from './ingest-series.js';

const C_STR_ID = PUSH_COLUMN_BASE;
const C_STR_CHK = PUSH_COLUMN_BASE + 1;
const C_STR_DONE = PUSH_COLUMN_BASE + 2;
const C_FN_CHK = PUSH_COLUMN_BASE + 3;
const C_LOC_CHK = PUSH_COLUMN_BASE + 4;
const C_LOC_SEEN = PUSH_COLUMN_BASE + 5;
const C_STACK_ROW = PUSH_COLUMN_BASE + 6;
const C_STACK_SEEN = PUSH_COLUMN_BASE + 7;
const C_FN_GID = PUSH_COLUMN_BASE + 8;
const C_LOC_GID = PUSH_COLUMN_BASE + 9;
const C_STACK_DENSE = PUSH_COLUMN_BASE + 10;
const C_SAMPLE_HELD = PUSH_COLUMN_BASE + 11;

function checkStrings(q: RawPush): (i: number, where: () => string) => void {
  if (q.nStrings === 0 || q.strEnd[0] !== q.strStart[0]) throw errBadProfile('string_table[0] must be the empty string');
  const n = q.nStrings;
  return (i, where) => {
    if (!(i >= 0 && i < n)) throw errBadProfile(`${where()}: string index ${i} out of range (string table has ${n} entries)`);
  };
}

/** Turns one uncompressed lean push into stored profiles, one per series its samples belong to. */
export async function ingestPush(
  store: ProfileStore,
  raw: Uint8Array,
  labels: Record<string, string>,
  nowMs: number,
  opts: IngestOptions = DEFAULT_INGEST_OPTIONS,
  timeLimits?: ProfileTimeLimits,
): Promise<IngestResult> {
  // Synchronous up to store.write: the decoder's and these reused columns are not shared meanwhile.
  const q = decodePush(raw);
  if (q.version !== PUSH_VERSION) throw errBadProfile(`push version ${q.version} is not supported (this server reads version ${PUSH_VERSION})`);
  checkProfileTime(q.timeNanos, nowMs, timeLimits);
  const str = checkStrings(q);
  if (q.sampleTypes.length === 0 && q.nSamples > 0) throw errBadProfile('push has samples but no sample_type');
  q.sampleTypes.forEach((t, i) => {
    str(t.type, () => `sample_type[${i}].type`);
    str(t.unit, () => `sample_type[${i}].unit`);
  });
  if (q.periodType) {
    str(q.periodType.type, () => 'period_type.type');
    str(q.periodType.unit, () => 'period_type.unit');
  }
  str(q.defaultSampleType, () => 'default_sample_type');
  const timeMs = q.timeNanos > 0n ? Number(q.timeNanos / 1_000_000n) : nowMs;
  const mark = Math.max(markEpoch(timeMs), markEpoch(nowMs));
  const marks = store.marks;
  const h = new Hasher();
  const rows: SymbolRows = { mappings: [], functions: [], locations: [], stacks: [] };
  const checks = new IdMap(256);
  const needs = (id: number, check: number): boolean => {
    if (marks.holds(id, mark, check) || checks.has(id)) return false;
    checks.set(id, check);
    return true;
  };

  const strId = column(C_STR_ID, q.nStrings, F64);
  const strChk = column(C_STR_CHK, q.nStrings, I32);
  const strDone = column(C_STR_DONE, q.nStrings, U8, true);
  const hs = new Hasher();
  const feedStr = (i: number) => {
    if (!strDone[i]) {
      stringIdentity(hs, q.buf, q.strStart[i]!, q.strEnd[i]!);
      strId[i] = hs.id();
      strChk[i] = hs.check();
      strDone[i] = 1;
    }
  };
  const mismatch = (what: string, given: number, computed: number) =>
    errBadProfile(`${what}: content id ${given} does not match its content (${computed}); the sender's identity rules differ from the server's`);

  // Definitions, each verified against its content.
  const nMap = q.mappings.length;
  const mapGid = new Float64Array(nMap);
  const mapChk = new Int32Array(nMap);
  const mapNoAddress = new Uint8Array(nMap); // kernel / JIT: a resolved frame keeps no address
  for (let k = 0; k < nMap; k++) {
    const m = q.mappings[k]!;
    str(m.filename, () => `mapping ${k} filename`);
    str(m.buildId, () => `mapping ${k} build_id`);
    const byBuildId = q.strEnd[m.buildId]! > q.strStart[m.buildId]!;
    const si = byBuildId ? m.buildId : m.filename;
    feedStr(si);
    mappingIdentity(h, byBuildId, strId[si]!, strChk[si]!);
    // An id is optional on mappings, functions and locations (0: not sent); the stack's id covers them.
    if (m.id !== 0 && h.id() !== m.id) throw mismatch(`mapping ${k}`, m.id, h.id());
    mapGid[k] = h.id();
    mapChk[k] = h.check();
    const kind = frameKindOfMapping(stringAt(q, m.filename));
    mapNoAddress[k] = kind === 'kernel' || kind === 'jit' ? 1 : 0;
  }
  const fnGid = column(C_FN_GID, q.nFunctions, F64);
  const fnChk = column(C_FN_CHK, q.nFunctions, I32);
  for (let k = 0; k < q.nFunctions; k++) {
    const name = q.fnName[k]!;
    const sys = q.fnSystemName[k]!;
    const file = q.fnFilename[k]!;
    str(name, () => `function ${k} name`);
    str(sys, () => `function ${k} system_name`);
    str(file, () => `function ${k} filename`);
    feedStr(name);
    feedStr(sys);
    feedStr(file);
    functionIdentity(h, strId[name]!, strChk[name]!, strId[sys]!, strChk[sys]!, strId[file]!, strChk[file]!, q.fnStartLine[k]!);
    if (q.fnId[k] !== 0 && h.id() !== q.fnId[k]) throw mismatch(`function ${k}`, q.fnId[k]!, h.id());
    fnGid[k] = h.id();
    fnChk[k] = h.check();
  }
  const nLoc = q.nLocations;
  const locGid = column(C_LOC_GID, nLoc, F64);
  const locChk = column(C_LOC_CHK, nLoc, I32);
  const locSeen = column(C_LOC_SEEN, nLoc, U8, true);
  for (let k = 0; k < nLoc; k++) {
    const mi = q.locMapping[k]!;
    if (mi > nMap) throw errBadProfile(`location ${k} references mapping ${mi} of ${nMap}`);
    const j0 = q.locLineStart[k]!;
    const j1 = q.locLineStart[k + 1]!;
    if (mi > 0 && mapNoAddress[mi - 1] === 1 && j1 > j0 && (q.locAddrHi[k] !== 0 || q.locAddrLo[k] !== 0)) {
      throw errBadProfile(`location ${k}: a resolved kernel or JIT frame has no address in a push (it has ${q.locAddrHi[k]! * 4294967296 + q.locAddrLo[k]!})`);
    }
    locationIdentity(h, mi > 0 ? mapGid[mi - 1]! : 0, q.locAddrHi[k]!, q.locAddrLo[k]!, q.locFolded[k]!, j1 - j0);
    for (let j = j0; j < j1; j++) {
      const fi = q.lineFn[j]!;
      if (!(fi >= 1 && fi <= q.nFunctions)) throw errBadProfile(`location ${k} references function ${fi} of ${q.nFunctions}`);
      lineIdentity(h, fnGid[fi - 1]!, q.lineNo[j]!);
    }
    if (q.locId[k] !== 0 && h.id() !== q.locId[k]) throw mismatch(`location ${k}`, q.locId[k]!, h.id());
    locGid[k] = h.id();
    locChk[k] = h.check();
  }
  const stackRow = column(C_STACK_ROW, q.stackLocs.length, I32);
  const stackSeen = column(C_STACK_SEEN, q.nStacks, U8, true);
  /** Stack content id -> its definition's index + 1. */
  const defined = new IdMap(Math.max(16, q.nStacks));
  for (let k = 0; k < q.nStacks; k++) {
    const from = q.stackLocStart[k]!;
    const to = q.stackLocStart[k + 1]!;
    if (to === from) throw errBadProfile(`stack ${k} has no locations (the empty stack is referenced as 0)`);
    for (let j = from; j < to; j++) {
      const li = q.stackLocs[j]!;
      if (!(li >= 1 && li <= nLoc)) throw errBadProfile(`stack ${k} references location ${li} of ${nLoc}`);
      stackRow[j] = li - 1;
    }
    stackIdentity(h, to - from);
    h.numsAt(locGid, stackRow, from, to);
    const id = h.id();
    if (id !== q.stackId[k]) throw mismatch(`stack ${k}`, q.stackId[k]!, id);
    const check = stackCacheCheck(h.check(), mixChecks(locChk, stackRow, from, to));
    if (check !== q.stackCheck[k]) throw errBadProfile(`stack ${k}: check ${q.stackCheck[k]} does not match its content (${check})`);
    if (!defined.has(id)) defined.set(id, k + 1);
  }

  const emitLocation = (k: number): void => {
    locSeen[k] = 1;
    const id = locGid[k]!;
    if (!needs(id, locChk[k]!)) return;
    const lines: number[] = [];
    for (let j = q.locLineStart[k]!; j < q.locLineStart[k + 1]!; j++) {
      const fr = q.lineFn[j]! - 1;
      const fid = fnGid[fr]!;
      lines.push(fid, q.lineNo[j]!);
      if (needs(fid, fnChk[fr]!)) {
        rows.functions.push({
          id: fid,
          name: stringAt(q, q.fnName[fr]!),
          systemName: stringAt(q, q.fnSystemName[fr]!),
          filename: stringAt(q, q.fnFilename[fr]!),
          startLine: q.fnStartLine[fr]!,
        });
      }
    }
    const mi = q.locMapping[k]! - 1;
    const gm = mi >= 0 ? mapGid[mi]! : 0;
    if (mi >= 0 && needs(gm, mapChk[mi]!)) {
      const m = q.mappings[mi]!;
      rows.mappings.push({ id: gm, buildId: stringAt(q, m.buildId), filename: stringAt(q, m.filename), fileOffset: m.fileOffset, size: m.size });
    }
    rows.locations.push({ id, mappingId: gm, address: (BigInt(q.locAddrHi[k]!) << 32n) | BigInt(q.locAddrLo[k]!), isFolded: q.locFolded[k]! !== 0, lines });
  };

  // Series per label set, computed once per set.
  const nTypes = q.sampleTypes.length;
  const split = new SeriesSplit(labels, opts, nTypes, Math.min(q.nSamples, 1 << 16));
  const setAcc: ({ acc: StackAccumulator; dropped: number } | undefined)[] = new Array(q.nLabelSets + 1);
  const accOf = (ls: number): { acc: StackAccumulator; dropped: number } => {
    let g = setAcc[ls];
    if (g === undefined) {
      const keys: string[] = [];
      const values: string[] = [];
      if (ls > 0) {
        for (let j = q.labelSetStart[ls - 1]!; j < q.labelSetStart[ls]!; j += 2) {
          const key = q.labelPairs[j]!;
          const value = q.labelPairs[j + 1]!;
          str(key, () => `label set ${ls - 1} key`);
          str(value, () => `label set ${ls - 1} value`);
          // An empty value is no label (as in pprof, where a label without a string value is not a string label).
          if (value === 0) continue;
          keys.push(stringAt(q, key));
          values.push(stringAt(q, value));
        }
      }
      g = split.forLabels(keys, values);
      setAcc[ls] = g;
    }
    return g;
  };

  // One marks-cache probe per sample with a stack: it says whether the row is
  // stored with a mark >= this profile's and gives its dense id
  // (stack-ids.ts), which the commit then uses as it is.
  const stackDense = column(C_STACK_DENSE, q.nStacks, F64);
  // The probes first, in a loop of their own: the table is megabytes and each
  // probe a likely cache miss, and with nothing else in the loop the CPU keeps
  // many of them in flight at once (in-process, 94 ns per sample against 152
  // with the probe inside the loop below).
  const held = column(C_SAMPLE_HELD, q.nSamples, F64);
  marks.thirdIfHoldsEach(q.sampleStack, q.sampleCheck, q.nSamples, mark, held);
  const refs: number[] = [];
  sumSamples(q, nTypes, held, defined, accOf, split, {
    firstUse: (k, i) => {
      const id = q.stackId[k]!;
      const chk = q.sampleCheck[i]!;
      if (q.stackCheck[k] !== chk) throw errBadProfile(`sample ${i}: stack ${id} has check ${chk}, its definition ${q.stackCheck[k]}`);
      stackSeen[k] = 1;
      const h = held[i]!;
      stackDense[k] = h > 0 ? h : 0;
      if (h < 0 && !checks.has(id)) {
        checks.set(id, chk);
        const from = q.stackLocStart[k]!;
        const to = q.stackLocStart[k + 1]!;
        const locations: number[] = [];
        for (let j = from; j < to; j++) {
          const l = stackRow[j]!;
          if (locSeen[l] === 0) emitLocation(l);
          locations.push(locGid[l]!);
        }
        rows.stacks.push({ id, locations });
      }
    },
    checkDefined: (k, i) => {
      if (q.stackCheck[k] !== q.sampleCheck[i]) throw errBadProfile(`sample ${i}: stack ${q.stackId[k]} has check ${q.sampleCheck[i]}, its definition ${q.stackCheck[k]}`);
    },
    stackSeen,
    stackDense,
    unheld: (i) => {
      // Not vouched for by the cache: the store finds it (and raises its marks) or answers 409.
      const id = q.sampleStack[i]!;
      if (!checks.has(id)) {
        checks.set(id, q.sampleCheck[i]!);
        refs.push(id);
      }
    },
  });

  const header = profileHeader(q, timeMs);
  return finishIngest(store, header, split, mark, rows, checks, refs);
}

/** The rarer cases of sumSamples, kept in ingestPush's closures (they allocate rows; the loop itself does not). */
interface SampleCases {
  /** A defined stack's first sample: check it, note its dense id, emit its rows unless stored. */
  firstUse(k: number, sample: number): void;
  /** A defined stack's later samples: their check must still match the definition. */
  checkDefined(k: number, sample: number): void;
  stackSeen: Uint8Array;
  stackDense: Float64Array;
  /** A referenced (not defined) stack the marks cache did not vouch for. */
  unheld(sample: number): void;
}

/**
 * Sums every sample's values into its series' accumulator. Its own function,
 * not a loop in ingestPush: there TurboFan had spent its inlining budget on
 * the definitions before reaching this loop, so each per-sample call
 * (IdMap.get, slotOf) stayed a call and boxed its double stack id (a heap
 * number per call; the push path allocated ~60 KB of them per profile).
 */
function sumSamples(
  q: RawPush,
  nTypes: number,
  held: Float64Array,
  defined: IdMap,
  accOf: (labelSet: number) => { acc: StackAccumulator; dropped: number },
  split: SeriesSplit,
  cases: SampleCases,
): void {
  const hasLabels = q.sampleLabelSet.length > 0;
  const stacks = q.sampleStack;
  const values = q.sampleValues;
  let lastSet = -1;
  let g: { acc: StackAccumulator; dropped: number } | undefined;
  let dropped = 0;
  for (let i = 0; i < q.nSamples; i++) {
    const id = stacks[i]!;
    let dense = 0;
    if (id !== 0) {
      const d = defined.get(id, 0);
      if (d > 0) {
        const k = d - 1;
        if (cases.stackSeen[k] === 0) cases.firstUse(k, i);
        else cases.checkDefined(k, i);
        dense = cases.stackDense[k]!;
      } else {
        dense = held[i]!;
        if (dense < 0) {
          dense = 0;
          cases.unheld(i);
        }
      }
    }
    const ls = hasLabels ? q.sampleLabelSet[i]! : 0;
    if (ls !== lastSet || g === undefined) {
      if (ls > q.nLabelSets) throw errBadProfile(`sample ${i} references label set ${ls} of ${q.nLabelSets}`);
      g = accOf(ls);
      lastSet = ls;
    }
    dropped += g.dropped;
    const acc = g.acc;
    const slot = acc.slotOf(id);
    if (dense > 0) acc.denseIds![slot] = dense;
    const vs = i * nTypes;
    for (let t = 0; t < nTypes; t++) acc.values[slot * nTypes + t]! += values[vs + t]!;
  }
  split.droppedLabels += dropped;
}
