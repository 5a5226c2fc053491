// A strict decoder of the lean push (src/profile/push-format.ts), written by
// hand for the reasons decode.ts gives for pprof: truncation, bad wire types,
// over-long varints and ids of 2^53 or more are errors (400), and every
// column lands in typed arrays reused from one call to the next. Cross
// references (indices) are checked by ingest-push.ts, which knows the tables.
import { errBadProtobuf } from '../errors.js';
import { f64Vec, i32Vec, u32Vec, u8Vec } from '../../src/util/typed-vec.js';
import { decodeValueType, Reader, type RawValueType } from './decode.js';
import { PUSH_FIELD as F } from '../../src/profile/push-format.js';

export interface RawPushMapping {
  id: number;
  buildId: number;
  filename: number;
  fileOffset: bigint;
  size: bigint;
}

/** A decoded push; typed-array columns are views the next decodePush call overwrites. */
export interface RawPush {
  buf: Uint8Array;
  version: number;
  nStrings: number;
  strStart: Int32Array;
  strEnd: Int32Array;
  sampleTypes: RawValueType[];
  periodType: RawValueType | undefined;
  period: number;
  timeNanos: bigint;
  durationNanos: number;
  defaultSampleType: number;
  mappings: RawPushMapping[];
  nFunctions: number;
  fnId: Float64Array;
  fnName: Float64Array;
  fnSystemName: Float64Array;
  fnFilename: Float64Array;
  fnStartLine: Float64Array;
  nLocations: number;
  locId: Float64Array;
  /** 1-based index into mappings, 0 = none. */
  locMapping: Float64Array;
  locAddrHi: Uint32Array;
  locAddrLo: Uint32Array;
  locFolded: Uint8Array;
  /** Lines of location k: lineFn/lineNo[locLineStart[k] .. locLineStart[k+1]); lineFn is a 1-based function index. */
  locLineStart: Int32Array;
  lineFn: Float64Array;
  lineNo: Float64Array;
  nStacks: number;
  stackId: Float64Array;
  stackCheck: Int32Array;
  /** Locations of stack k: stackLocs[stackLocStart[k] .. stackLocStart[k+1]), 1-based, leaf first. */
  stackLocStart: Int32Array;
  stackLocs: Float64Array;
  /** Label set k: (key, value) string index pairs labelPairs[labelSetStart[k] .. labelSetStart[k+1]). */
  nLabelSets: number;
  labelSetStart: Int32Array;
  labelPairs: Float64Array;
  nSamples: number;
  sampleStack: Float64Array;
  sampleCheck: Int32Array;
  /** 1-based label set index per sample (0 none); empty when no sample has labels. */
  sampleLabelSet: Float64Array;
  sampleValues: Float64Array;
}

const S = {
  strStart: i32Vec(),
  strEnd: i32Vec(),
  fnId: f64Vec(),
  fnName: f64Vec(),
  fnSystemName: f64Vec(),
  fnFilename: f64Vec(),
  fnStartLine: f64Vec(),
  locId: f64Vec(),
  locMapping: f64Vec(),
  locAddrHi: u32Vec(),
  locAddrLo: u32Vec(),
  locFolded: u8Vec(),
  locLineStart: i32Vec(),
  lineFn: f64Vec(),
  lineNo: f64Vec(),
  stackId: f64Vec(),
  stackCheck: i32Vec(),
  stackLocStart: i32Vec(),
  stackLocs: f64Vec(1 << 16),
  labelSetStart: i32Vec(),
  labelPairs: f64Vec(),
  sampleStack: f64Vec(1 << 12),
  sampleCheck: i32Vec(1 << 12),
  sampleLabelSet: f64Vec(1 << 12),
  sampleValues: f64Vec(1 << 13),
};
const reader = new Reader();
const TWO32 = 4294967296;

/** A fixed64 content id: below 2^53 (identity.ts), else the push is malformed. */
function fixed64Id(r: Reader): number {
  if (r.pos + 8 > r.end) r.fail('truncated fixed64');
  const b = r.buf;
  const p = r.pos;
  const lo = (b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16) | (b[p + 3]! << 24)) >>> 0;
  const hi = (b[p + 4]! | (b[p + 5]! << 8) | (b[p + 6]! << 16) | (b[p + 7]! << 24)) >>> 0;
  if (hi >= 1 << 21) r.fail('content id of 2^53 or more');
  r.pos = p + 8;
  return hi * TWO32 + lo;
}

function fixed32(r: Reader): number {
  if (r.pos + 4 > r.end) r.fail('truncated fixed32');
  const b = r.buf;
  const p = r.pos;
  r.pos = p + 4;
  return b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16) | (b[p + 3]! << 24);
}

function decodeMapping(r: Reader): RawPushMapping {
  const m: RawPushMapping = { id: 0, buildId: 0, filename: 0, fileOffset: 0n, size: 0n };
  const outer = r.enter();
  while (r.pos < r.end) {
    const key = r.varint();
    const field = Math.floor(key / 8);
    const wt = key & 7;
    if (field === 1 && wt === 1) m.id = fixed64Id(r);
    else if (field === 2 && wt === 0) m.buildId = r.varint();
    else if (field === 3 && wt === 0) m.filename = r.varint();
    else if (field === 4 && wt === 0) m.fileOffset = r.uint64Big();
    else if (field === 5 && wt === 0) m.size = r.uint64Big();
    else r.skip(wt);
  }
  r.leave(outer);
  return m;
}

function decodeFunction(r: Reader): void {
  let id = 0;
  let name = 0;
  let sys = 0;
  let file = 0;
  let startLine = 0;
  const outer = r.enter();
  while (r.pos < r.end) {
    const key = r.varint();
    const field = Math.floor(key / 8);
    const wt = key & 7;
    if (field === 1 && wt === 1) id = fixed64Id(r);
    else if (field === 2 && wt === 0) name = r.varint();
    else if (field === 3 && wt === 0) sys = r.varint();
    else if (field === 4 && wt === 0) file = r.varint();
    else if (field === 5 && wt === 0) startLine = r.int64();
    else r.skip(wt);
  }
  r.leave(outer);
  S.fnId.push(id);
  S.fnName.push(name);
  S.fnSystemName.push(sys);
  S.fnFilename.push(file);
  S.fnStartLine.push(startLine);
}

function decodeLocation(r: Reader): void {
  let id = 0;
  let mapping = 0;
  let hi = 0;
  let lo = 0;
  let folded = 0;
  const outer = r.enter();
  while (r.pos < r.end) {
    const key = r.varint();
    const field = Math.floor(key / 8);
    const wt = key & 7;
    if (field === 1 && wt === 1) id = fixed64Id(r);
    else if (field === 2 && wt === 0) mapping = r.varint();
    else if (field === 3 && wt === 0) {
      r.varint64();
      hi = r.hi;
      lo = r.lo;
    } else if (field === 4 && wt === 0) folded = r.varint() !== 0 ? 1 : 0;
    else if (field === 5 && wt === 2) {
      const end = r.lengthDelimited();
      const o = r.end;
      r.end = end;
      let n = 0;
      while (r.pos < end) {
        if ((n & 1) === 0) S.lineFn.push(r.varint());
        else S.lineNo.push(r.int64());
        n++;
      }
      r.end = o;
      if ((n & 1) !== 0) r.fail('location lines must be (function, line) pairs');
    } else r.skip(wt);
  }
  r.leave(outer);
  S.locId.push(id);
  S.locMapping.push(mapping);
  S.locAddrHi.push(hi);
  S.locAddrLo.push(lo);
  S.locFolded.push(folded);
  S.locLineStart.push(S.lineFn.length);
}

function decodeStack(r: Reader): void {
  let id = 0;
  let check = 0;
  const outer = r.enter();
  while (r.pos < r.end) {
    const key = r.varint();
    const field = Math.floor(key / 8);
    const wt = key & 7;
    if (field === 1 && wt === 1) id = fixed64Id(r);
    else if (field === 2 && wt === 5) check = fixed32(r);
    else if (field === 3) r.repeated(wt, S.stackLocs, false);
    else r.skip(wt);
  }
  r.leave(outer);
  S.stackId.push(id);
  S.stackCheck.push(check);
  S.stackLocStart.push(S.stackLocs.length);
}

function decodeLabelSet(r: Reader): void {
  const outer = r.enter();
  while (r.pos < r.end) {
    const key = r.varint();
    const field = Math.floor(key / 8);
    const wt = key & 7;
    if (field === 1) r.repeated(wt, S.labelPairs, false);
    else r.skip(wt);
  }
  r.leave(outer);
  if ((S.labelPairs.length & 1) !== 0) r.fail('a label set must hold (key, value) pairs');
  S.labelSetStart.push(S.labelPairs.length);
}

/** Packed fixed64 ids or fixed32 checks (wire type 2 only: the encoder always packs). */
function packedFixed(r: Reader, wt: number, width: 4 | 8): void {
  if (wt !== 2) r.fail(`wire type ${wt} for a packed fixed${width * 8} field`);
  const end = r.lengthDelimited();
  if ((end - r.pos) % width !== 0) r.fail(`packed fixed${width * 8} field of ${end - r.pos} bytes`);
  const o = r.end;
  r.end = end;
  if (width === 8) {
    S.sampleStack.reserve((end - r.pos) / 8);
    while (r.pos < end) S.sampleStack.data[S.sampleStack.length++] = fixed64Id(r);
  } else {
    S.sampleCheck.reserve((end - r.pos) / 4);
    while (r.pos < end) S.sampleCheck.data[S.sampleCheck.length++] = fixed32(r);
  }
  r.end = o;
}

export function decodePush(buf: Uint8Array): RawPush {
  for (const v of Object.values(S)) v.length = 0;
  S.locLineStart.push(0);
  S.stackLocStart.push(0);
  S.labelSetStart.push(0);
  const r = reader;
  r.buf = buf;
  r.pos = 0;
  r.end = buf.length;
  const out = {
    version: 0,
    sampleTypes: [] as RawValueType[],
    periodType: undefined as RawValueType | undefined,
    period: 0,
    timeNanos: 0n,
    durationNanos: 0,
    defaultSampleType: 0,
    mappings: [] as RawPushMapping[],
  };
  while (r.pos < r.end) {
    const key = r.varint();
    const field = Math.floor(key / 8);
    const wt = key & 7;
    switch (field) {
      case F.version:
        r.expect(wt, 0, 'version');
        out.version = r.varint();
        break;
      case F.stringTable: {
        r.expect(wt, 2, 'string_table');
        const end = r.lengthDelimited();
        S.strStart.push(r.pos);
        S.strEnd.push(end);
        r.pos = end;
        break;
      }
      case F.sampleType:
        r.expect(wt, 2, 'sample_type');
        out.sampleTypes.push(decodeValueType(r));
        break;
      case F.periodType:
        r.expect(wt, 2, 'period_type');
        out.periodType = decodeValueType(r);
        break;
      case F.period:
        r.expect(wt, 0, 'period');
        out.period = r.int64();
        break;
      case F.timeNanos:
        r.expect(wt, 0, 'time_nanos');
        r.varint64();
        out.timeNanos = BigInt.asIntN(64, (BigInt(r.hi) << 32n) | BigInt(r.lo));
        break;
      case F.durationNanos:
        r.expect(wt, 0, 'duration_nanos');
        out.durationNanos = r.int64();
        break;
      case F.defaultSampleType:
        r.expect(wt, 0, 'default_sample_type');
        out.defaultSampleType = r.varint();
        break;
      case F.mapping:
        r.expect(wt, 2, 'mapping');
        out.mappings.push(decodeMapping(r));
        break;
      case F.function:
        r.expect(wt, 2, 'function');
        decodeFunction(r);
        break;
      case F.location:
        r.expect(wt, 2, 'location');
        decodeLocation(r);
        break;
      case F.stack:
        r.expect(wt, 2, 'stack');
        decodeStack(r);
        break;
      case F.labelSet:
        r.expect(wt, 2, 'label_set');
        decodeLabelSet(r);
        break;
      case F.sampleStack:
        packedFixed(r, wt, 8);
        break;
      case F.sampleStackCheck:
        packedFixed(r, wt, 4);
        break;
      case F.sampleLabelSet:
        r.repeated(wt, S.sampleLabelSet, false);
        break;
      case F.sampleValue:
        r.repeated(wt, S.sampleValues, true);
        break;
      default:
        r.skip(wt);
    }
  }
  const nSamples = S.sampleStack.length;
  if (S.sampleCheck.length !== nSamples) throw errBadProtobuf(`push has ${nSamples} sample stacks but ${S.sampleCheck.length} stack checks`);
  if (S.sampleLabelSet.length !== 0 && S.sampleLabelSet.length !== nSamples) throw errBadProtobuf(`push has ${nSamples} sample stacks but ${S.sampleLabelSet.length} label set indices`);
  if (S.sampleValues.length !== nSamples * out.sampleTypes.length) {
    throw errBadProtobuf(`push has ${S.sampleValues.length} sample values for ${nSamples} samples of ${out.sampleTypes.length} types`);
  }
  return {
    buf,
    ...out,
    nStrings: S.strStart.length,
    strStart: S.strStart.view(),
    strEnd: S.strEnd.view(),
    nFunctions: S.fnId.length,
    fnId: S.fnId.view(),
    fnName: S.fnName.view(),
    fnSystemName: S.fnSystemName.view(),
    fnFilename: S.fnFilename.view(),
    fnStartLine: S.fnStartLine.view(),
    nLocations: S.locId.length,
    locId: S.locId.view(),
    locMapping: S.locMapping.view(),
    locAddrHi: S.locAddrHi.view(),
    locAddrLo: S.locAddrLo.view(),
    locFolded: S.locFolded.view(),
    locLineStart: S.locLineStart.view(),
    lineFn: S.lineFn.view(),
    lineNo: S.lineNo.view(),
    nStacks: S.stackId.length,
    stackId: S.stackId.view(),
    stackCheck: S.stackCheck.view(),
    stackLocStart: S.stackLocStart.view(),
    stackLocs: S.stackLocs.view(),
    nLabelSets: S.labelSetStart.length - 1,
    labelSetStart: S.labelSetStart.view(),
    labelPairs: S.labelPairs.view(),
    nSamples,
    sampleStack: S.sampleStack.view(),
    sampleCheck: S.sampleCheck.view(),
    sampleLabelSet: S.sampleLabelSet.view(),
    sampleValues: S.sampleValues.view(),
  };
}
