// Stack values -> a gzipped pprof that `go tool pprof` reads. Only the
// symbols the samples use are emitted, under compact local ids.
//
// Mappings are rebuilt so that `pprof`, given the binary, can symbolize what
// the host could not: locations are stored with file-relative addresses
// (ingest.ts), so each native binary becomes one mapping whose memory range
// starts at its file offset (memory_start = file_offset); then runtime
// address = file offset, and pprof's base computation (start - offset +
// segment offset - segment vaddr) lands on the ELF symbol address. A mapping
// is marked has_functions only when all its locations have names, so pprof
// symbolizes the rest.
//
// Labels: every sample carries the labels of the series it came from, so
// `pprof -tagfocus=comm=...` and `-tagroot=comm` work on merged downloads.
import { gzip } from 'node:zlib';
import { promisify } from 'node:util';
import { Function as PFunction, Label, Line, Location, Mapping, Profile, Sample, StringTable, ValueType } from 'pprof-format';
import type { FunctionRow, MappingRow, SampleTypeDesc } from '../store/store.js';
import type { ResolvedLocation, Symbols } from '../store/symbols.js';
import { frameKindOfMapping } from '../../src/profile/frame-kind.js';

const gzipAsync = promisify(gzip);

export interface SampleGroup {
  /** Labels every sample of the group carries (the series labels). */
  labels: Record<string, string>;
  stackIds: ArrayLike<number>;
  /** One value per sample type per stack: values[i * nTypes + t]. */
  values: ArrayLike<number>;
}

export interface PprofOut {
  sampleTypes: SampleTypeDesc[];
  groups: SampleGroup[];
  /** Only millisecond precision is kept. */
  timeNanos: number;
  durationNanos: number;
  periodType: SampleTypeDesc | undefined;
  period: number;
  defaultSampleType?: string;
}

/** int64 fields: pass huge values as bigint so they encode exactly. */
const i64 = (v: number): number | bigint => (Number.isSafeInteger(v) ? v : BigInt(Math.round(v)));

export async function encodePprof(sym: Symbols, out: PprofOut): Promise<Buffer> {
  const st = new StringTable();
  const vt = (t: SampleTypeDesc) => new ValueType({ type: st.dedup(t.type), unit: st.dedup(t.unit) });
  const mappingOut = new Map<MappingRow, { m: Mapping; named: boolean; native: boolean; maxAddress: bigint }>();
  const functionOut = new Map<FunctionRow, PFunction>();
  const locationOut = new Map<ResolvedLocation, Location>();
  const mappingFor = (r: MappingRow) => {
    let e = mappingOut.get(r);
    if (!e) {
      const native = frameKindOfMapping(r.filename) === 'native';
      const m = new Mapping({
        id: mappingOut.size + 1,
        memoryStart: native ? r.fileOffset : 0,
        memoryLimit: native ? r.fileOffset + r.size : 0,
        fileOffset: native ? r.fileOffset : 0,
        filename: st.dedup(r.filename),
        buildId: st.dedup(r.buildId),
      });
      e = { m, named: true, native, maxAddress: 0n };
      mappingOut.set(r, e);
    }
    return e;
  };
  const addLocation = (l: ResolvedLocation): number => {
    const known = locationOut.get(l);
    if (known) return known.id as number;
    const localId = locationOut.size + 1;
    let mappingId = 0;
    if (l.mapping) {
      const e = mappingFor(l.mapping);
      mappingId = e.m.id as number;
      if (l.lines.length === 0) e.named = false;
      if (l.address > e.maxAddress) e.maxAddress = l.address;
    }
    const lines: Line[] = [];
    for (const { fn: r, line } of l.lines) {
      let fid = 0;
      if (r) {
        let f = functionOut.get(r);
        if (!f) {
          f = new PFunction({ id: functionOut.size + 1, name: st.dedup(r.name), systemName: st.dedup(r.systemName), filename: st.dedup(r.filename), startLine: r.startLine });
          functionOut.set(r, f);
        }
        fid = f.id as number;
      }
      lines.push(new Line({ functionId: fid, line }));
    }
    locationOut.set(l, new Location({ id: localId, mappingId, address: l.address, line: lines, isFolded: l.isFolded }));
    return localId;
  };

  const nTypes = out.sampleTypes.length;
  const samples: Sample[] = [];
  for (const g of out.groups) {
    const labels = Object.entries(g.labels).map(([k, v]) => new Label({ key: st.dedup(k), str: st.dedup(v) }));
    for (let i = 0; i < g.stackIds.length; i++) {
      const vals: (number | bigint)[] = [];
      let any = false;
      for (let t = 0; t < nTypes; t++) {
        const v = g.values[i * nTypes + t]!;
        if (v !== 0) any = true;
        vals.push(i64(v));
      }
      if (!any) continue;
      const locs = (sym.get(g.stackIds[i]!)?.locations ?? []).map(addLocation);
      samples.push(new Sample({ locationId: locs, value: vals, label: labels }));
    }
  }
  for (const e of mappingOut.values()) {
    e.m.hasFunctions = e.named;
    // A location past the first seen segment (another executable segment of the binary) still falls in the range.
    if (e.native && e.maxAddress >= BigInt(e.m.memoryLimit)) e.m.memoryLimit = e.maxAddress + 1n;
  }
  const defaultType = out.defaultSampleType ?? '';
  const profile = new Profile({
    sampleType: out.sampleTypes.map(vt),
    sample: samples,
    mapping: [...mappingOut.values()].map((e) => e.m),
    location: [...locationOut.values()],
    function: [...functionOut.values()],
    stringTable: st,
    timeNanos: BigInt(Math.round(out.timeNanos / 1e6)) * 1_000_000n,
    durationNanos: i64(out.durationNanos),
    periodType: out.periodType ? vt(out.periodType) : undefined,
    period: i64(out.period),
    defaultSampleType: defaultType === '' ? 0 : st.dedup(defaultType),
  });
  return gzipAsync(profile.encode());
}
