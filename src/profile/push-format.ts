// The lean push: fleetprof's own ingest format, beside pprof. An agent
// pushes a pprof's worth of samples every 10 s, and almost all of its stacks
// are ones the server already holds; pprof makes it re-send every stack's
// locations, functions, mappings and strings each time (a fleet profile:
// 150 KB gzipped, 550 KB to inflate and decode). A lean push references a
// stack the server holds by its fleet-wide content id (src/profile/identity.ts)
// and defines, in full, only the stacks the sender has not had acknowledged.
//
// Media type `application/vnd.fleetprof.push+protobuf` on POST
// /api/v1/ingest (gzip optional, sniffed as for pprof). Protobuf wire format,
// message Push (version 1):
//
//   message Push {
//     uint32 version = 1;                    // 1
//     repeated string string_table = 2;      // [0] = ""
//     repeated ValueType sample_type = 3;    // as profile.proto: type = 1, unit = 2 (string indices)
//     ValueType period_type = 4;
//     int64 period = 5;
//     int64 time_nanos = 6;
//     int64 duration_nanos = 7;
//     int64 default_sample_type = 8;         // string index
//     // Definitions, in their fleet-wide (normalized) form. The server computes every content id and
//     // checks each id it is given: always a stack's (which covers its locations, their functions and
//     // mappings); the others' are optional (0 = not sent; fleetprof's encoder leaves them out).
//     repeated Mapping mapping = 9;          // { fixed64 id = 1; int64 build_id = 2; int64 filename = 3; uint64 file_offset = 4; uint64 size = 5; }
//     repeated Function function = 10;      // { fixed64 id = 1; int64 name = 2; int64 system_name = 3; int64 filename = 4; int64 start_line = 5; }
//     repeated Location location = 11;      // { fixed64 id = 1; uint64 mapping = 2 (1-based index into mapping, 0 none);
//                                            //   uint64 address = 3 (file-relative; 0 for resolved kernel/JIT frames); bool is_folded = 4;
//                                            //   repeated int64 line = 5 [packed] (pairs: 1-based index into function, line number) }
//     repeated Stack stack = 12;             // { fixed64 id = 1; fixed32 check = 2; repeated uint32 location = 3 [packed] (1-based, leaf first) }
//     repeated LabelSet label_set = 13;      // { repeated uint32 label = 1 [packed] (pairs: key, value string indices) }
//     // Samples, column-wise, one entry per sample:
//     repeated fixed64 sample_stack = 14 [packed];       // stack content id; 0 = the empty stack
//     repeated fixed32 sample_stack_check = 15 [packed]; // the stack's cache check (identity.ts stackCacheCheck)
//     repeated uint32 sample_label_set = 16 [packed];    // 1-based index into label_set, 0 = no labels
//     repeated int64 sample_value = 17 [packed];         // len(sample_type) values per sample
//   }
//
// A stack is either defined in the push (with every location, function and
// mapping it uses: definitions reference each other by index within the
// push, never across pushes) or referenced by id alone. Labels are string
// labels (the server turns them into series labels exactly as for pprof);
// numeric labels (the agent's pid and tid) are not sent, since the server
// drops them from pprof too. A reference the store does not hold is answered
// 409 FP_ERR_UNKNOWN_STACKS with `missingStacks`; the sender then defines
// those stacks. Ids are below 2^53, so fixed64 carries them exactly.

export const PUSH_MEDIA_TYPE = 'application/vnd.fleetprof.push+protobuf';
export const PUSH_VERSION = 1;

export const PUSH_FIELD = {
  version: 1,
  stringTable: 2,
  sampleType: 3,
  periodType: 4,
  period: 5,
  timeNanos: 6,
  durationNanos: 7,
  defaultSampleType: 8,
  mapping: 9,
  function: 10,
  location: 11,
  stack: 12,
  labelSet: 13,
  sampleStack: 14,
  sampleStackCheck: 15,
  sampleLabelSet: 16,
  sampleValue: 17,
} as const;

const TWO32 = 4294967296;

/**
 * A minimal protobuf writer for the push (the encoder writes a few thousand
 * fixed64 ids and packed varints per push; pprof-format's object model has no
 * place for this message, and a generated-code library would be a dependency
 * for one message).
 */
export class ProtoWriter {
  buf: Buffer;
  pos = 0;

  constructor(initialBytes = 1 << 16) {
    this.buf = Buffer.allocUnsafe(initialBytes);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const b = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(b, 0, 0, this.pos);
    this.buf = b;
  }

  /** Unsigned varint of a non-negative integer below 2^53. */
  varint(v: number): void {
    this.ensure(10);
    const buf = this.buf;
    let pos = this.pos;
    while (v >= 128) {
      buf[pos++] = (v % 128) | 128;
      v = Math.floor(v / 128);
    }
    buf[pos++] = v;
    this.pos = pos;
  }

  /** int64 varint: negative values as 10-byte two's complement (|v| < 2^53). */
  int64(v: number): void {
    if (v >= 0) return this.varint(v);
    this.int64Big(BigInt(v));
  }

  /** Unsigned 64-bit varint from its uint32 halves (addresses). */
  varint64(hi: number, lo: number): void {
    if (hi === 0) return this.varint(lo);
    this.ensure(10);
    let x = (BigInt(hi) << 32n) | BigInt(lo);
    while (x >= 128n) {
      this.buf[this.pos++] = Number(x & 127n) | 128;
      x >>= 7n;
    }
    this.buf[this.pos++] = Number(x);
  }

  /** int64 varint of a bigint (time_nanos exceeds 2^53). */
  int64Big(v: bigint): void {
    this.ensure(10);
    let x = BigInt.asUintN(64, v);
    while (x >= 128n) {
      this.buf[this.pos++] = Number(x & 127n) | 128;
      x >>= 7n;
    }
    this.buf[this.pos++] = Number(x);
  }

  key(field: number, wireType: number): void {
    this.varint(field * 8 + wireType);
  }

  /** An id below 2^53 as little-endian fixed64. */
  fixed64(v: number): void {
    this.ensure(8);
    this.buf.writeUInt32LE(v >>> 0, this.pos);
    this.buf.writeUInt32LE(Math.floor(v / TWO32) >>> 0, this.pos + 4);
    this.pos += 8;
  }

  fixed32(v: number): void {
    this.ensure(4);
    this.buf.writeInt32LE(v | 0, this.pos);
    this.pos += 4;
  }

  /** A length-delimited field whose body `fn` writes (length patched in after). */
  message(field: number, fn: () => void): void {
    this.key(field, 2);
    this.ensure(5);
    const lenPos = this.pos;
    this.pos += 5; // a 5-byte padded varint: up to 2^35 bytes, patched below
    const start = this.pos;
    fn();
    let len = this.pos - start;
    for (let i = 0; i < 5; i++) {
      this.buf[lenPos + i] = (len & 127) | (i < 4 ? 128 : 0);
      len = Math.floor(len / 128);
    }
  }

  string(field: number, s: string): void {
    const n = Buffer.byteLength(s);
    this.key(field, 2);
    this.varint(n);
    this.ensure(n);
    this.buf.write(s, this.pos);
    this.pos += n;
  }

  varintField(field: number, v: number): void {
    this.key(field, 0);
    this.varint(v);
  }

  int64Field(field: number, v: number): void {
    this.key(field, 0);
    this.int64(v);
  }

  bytes(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}
