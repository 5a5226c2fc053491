// A strict, flat decoder for profile.proto. We do not use pprof-format's
// decoder on the ingest path because it silently accepts truncated messages
// (a length past the end is clipped) and builds objects per sample, location
// and line; here truncation, bad wire types and over-long varints are errors,
// and samples, locations, lines and functions land in typed arrays (column
// per field) that are reused from one call to the next, so decoding a profile
// allocates almost nothing. Strings stay bytes until someone asks for them.
//
// Numbers: ids, indices and counts are read as doubles (exact below 2^53);
// addresses are exact unsigned 64-bit as two uint32 halves.
import { errBadProtobuf } from '../errors.js';
import { f64Vec, i32Vec, u32Vec, u8Vec, type TypedVec } from '../../src/util/typed-vec.js';

export interface RawValueType {
  type: number; // string table index
  unit: number;
}

export interface RawMapping {
  id: number;
  memoryStart: bigint;
  memoryLimit: bigint;
  fileOffset: bigint;
  filename: number;
  buildId: number;
  hasFunctions: boolean;
  hasFilenames: boolean;
  hasLineNumbers: boolean;
  hasInlineFrames: boolean;
}


/**
 * A decoded profile. The typed-array columns are views into buffers that the
 * next decodeProfile call overwrites: use (or copy) them before decoding again.
 */
export interface RawProfile {
  buf: Uint8Array;
  /** String i is buf[strStart[i] .. strEnd[i]) as UTF-8; see stringAt. */
  nStrings: number;
  strStart: Int32Array;
  strEnd: Int32Array;
  sampleTypes: RawValueType[];
  nSamples: number;
  /** Location ids of all samples back to back; sample i is sampleLocs[sampleStart[i] .. sampleStart[i+1]). Leaf first. */
  sampleLocs: Float64Array;
  sampleStart: Int32Array;
  /** Values of all samples back to back; sample i owns sampleValueStart[i] .. sampleValueStart[i+1]. */
  sampleValues: Float64Array;
  sampleValueStart: Int32Array;
  /** String labels (key, value string indices) of sample i: labelKey/labelStr[sampleLabelStart[i] .. sampleLabelStart[i+1]). Numeric labels are not kept. */
  labelKey: Float64Array;
  labelStr: Float64Array;
  sampleLabelStart: Int32Array;
  /** Numeric labels seen (dropped: they would make a series per value, e.g. pid). */
  numericLabels: number;
  mappings: RawMapping[];
  nLocations: number;
  locId: Float64Array;
  locMapping: Float64Array;
  locAddrLo: Uint32Array;
  locAddrHi: Uint32Array;
  locFolded: Uint8Array;
  /** Lines of location k are lineFn/lineNo[locLineStart[k] .. locLineStart[k+1]), innermost first. */
  locLineStart: Int32Array;
  lineFn: Float64Array;
  lineNo: Float64Array;
  nFunctions: number;
  fnId: Float64Array;
  fnName: Float64Array;
  fnSystemName: Float64Array;
  fnFilename: Float64Array;
  fnStartLine: Float64Array;
  /** Exact: nanoseconds since 1970 exceed 2^53, so a double would shift times by up to a millisecond. */
  timeNanos: bigint;
  durationNanos: number;
  periodType: RawValueType | undefined;
  period: number;
  defaultSampleType: number;
}

const utf8 = new TextDecoder('utf-8', { fatal: false });

/** String i of a decoded profile (index range must have been validated). */
export function stringAt(p: Pick<RawProfile, 'buf' | 'nStrings' | 'strStart' | 'strEnd'>, i: number): string {
  if (i >= p.nStrings) return '';
  const s = p.strStart[i]!;
  const e = p.strEnd[i]!;
  if (s === e) return '';
  const buf = p.buf;
  // ASCII fast path: latin1 of ASCII bytes is the same string, and cheaper.
  let ascii = true;
  for (let k = s; k < e; k++) {
    if (buf[k]! >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii && Buffer.isBuffer(buf)) return buf.toString('latin1', s, e);
  return utf8.decode(buf.subarray(s, e));
}

/** Exact hex of a location's address. */
export function addressHex(hi: number, lo: number): string {
  return hi === 0 ? lo.toString(16) : hi.toString(16) + lo.toString(16).padStart(8, '0');
}

export function addressBig(hi: number, lo: number): bigint {
  return (BigInt(hi) << 32n) | BigInt(lo);
}

export class Reader {
  pos = 0;
  end = 0;
  /** Results of varint64(). */
  lo = 0;
  hi = 0;
  buf: Uint8Array = new Uint8Array(0);

  fail(what: string): never {
    throw errBadProtobuf(`malformed protobuf: ${what} at byte ${this.pos}`);
  }

  /** Unsigned varint as a double: exact below 2^53, which covers ids, indices and counts. */
  varint(): number {
    const buf = this.buf;
    let pos = this.pos;
    if (pos >= this.end) this.fail('truncated varint');
    let b = buf[pos++]!;
    if (b < 0x80) {
      this.pos = pos;
      return b;
    }
    let result = b & 0x7f;
    let mul = 128;
    for (let i = 1; i < 10; i++) {
      if (pos >= this.end) {
        this.pos = pos;
        this.fail('truncated varint');
      }
      b = buf[pos++]!;
      result += (b & 0x7f) * mul;
      if (b < 0x80) {
        this.pos = pos;
        return result;
      }
      mul *= 128;
    }
    this.pos = pos;
    this.fail('varint longer than 10 bytes');
  }

  /** int64 field: two's complement, exact whenever |value| < 2^53 (also for negatives). */
  int64(): number {
    const buf = this.buf;
    const pos = this.pos;
    // Fast path: a non-negative value below 2^49 takes at most 7 bytes.
    if (pos < this.end && buf[pos]! < 0x80) {
      this.pos = pos + 1;
      return buf[pos]!;
    }
    this.varint64();
    const hi = this.hi;
    const lo = this.lo;
    if (hi < 0x80000000) return hi * 4294967296 + lo;
    return -((~hi >>> 0) * 4294967296 + (~lo >>> 0) + 1);
  }

  /** Exact unsigned 64-bit varint into this.lo / this.hi (uint32 halves). */
  varint64(): void {
    const buf = this.buf;
    const end = this.end;
    let pos = this.pos;
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (pos >= end) {
        this.pos = pos;
        this.fail('truncated varint');
      }
      const byte = buf[pos++]!;
      const b = byte & 0x7f;
      if (i < 4) lo |= b << (7 * i);
      else if (i === 4) {
        lo |= b << 28;
        hi = b >>> 4;
      } else hi |= b << (7 * i - 32);
      if (byte < 0x80) {
        this.pos = pos;
        this.lo = lo >>> 0;
        this.hi = hi >>> 0;
        return;
      }
    }
    this.pos = pos;
    this.fail('varint longer than 10 bytes');
  }

  uint64Big(): bigint {
    this.varint64();
    return addressBig(this.hi, this.lo);
  }

  /** Length prefix of a wire-type-2 field; returns the end offset. */
  lengthDelimited(): number {
    const len = this.varint();
    const end = this.pos + len;
    if (end > this.end) this.fail(`length ${len} runs past the end of its message`);
    return end;
  }

  skip(wireType: number): void {
    switch (wireType) {
      case 0:
        this.varint();
        return;
      case 1:
        if (this.pos + 8 > this.end) this.fail('truncated fixed64');
        this.pos += 8;
        return;
      case 2:
        this.pos = this.lengthDelimited();
        return;
      case 5:
        if (this.pos + 4 > this.end) this.fail('truncated fixed32');
        this.pos += 4;
        return;
      default:
        this.fail(`unsupported wire type ${wireType}`);
    }
  }

  /** Reads a repeated scalar field that may be packed (wire type 2) or not (0). */
  repeated(wireType: number, out: TypedVec<Float64Array>, signed: boolean): void {
    if (wireType === 0) {
      out.push(signed ? this.int64() : this.varint());
    } else if (wireType === 2) {
      const end = this.lengthDelimited();
      const outerEnd = this.end;
      // Narrow the bound so a bad varint cannot read into the next field.
      this.end = end;
      try {
        if (signed) while (this.pos < end) out.push(this.int64());
        else this.packedUnsigned(end, out);
      } finally {
        this.end = outerEnd;
      }
    } else {
      this.fail(`wire type ${wireType} for a repeated scalar`);
    }
  }

  /**
   * Packed unsigned varints up to `end` (= this.end) into out: the sample
   * location ids, ~60,000 per fleet profile, so the one- and two-byte cases
   * are read inline (a packed field holds at most one value per byte).
   */
  private packedUnsigned(end: number, out: TypedVec<Float64Array>): void {
    out.reserve(end - this.pos);
    const data = out.data;
    const buf = this.buf;
    let n = out.length;
    let pos = this.pos;
    while (pos < end) {
      const b0 = buf[pos]!;
      if (b0 < 0x80) {
        data[n++] = b0;
        pos++;
        continue;
      }
      if (pos + 2 < end) {
        const b1 = buf[pos + 1]!;
        if (b1 < 0x80) {
          data[n++] = (b0 & 0x7f) | (b1 << 7);
          pos += 2;
          continue;
        }
        const b2 = buf[pos + 2]!;
        if (b2 < 0x80) {
          data[n++] = (b0 & 0x7f) | ((b1 & 0x7f) << 7) | (b2 << 14);
          pos += 3;
          continue;
        }
      }
      this.pos = pos;
      data[n++] = this.varint();
      pos = this.pos;
    }
    this.pos = pos;
    out.length = n;
  }

  expect(wireType: number, want: number, field: string): void {
    if (wireType !== want) this.fail(`wire type ${wireType} for field ${field}`);
  }

  /** Enters a length-delimited sub-message; returns the outer end to restore. */
  enter(): number {
    const end = this.lengthDelimited();
    const outer = this.end;
    this.end = end;
    return outer;
  }

  leave(outer: number): void {
    this.end = outer;
  }
}

// Scratch columns reused by every call (decoding is synchronous).
const S = {
  strStart: i32Vec(),
  strEnd: i32Vec(),
  sampleLocs: f64Vec(1 << 16),
  sampleStart: i32Vec(),
  sampleValues: f64Vec(),
  sampleValueStart: i32Vec(),
  labelKey: f64Vec(),
  labelStr: f64Vec(),
  sampleLabelStart: i32Vec(),
  locId: f64Vec(),
  locMapping: f64Vec(),
  locAddrLo: u32Vec(),
  locAddrHi: u32Vec(),
  locFolded: u8Vec(),
  locLineStart: i32Vec(),
  lineFn: f64Vec(),
  lineNo: f64Vec(),
  fnId: f64Vec(),
  fnName: f64Vec(),
  fnSystemName: f64Vec(),
  fnFilename: f64Vec(),
  fnStartLine: f64Vec(),
};
const reader = new Reader();

export function decodeValueType(r: Reader): RawValueType {
  const out: RawValueType = { type: 0, unit: 0 };
  const outer = r.enter();
  while (r.pos < r.end) {
    const key = r.varint();
    const field = Math.floor(key / 8);
    const wt = key & 7;
    if (field === 1 && wt === 0) out.type = r.varint();
    else if (field === 2 && wt === 0) out.unit = r.varint();
    else r.skip(wt);
  }
  r.leave(outer);
  return out;
}

function decodeMapping(r: Reader): RawMapping {
  const m: RawMapping = {
    id: 0,
    memoryStart: 0n,
    memoryLimit: 0n,
    fileOffset: 0n,
    filename: 0,
    buildId: 0,
    hasFunctions: false,
    hasFilenames: false,
    hasLineNumbers: false,
    hasInlineFrames: false,
  };
  const outer = r.enter();
  while (r.pos < r.end) {
    const key = r.varint();
    const field = Math.floor(key / 8);
    const wt = key & 7;
    if (wt !== 0 || field < 1 || field > 10) {
      r.skip(wt);
      continue;
    }
    switch (field) {
      case 1: m.id = r.varint(); break;
      case 2: m.memoryStart = r.uint64Big(); break;
      case 3: m.memoryLimit = r.uint64Big(); break;
      case 4: m.fileOffset = r.uint64Big(); break;
      case 5: m.filename = r.varint(); break;
      case 6: m.buildId = r.varint(); break;
      case 7: m.hasFunctions = r.varint() !== 0; break;
      case 8: m.hasFilenames = r.varint() !== 0; break;
      case 9: m.hasLineNumbers = r.varint() !== 0; break;
      case 10: m.hasInlineFrames = r.varint() !== 0; break;
    }
  }
  r.leave(outer);
  return m;
}

/** One Label message; returns true when it was a numeric one (not kept). */
function decodeLabel(r: Reader): boolean {
  let key = 0;
  let str = 0;
  let numeric = false;
  const outer = r.enter();
  while (r.pos < r.end) {
    const k = r.varint();
    const field = Math.floor(k / 8);
    const wt = k & 7;
    if (field === 1 && wt === 0) key = r.varint();
    else if (field === 2 && wt === 0) str = r.varint();
    else if (field === 3 && wt === 0) {
      r.int64();
      numeric = true;
    } else r.skip(wt);
  }
  r.leave(outer);
  if (str !== 0) {
    S.labelKey.push(key);
    S.labelStr.push(str);
    return false;
  }
  return numeric;
}

// Locations and functions (~7,000 each per fleet profile) are read with the
// position in a local and the one-byte varints (keys, small ids) inline; the
// Reader's methods take everything else, with the same checks.

function decodeLine(r: Reader): void {
  let fn = 0;
  let line = 0;
  const outer = r.enter();
  const buf = r.buf;
  const end = r.end;
  while (r.pos < end) {
    const k0 = buf[r.pos]!;
    const key = k0 < 0x80 ? (r.pos++, k0) : r.varint();
    const field = Math.floor(key / 8);
    const wt = key & 7;
    if (field === 1 && wt === 0) fn = r.varint();
    else if (field === 2 && wt === 0) line = r.int64();
    else r.skip(wt);
  }
  r.leave(outer);
  S.lineFn.push(fn);
  S.lineNo.push(line);
}

function decodeLocation(r: Reader): void {
  let id = 0;
  let mapping = 0;
  let lo = 0;
  let hi = 0;
  let folded = 0;
  const outer = r.enter();
  const buf = r.buf;
  const end = r.end;
  while (r.pos < end) {
    const k0 = buf[r.pos]!;
    const key = k0 < 0x80 ? (r.pos++, k0) : r.varint();
    const field = Math.floor(key / 8);
    const wt = key & 7;
    if (field === 1 && wt === 0) id = r.varint();
    else if (field === 2 && wt === 0) mapping = r.varint();
    else if (field === 3 && wt === 0) {
      r.varint64();
      lo = r.lo;
      hi = r.hi;
    } else if (field === 4 && wt === 2) decodeLine(r);
    else if (field === 5 && wt === 0) folded = r.varint() !== 0 ? 1 : 0;
    else r.skip(wt);
  }
  r.leave(outer);
  S.locId.push(id);
  S.locMapping.push(mapping);
  S.locAddrLo.push(lo);
  S.locAddrHi.push(hi);
  S.locFolded.push(folded);
  S.locLineStart.push(S.lineFn.length);
}

function decodeFunction(r: Reader): void {
  let id = 0;
  let name = 0;
  let sys = 0;
  let file = 0;
  let start = 0;
  const outer = r.enter();
  while (r.pos < r.end) {
    const key = r.varint();
    const field = Math.floor(key / 8);
    const wt = key & 7;
    if (wt !== 0) {
      r.skip(wt);
      continue;
    }
    if (field === 1) id = r.varint();
    else if (field === 2) name = r.varint();
    else if (field === 3) sys = r.varint();
    else if (field === 4) file = r.varint();
    else if (field === 5) start = r.int64();
    else r.skip(wt);
  }
  r.leave(outer);
  S.fnId.push(id);
  S.fnName.push(name);
  S.fnSystemName.push(sys);
  S.fnFilename.push(file);
  S.fnStartLine.push(start);
}

/** Decodes an uncompressed profile.proto message; throws FP_ERR_BAD_PROTOBUF on malformed input. */
export function decodeProfile(buf: Uint8Array): RawProfile {
  for (const v of Object.values(S)) v.length = 0;
  S.sampleStart.push(0);
  S.sampleValueStart.push(0);
  S.sampleLabelStart.push(0);
  S.locLineStart.push(0);
  let numericLabels = 0;
  const sampleTypes: RawValueType[] = [];
  const mappings: RawMapping[] = [];
  let timeNanos = 0n;
  let durationNanos = 0;
  let periodType: RawValueType | undefined;
  let period = 0;
  let defaultSampleType = 0;
  const r = reader;
  r.buf = buf;
  r.pos = 0;
  r.end = buf.length;
  try {
    while (r.pos < r.end) {
      const key = r.varint();
      const field = Math.floor(key / 8);
      const wt = key & 7;
      switch (field) {
        case 1:
          r.expect(wt, 2, 'sample_type');
          sampleTypes.push(decodeValueType(r));
          break;
        case 2: {
          r.expect(wt, 2, 'sample');
          const outer = r.enter();
          while (r.pos < r.end) {
            const k = r.varint();
            const f = Math.floor(k / 8);
            const w = k & 7;
            if (f === 1) r.repeated(w, S.sampleLocs, false);
            else if (f === 2) r.repeated(w, S.sampleValues, true);
            else if (f === 3 && w === 2) numericLabels += decodeLabel(r) ? 1 : 0;
            else r.skip(w);
          }
          r.leave(outer);
          S.sampleStart.push(S.sampleLocs.length);
          S.sampleValueStart.push(S.sampleValues.length);
          S.sampleLabelStart.push(S.labelKey.length);
          break;
        }
        case 3:
          r.expect(wt, 2, 'mapping');
          mappings.push(decodeMapping(r));
          break;
        case 4:
          r.expect(wt, 2, 'location');
          decodeLocation(r);
          break;
        case 5:
          r.expect(wt, 2, 'function');
          decodeFunction(r);
          break;
        case 6: {
          r.expect(wt, 2, 'string_table');
          const end = r.lengthDelimited();
          S.strStart.push(r.pos);
          S.strEnd.push(end);
          r.pos = end;
          break;
        }
        case 9:
          r.expect(wt, 0, 'time_nanos');
          timeNanos = BigInt.asIntN(64, r.uint64Big());
          break;
        case 10:
          r.expect(wt, 0, 'duration_nanos');
          durationNanos = r.int64();
          break;
        case 11:
          r.expect(wt, 2, 'period_type');
          periodType = decodeValueType(r);
          break;
        case 12:
          r.expect(wt, 0, 'period');
          period = r.int64();
          break;
        case 14:
          r.expect(wt, 0, 'default_sample_type');
          defaultSampleType = r.varint();
          break;
        default:
          if (field === 0) r.fail('field number 0');
          r.skip(wt); // drop_frames, keep_frames, comment, doc_url, unknown fields
      }
    }
  } finally {
    r.buf = new Uint8Array(0);
  }
  return {
    buf,
    nStrings: S.strStart.length,
    strStart: S.strStart.view(),
    strEnd: S.strEnd.view(),
    sampleTypes,
    nSamples: S.sampleStart.length - 1,
    sampleLocs: S.sampleLocs.view(),
    sampleStart: S.sampleStart.view(),
    sampleValues: S.sampleValues.view(),
    sampleValueStart: S.sampleValueStart.view(),
    labelKey: S.labelKey.view(),
    labelStr: S.labelStr.view(),
    sampleLabelStart: S.sampleLabelStart.view(),
    numericLabels,
    mappings,
    nLocations: S.locId.length,
    locId: S.locId.view(),
    locMapping: S.locMapping.view(),
    locAddrLo: S.locAddrLo.view(),
    locAddrHi: S.locAddrHi.view(),
    locFolded: S.locFolded.view(),
    locLineStart: S.locLineStart.view(),
    lineFn: S.lineFn.view(),
    lineNo: S.lineNo.view(),
    nFunctions: S.fnId.length,
    fnId: S.fnId.view(),
    fnName: S.fnName.view(),
    fnSystemName: S.fnSystemName.view(),
    fnFilename: S.fnFilename.view(),
    fnStartLine: S.fnStartLine.view(),
    timeNanos,
    durationNanos,
    periodType,
    period,
    defaultSampleType,
  };
}
