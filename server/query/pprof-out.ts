// Stack values -> a gzipped pprof that `go tool pprof` reads. Only the
// symbols the samples use are emitted; ids are the global ids (non-zero).
import { gzip } from 'node:zlib';
import { promisify } from 'node:util';
import { Function as PFunction, Line, Location, Mapping, Profile, Sample, StringTable, ValueType } from 'pprof-format';
import type { SampleTypeDesc } from '../store/sqlite-store.js';
import type { SymbolDb } from '../store/symbols.js';

const gzipAsync = promisify(gzip);

export interface PprofOut {
  sampleTypes: SampleTypeDesc[];
  /** Per stack id, one value per sample type. */
  stackIds: ArrayLike<number>;
  values: ArrayLike<number>; // stackIds.length * sampleTypes.length
  /** Only millisecond precision is kept. */
  timeNanos: number;
  durationNanos: number;
  periodType: SampleTypeDesc | undefined;
  period: number;
  defaultSampleType?: string;
}

/** int64 fields: pass huge values as bigint so they encode exactly. */
const i64 = (v: number): number | bigint => (Number.isSafeInteger(v) ? v : BigInt(Math.round(v)));

export async function encodePprof(sym: SymbolDb, out: PprofOut): Promise<Buffer> {
  const st = new StringTable();
  const vt = (t: SampleTypeDesc) => new ValueType({ type: st.dedup(t.type), unit: st.dedup(t.unit) });
  const mappings = new Map<number, Mapping>();
  const functions = new Map<number, PFunction>();
  const locations = new Map<number, Location>();
  const addLocation = (id: number) => {
    if (locations.has(id)) return;
    const l = sym.locations[id];
    if (!l) {
      locations.set(id, new Location({ id, address: 0 }));
      return;
    }
    if (l.mappingId !== 0 && !mappings.has(l.mappingId)) {
      const m = sym.mappings[l.mappingId]!;
      mappings.set(
        l.mappingId,
        new Mapping({
          id: l.mappingId,
          memoryStart: m.memoryStart,
          memoryLimit: m.memoryLimit,
          fileOffset: m.fileOffset,
          filename: st.dedup(sym.strings[m.filename]!),
          buildId: st.dedup(sym.strings[m.buildId]!),
          hasFunctions: (m.flags & 1) !== 0,
          hasFilenames: (m.flags & 2) !== 0,
          hasLineNumbers: (m.flags & 4) !== 0,
          hasInlineFrames: (m.flags & 8) !== 0,
        }),
      );
    }
    const lines: Line[] = [];
    for (let i = 0; i < l.lines.length; i += 2) {
      const fid = l.lines[i]!;
      if (!functions.has(fid)) {
        const f = sym.functions[fid]!;
        functions.set(
          fid,
          new PFunction({
            id: fid,
            name: st.dedup(sym.strings[f.name]!),
            systemName: st.dedup(sym.strings[f.systemName]!),
            filename: st.dedup(sym.strings[f.filename]!),
            startLine: f.startLine,
          }),
        );
      }
      lines.push(new Line({ functionId: fid, line: l.lines[i + 1]! }));
    }
    locations.set(id, new Location({ id, mappingId: l.mappingId, address: l.address, line: lines, isFolded: l.isFolded }));
  };

  const nTypes = out.sampleTypes.length;
  const samples: Sample[] = [];
  const parent = sym.stackParent.data;
  const location = sym.stackLocation.data;
  for (let i = 0; i < out.stackIds.length; i++) {
    const vals: (number | bigint)[] = [];
    let any = false;
    for (let t = 0; t < nTypes; t++) {
      const v = out.values[i * nTypes + t]!;
      if (v !== 0) any = true;
      vals.push(i64(v));
    }
    if (!any) continue;
    const locs: number[] = [];
    for (let s = out.stackIds[i]!; s > 0; s = parent[s]!) {
      addLocation(location[s]!);
      locs.push(location[s]!);
    }
    samples.push(new Sample({ locationId: locs, value: vals }));
  }
  const defaultType = out.defaultSampleType ?? '';
  const profile = new Profile({
    sampleType: out.sampleTypes.map(vt),
    sample: samples,
    mapping: [...mappings.values()],
    location: [...locations.values()],
    function: [...functions.values()],
    stringTable: st,
    timeNanos: BigInt(Math.round(out.timeNanos / 1e6)) * 1_000_000n,
    durationNanos: i64(out.durationNanos),
    periodType: out.periodType ? vt(out.periodType) : undefined,
    period: i64(out.period),
    defaultSampleType: defaultType === '' ? 0 : st.dedup(defaultType),
  });
  return gzipAsync(profile.encode());
}
