// The flat ingest decoder (server/pprof/decode.ts) agrees with pprof-format
// on random profiles and rejects malformed input that pprof-format would
// silently clip.
import { describe, expect, it } from 'vitest';
import { Function as PFunction, Line, Location, Mapping, Profile, Sample, StringTable, ValueType } from 'pprof-format';
import { addressBig, decodeProfile, stringAt } from '../server/pprof/decode.js';
import { FpError } from '../server/errors.js';
import fc from 'fast-check';

let seed = 12345;
function rnd(): number {
  seed ^= seed << 13;
  seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  seed >>>= 0;
  return seed / 4294967296;
}
const int = (n: number) => Math.floor(rnd() * n);
const big = (v: number | bigint) => BigInt(v);
/** pprof-format reads int64 fields as unsigned; the server reads them signed. */
const i64 = (v: number | bigint) => Number(BigInt.asIntN(64, BigInt(v)));

function randomProfile(): Uint8Array {
  return randomProfileObject().encode();
}

function randomProfileObject(): Profile {
  const st = new StringTable();
  const nFn = 1 + int(30);
  const fnIds = Array.from({ length: nFn }, (_, i) => 1 + i * (1 + int(3)));
  const functions = fnIds.map(
    (id) =>
      new PFunction({
        id,
        name: st.dedup(`fn_${int(1000)}_ünï`),
        systemName: st.dedup(`sys${int(5)}`),
        filename: st.dedup(`file${int(5)}.go`),
        startLine: int(3) === 0 ? -int(100) : int(5000),
      }),
  );
  const mappings = [1, 2].map(
    (id) => new Mapping({ id, memoryStart: 0x400000n * big(id), memoryLimit: 0xffffffff_ffff0000n, fileOffset: big(int(4096)), filename: st.dedup(`/bin/m${id}`), hasFunctions: true }),
  );
  const nLoc = 1 + int(40);
  const locations = Array.from({ length: nLoc }, (_, i) => {
    // Addresses across the whole 64-bit range, incl. kernel ones above 2^53.
    const address = int(3) === 0 ? 0xffffffff_81000000n + big(int(1 << 30)) : big(int(2 ** 31)) * big(int(2 ** 20) + 1);
    const lines = Array.from({ length: int(4) }, () => new Line({ functionId: fnIds[int(nFn)]!, line: int(4) === 0 ? -int(50) : int(100000) }));
    return new Location({ id: 10 + i * 7, mappingId: int(3) === 0 ? 0 : 1 + int(2), address, line: lines, isFolded: int(5) === 0 });
  });
  const types = 1 + int(3);
  const samples = Array.from({ length: int(50) }, () => {
    const depth = int(20);
    return new Sample({
      locationId: Array.from({ length: depth }, () => locations[int(nLoc)]!.id),
      value: Array.from({ length: types }, () => (int(4) === 0 ? -int(1e6) : int(2 ** 40))),
    });
  });
  return new Profile({
    sampleType: Array.from({ length: types }, (_, i) => new ValueType({ type: st.dedup(`t${i}`), unit: st.dedup('count') })),
    sample: samples,
    mapping: mappings,
    location: locations,
    function: functions,
    stringTable: st,
    timeNanos: 1_700_000_000_123_456_789n + big(int(1e9)),
    durationNanos: int(1e10),
    periodType: new ValueType({ type: st.dedup('cpu'), unit: st.dedup('nanoseconds') }),
    period: int(1e8),
    defaultSampleType: int(2) === 0 ? 0 : st.dedup('t0'),
  });
}

describe('flat pprof decoder', () => {
  it('agrees with pprof-format on random profiles', () => {
    for (let round = 0; round < 200; round++) {
      // The reference is the encoded object (pprof-format's own decoder reads
      // int64 fields as unsigned and loses precision on negative values).
      const ref = randomProfileObject();
      const buf = Buffer.from(ref.encode());
      expect(Profile.decode(buf).sample.length).toBe(ref.sample.length);
      const p = decodeProfile(buf);
      expect(p.nStrings).toBe(ref.stringTable.strings.length);
      for (let i = 0; i < p.nStrings; i++) expect(stringAt(p, i)).toBe(ref.stringTable.strings[i]);
      expect(p.sampleTypes).toEqual(ref.sampleType.map((t) => ({ type: Number(t.type), unit: Number(t.unit) })));
      expect(p.nSamples).toBe(ref.sample.length);
      ref.sample.forEach((s, i) => {
        expect(Array.from(p.sampleLocs.subarray(p.sampleStart[i], p.sampleStart[i + 1]))).toEqual(s.locationId.map(Number));
        expect(Array.from(p.sampleValues.subarray(p.sampleValueStart[i], p.sampleValueStart[i + 1]))).toEqual(s.value.map(i64));
      });
      expect(p.mappings.map((m) => [m.id, m.memoryStart, m.memoryLimit, m.fileOffset, m.filename, m.hasFunctions])).toEqual(
        ref.mapping.map((m) => [Number(m.id), big(m.memoryStart), big(m.memoryLimit), big(m.fileOffset), Number(m.filename), m.hasFunctions]),
      );
      expect(p.nLocations).toBe(ref.location.length);
      ref.location.forEach((l, k) => {
        expect(p.locId[k]).toBe(Number(l.id));
        expect(p.locMapping[k]).toBe(Number(l.mappingId));
        expect(addressBig(p.locAddrHi[k]!, p.locAddrLo[k]!)).toBe(big(l.address));
        expect(p.locFolded[k] === 1).toBe(l.isFolded);
        const lines: number[] = [];
        for (let j = p.locLineStart[k]!; j < p.locLineStart[k + 1]!; j++) lines.push(p.lineFn[j]!, p.lineNo[j]!);
        expect(lines).toEqual(l.line.flatMap((x) => [Number(x.functionId), i64(x.line)]));
      });
      expect(p.nFunctions).toBe(ref.function.length);
      ref.function.forEach((f, k) => {
        expect([p.fnId[k], p.fnName[k], p.fnSystemName[k], p.fnFilename[k], p.fnStartLine[k]]).toEqual(
          [Number(f.id), Number(f.name), Number(f.systemName), Number(f.filename), i64(f.startLine)],
        );
      });
      expect(p.timeNanos).toBe(big(ref.timeNanos));
      expect(p.durationNanos).toBe(i64(ref.durationNanos));
      expect(p.period).toBe(i64(ref.period));
      expect(p.defaultSampleType).toBe(Number(ref.defaultSampleType));
    }
  });

  it('rejects every truncation that cuts a field (pprof-format clips them silently)', () => {
    for (let round = 0; round < 20; round++) {
      const buf = Buffer.from(randomProfile());
      // Offsets where a top-level field ends: cutting exactly there is a valid, shorter message.
      const ends = new Set<number>([0]);
      decodeProfile(buf); // valid as a whole
      let pos = 0;
      while (pos < buf.length) {
        let key = 0;
        let mul = 1;
        let b: number;
        do {
          b = buf[pos++]!;
          key += (b & 127) * mul;
          mul *= 128;
        } while (b >= 128);
        if ((key & 7) === 2) {
          let len = 0;
          mul = 1;
          do {
            b = buf[pos++]!;
            len += (b & 127) * mul;
            mul *= 128;
          } while (b >= 128);
          pos += len;
        } else {
          do b = buf[pos++]!;
          while (b >= 128);
        }
        ends.add(pos);
      }
      for (let cut = 1; cut < buf.length; cut += 1 + int(7)) {
        const part = buf.subarray(0, cut);
        if (ends.has(cut)) expect(() => decodeProfile(part)).not.toThrow();
        else {
          let err: unknown;
          try {
            decodeProfile(part);
          } catch (e) {
            err = e;
          }
          expect(err).toBeInstanceOf(FpError);
          expect((err as FpError).code).toBe('FP_ERR_BAD_PROTOBUF');
        }
      }
    }
  });

  it('rejects bad wire types, field 0 and over-long varints', () => {
    const bad = (bytes: number[], msg: RegExp) => expect(() => decodeProfile(Buffer.from(bytes))).toThrow(msg);
    bad([0x0a, 0xff, 0xff, 0x03, 0x01, 0x02], /runs past the end/);
    bad([0x08, 0x01], /wire type 0 for field sample_type/);
    bad([0x00, 0x01], /field number 0/);
    bad([0x50, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], /longer than 10 bytes/);
    bad([0x12, 0x03, 0x0d, 0x01, 0x02], /wire type 5 for a repeated scalar/);
    bad([0x3f], /unsupported wire type 7/);
  });
});

describe('flat pprof decoder, packed location ids', () => {
  // The packed sample location ids are read with inline one- to three-byte
  // fast paths (decode.ts): ids of every varint length, and cuts inside them.
  it('reads ids of every varint length as pprof-format does, and refuses a cut inside a packed field', () => {
    const id = fc.oneof(fc.integer({ min: 1, max: 127 }), fc.integer({ min: 128, max: 16383 }), fc.integer({ min: 16384, max: 2097151 }), fc.integer({ min: 2097152, max: 2 ** 40 }));
    fc.assert(
      fc.property(fc.array(fc.array(id, { maxLength: 40 }), { minLength: 1, maxLength: 20 }), (stacks) => {
        const st = new StringTable();
        const ref = new Profile({
          sampleType: [new ValueType({ type: st.dedup('samples'), unit: st.dedup('count') })],
          sample: stacks.map((ids, i) => new Sample({ locationId: ids, value: [i + 1] })),
          stringTable: st,
        });
        const buf = Buffer.from(ref.encode());
        const decoded = Profile.decode(buf);
        const p = decodeProfile(buf);
        expect(p.nSamples).toBe(stacks.length);
        decoded.sample.forEach((s, i) => {
          expect(Array.from(p.sampleLocs.subarray(p.sampleStart[i], p.sampleStart[i + 1]))).toEqual(s.locationId.map(Number));
        });
        // The first sample's packed ids cut at every byte, re-wrapped with honest lengths:
        // a cut between two varints is a valid shorter list, a cut inside one is an error.
        const ids = stacks[0]!;
        const packed: number[] = [];
        const boundaries = new Map<number, number>([[0, 0]]); // byte offset -> ids before it
        ids.forEach((v, i) => {
          let x = v;
          while (x >= 128) {
            packed.push((x % 128) | 128);
            x = Math.floor(x / 128);
          }
          packed.push(x);
          boundaries.set(packed.length, i + 1);
        });
        const varint = (v: number) => {
          const out: number[] = [];
          while (v >= 128) {
            out.push((v & 127) | 128);
            v >>>= 7;
          }
          out.push(v);
          return out;
        };
        for (let k = 0; k <= packed.length; k++) {
          const inner = [0x0a, ...varint(k), ...packed.slice(0, k)];
          const profile = Buffer.from([0x12, ...varint(inner.length), ...inner]);
          const n = boundaries.get(k);
          if (n === undefined) expect(() => decodeProfile(profile)).toThrow(FpError);
          else expect(Array.from(decodeProfile(profile).sampleLocs)).toEqual(ids.slice(0, n));
        }
      }),
      { numRuns: 300 },
    );
  });
});
