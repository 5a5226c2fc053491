// A strict, allocation-light decoder for profile.proto. We do not use
// pprof-format's decoder on the ingest path because it silently accepts
// truncated messages (a length past the end is clipped) and builds one object
// per sample; here truncation, bad wire types and over-long varints are
// errors, and sample stacks land in flat number arrays.
import { errBadProtobuf } from '../errors.js';

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

export interface RawLine {
  functionId: number;
  line: number;
}

export interface RawLocation {
  id: number;
  mappingId: number;
  address: bigint;
  lines: RawLine[];
  isFolded: boolean;
}

export interface RawFunction {
  id: number;
  name: number;
  systemName: number;
  filename: number;
  startLine: number;
}

export interface RawProfile {
  strings: string[];
  sampleTypes: RawValueType[];
  /** Location ids of all samples back to back; sample i is sampleLocs[sampleStart[i] .. sampleStart[i+1]). Leaf first. */
  sampleLocs: number[];
  sampleStart: number[];
  /** Values of all samples back to back; sample i owns sampleValueStart[i] .. sampleValueStart[i+1]. */
  sampleValues: number[];
  sampleValueStart: number[];
  mappings: RawMapping[];
  locations: RawLocation[];
  functions: RawFunction[];
  /** Exact: nanoseconds since 1970 exceed 2^53, so a double would shift times by up to a millisecond. */
  timeNanos: bigint;
  durationNanos: number;
  periodType: RawValueType | undefined;
  period: number;
  defaultSampleType: number;
}

const TWO_POW_63 = 2 ** 63;
const TWO_POW_64 = 2 ** 64;
const utf8 = new TextDecoder('utf-8', { fatal: false });

class Reader {
  pos: number;
  constructor(
    readonly buf: Uint8Array,
    start: number,
    public end: number,
  ) {
    this.pos = start;
  }

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

  /** int64 field: two's complement values above 2^63 are negative. */
  int64(): number {
    const v = this.varint();
    return v >= TWO_POW_63 ? v - TWO_POW_64 : v;
  }

  /** Exact unsigned 64-bit varint, for addresses (kernel addresses exceed 2^53). */
  uint64Big(): bigint {
    let result = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.fail('truncated varint');
      const b = this.buf[this.pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return BigInt.asUintN(64, result);
      shift += 7n;
    }
    this.fail('varint longer than 10 bytes');
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
  repeated(wireType: number, out: number[], read: () => number): void {
    if (wireType === 0) {
      out.push(read());
    } else if (wireType === 2) {
      const end = this.lengthDelimited();
      const outerEnd = this.end;
      // Narrow the bound so a bad varint cannot read into the next field.
      this.end = end;
      try {
        while (this.pos < end) out.push(read());
      } finally {
        this.end = outerEnd;
      }
    } else {
      this.fail(`wire type ${wireType} for a repeated scalar`);
    }
  }

  expect(wireType: number, want: number, field: string): void {
    if (wireType !== want) this.fail(`wire type ${wireType} for field ${field}`);
  }
}

function sub(r: Reader): Reader {
  const end = r.lengthDelimited();
  const s = new Reader(r.buf, r.pos, end);
  r.pos = end;
  return s;
}

function decodeValueType(r: Reader): RawValueType {
  const out: RawValueType = { type: 0, unit: 0 };
  while (r.pos < r.end) {
    const key = r.varint();
    const field = Math.floor(key / 8);
    const wt = key & 7;
    if (field === 1 && wt === 0) out.type = r.varint();
    else if (field === 2 && wt === 0) out.unit = r.varint();
    else r.skip(wt);
  }
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
  return m;
}

function decodeLine(r: Reader): RawLine {
  const l: RawLine = { functionId: 0, line: 0 };
  while (r.pos < r.end) {
    const key = r.varint();
    const field = Math.floor(key / 8);
    const wt = key & 7;
    if (field === 1 && wt === 0) l.functionId = r.varint();
    else if (field === 2 && wt === 0) l.line = r.int64();
    else r.skip(wt);
  }
  return l;
}

function decodeLocation(r: Reader): RawLocation {
  const loc: RawLocation = { id: 0, mappingId: 0, address: 0n, lines: [], isFolded: false };
  while (r.pos < r.end) {
    const key = r.varint();
    const field = Math.floor(key / 8);
    const wt = key & 7;
    if (field === 1 && wt === 0) loc.id = r.varint();
    else if (field === 2 && wt === 0) loc.mappingId = r.varint();
    else if (field === 3 && wt === 0) loc.address = r.uint64Big();
    else if (field === 4 && wt === 2) loc.lines.push(decodeLine(sub(r)));
    else if (field === 5 && wt === 0) loc.isFolded = r.varint() !== 0;
    else r.skip(wt);
  }
  return loc;
}

function decodeFunction(r: Reader): RawFunction {
  const f: RawFunction = { id: 0, name: 0, systemName: 0, filename: 0, startLine: 0 };
  while (r.pos < r.end) {
    const key = r.varint();
    const field = Math.floor(key / 8);
    const wt = key & 7;
    if (wt !== 0) {
      r.skip(wt);
      continue;
    }
    if (field === 1) f.id = r.varint();
    else if (field === 2) f.name = r.varint();
    else if (field === 3) f.systemName = r.varint();
    else if (field === 4) f.filename = r.varint();
    else if (field === 5) f.startLine = r.int64();
    else r.skip(wt);
  }
  return f;
}

/** Decodes an uncompressed profile.proto message; throws FP_ERR_BAD_PROTOBUF on malformed input. */
export function decodeProfile(buf: Uint8Array): RawProfile {
  const p: RawProfile = {
    strings: [],
    sampleTypes: [],
    sampleLocs: [],
    sampleStart: [0],
    sampleValues: [],
    sampleValueStart: [0],
    mappings: [],
    locations: [],
    functions: [],
    timeNanos: 0n,
    durationNanos: 0,
    periodType: undefined,
    period: 0,
    defaultSampleType: 0,
  };
  const r = new Reader(buf, 0, buf.length);
  while (r.pos < r.end) {
    const key = r.varint();
    const field = Math.floor(key / 8);
    const wt = key & 7;
    switch (field) {
      case 1:
        r.expect(wt, 2, 'sample_type');
        p.sampleTypes.push(decodeValueType(sub(r)));
        break;
      case 2: {
        r.expect(wt, 2, 'sample');
        const s = sub(r);
        while (s.pos < s.end) {
          const k = s.varint();
          const f = Math.floor(k / 8);
          const w = k & 7;
          if (f === 1) s.repeated(w, p.sampleLocs, () => s.varint());
          else if (f === 2) s.repeated(w, p.sampleValues, () => s.int64());
          else s.skip(w); // labels (pid, tid, ...) are dropped, see server/ingest.ts
        }
        p.sampleStart.push(p.sampleLocs.length);
        p.sampleValueStart.push(p.sampleValues.length);
        break;
      }
      case 3:
        r.expect(wt, 2, 'mapping');
        p.mappings.push(decodeMapping(sub(r)));
        break;
      case 4:
        r.expect(wt, 2, 'location');
        p.locations.push(decodeLocation(sub(r)));
        break;
      case 5:
        r.expect(wt, 2, 'function');
        p.functions.push(decodeFunction(sub(r)));
        break;
      case 6: {
        r.expect(wt, 2, 'string_table');
        const end = r.lengthDelimited();
        p.strings.push(utf8.decode(buf.subarray(r.pos, end)));
        r.pos = end;
        break;
      }
      case 9:
        r.expect(wt, 0, 'time_nanos');
        p.timeNanos = BigInt.asIntN(64, r.uint64Big());
        break;
      case 10:
        r.expect(wt, 0, 'duration_nanos');
        p.durationNanos = r.int64();
        break;
      case 11:
        r.expect(wt, 2, 'period_type');
        p.periodType = decodeValueType(sub(r));
        break;
      case 12:
        r.expect(wt, 0, 'period');
        p.period = r.int64();
        break;
      case 14:
        r.expect(wt, 0, 'default_sample_type');
        p.defaultSampleType = r.varint();
        break;
      default:
        if (field === 0) r.fail('field number 0');
        r.skip(wt); // drop_frames, keep_frames, comment, doc_url, unknown fields
    }
  }
  return p;
}
