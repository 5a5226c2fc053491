import { gzip } from 'node:zlib';
import { promisify } from 'node:util';
import { Function as PprofFunction, Label, Line, Location, Mapping, Profile, Sample, StringTable, ValueType } from 'pprof-format';
import type { FrameKind } from './api-types.js';
import { JIT_MAPPING_FILE, jitRuntimeOfBinary, unnamedJitFrameName } from './frame-kind.js';

const gzipAsync = promisify(gzip);

/** What the profile needs to know of one resolved stack frame. */
export interface ProfileFrame {
  address: bigint;
  functionName: string | null;
  kind: FrameKind;
  /** Binary path, '[kernel.kallsyms]' (or '.../<module>') or '[jit]'; '' for none. */
  mappingFile: string;
  buildId: string | null;
  mappingStart: bigint;
  mappingEnd: bigint;
  mappingFileOffset: bigint;
  /** A source location the symbolizer knew (JIT perf maps carry "file.js:line"). */
  sourceFile?: string;
}

export interface SampleLabels {
  pid: number;
  tid: number;
  /** The thread's command name as the kernel had it at sample time. */
  comm: string;
  /** The process's name (its main thread's comm), when known. */
  processName?: string;
  /** Where the process runs (container_id, namespace, pod, container, service_name, systemd_unit): string labels. */
  attribution?: Readonly<Record<string, string | undefined>>;
}

export interface CpuProfileOptions {
  periodNs: number;
  startTimeNs: bigint;
  durationNs?: bigint;
  /** Lines shown by `pprof -comments`: e.g. what was dropped and why. */
  comments?: string[];
}

type MappingId = number;
type LocationId = number;
type FunctionId = number;

interface InternedStack {
  pid: number;
  /** Same id for the same location ids. */
  id: number;
  locationIds: LocationId[];
}

/**
 * Accumulates CPU samples (each a leaf-first stack of resolved frames) and
 * writes them as a pprof profile with two sample types, samples/count and
 * cpu/nanoseconds. Functions, locations, mappings and identical samples are
 * deduplicated as they are added.
 */
export class CpuProfileBuilder {
  private readonly strings = new StringTable();
  private readonly mappings: Mapping[] = [];
  private readonly locations: Location[] = [];
  private readonly functions: PprofFunction[] = [];
  private readonly mappingIds = new Map<string, MappingId>();
  private readonly locationIds = new Map<string, LocationId>();
  private readonly functionIds = new Map<string, FunctionId>();
  private readonly locationOfFrame = new WeakMap<ProfileFrame, { pid: number; id: LocationId }>();
  /** Location ids of the frame arrays seen, per array (with the process they were resolved for). */
  private readonly stackOfFrames = new WeakMap<readonly ProfileFrame[], InternedStack>();
  /** Stack id by its location ids (joined): samples are keyed by it. */
  private readonly stackIds = new Map<string, number>();
  /** Sample key (stack id + labels) to index in samples. */
  private readonly sampleIndex = new Map<string, number>();
  private readonly samples: { locationIds: LocationId[]; labels: SampleLabels; count: number }[] = [];
  private options: CpuProfileOptions;
  private totalCount = 0;
  /** Process name per pid, for naming its unnamed JIT code. */
  private readonly processNames = new Map<number, string>();
  /** JIT runtime per pid, from a runtime binary seen on its stacks. */
  private readonly runtimes = new Map<number, number>();
  /** jitRuntimeOfBinary by binary path: a process without a runtime has every new stack's frames checked. */
  private readonly runtimeOfFile = new Map<string, number>();
  /** Locations of unnamed JIT code ("[node JIT, ...]"). */
  private readonly unnamedJit = new Set<LocationId>();

  constructor(options: CpuProfileOptions) {
    this.options = options;
  }

  /** Amends the header fields (duration, comments) once they are known. */
  withOptions(options: Partial<CpuProfileOptions>): this {
    this.options = { ...this.options, ...options };
    return this;
  }

  get sampleCount(): number {
    return this.totalCount;
  }

  /** Frames leaf first (pprof's order): kernel frames, then user frames. */
  addSample(frames: readonly ProfileFrame[], count: number, labels: SampleLabels): void {
    this.processNames.set(labels.pid, labels.processName ?? labels.comm);
    // Callers hand the same frame arrays back drain after drain (the collector
    // keeps symbolized stacks): their location ids are worked out once per
    // array and process, not once per sample and frame.
    let stack = this.stackOfFrames.get(frames);
    if (stack === undefined || stack.pid !== labels.pid) {
      stack = this.internStack(frames, labels.pid);
      this.stackOfFrames.set(frames, stack);
    }
    const key = `${stack.id}|${labels.pid}|${labels.tid}|${labels.comm}|${labels.processName ?? ''}|${this.attributionKey(labels.attribution)}`;
    const existing = this.sampleIndex.get(key);
    if (existing !== undefined) {
      this.samples[existing]!.count += count;
    } else {
      this.sampleIndex.set(key, this.samples.length);
      this.samples.push({ locationIds: stack.locationIds, labels, count });
    }
    this.totalCount += count;
  }

  private internStack(frames: readonly ProfileFrame[], pid: number): InternedStack {
    if (!this.runtimes.has(pid)) {
      for (const f of frames) {
        if (f.kind !== 'native') continue;
        let rt = this.runtimeOfFile.get(f.mappingFile);
        if (rt === undefined) this.runtimeOfFile.set(f.mappingFile, (rt = jitRuntimeOfBinary(f.mappingFile)));
        if (rt >= 0) {
          this.runtimes.set(pid, rt);
          break;
        }
      }
    }
    const locationIds: LocationId[] = [];
    for (const frame of frames) {
      const id = this.locationId(frame, pid);
      // A run of unnamed JIT frames is one frame: a tower of the same name says no more.
      const prev = locationIds[locationIds.length - 1];
      if (prev !== undefined && this.unnamedJit.has(id) && this.unnamedJit.has(prev)) continue;
      locationIds.push(id);
    }
    const stackKey = locationIds.join(',');
    let id = this.stackIds.get(stackKey);
    if (id === undefined) {
      id = this.stackIds.size;
      this.stackIds.set(stackKey, id);
    }
    return { pid, id, locationIds };
  }

  build(): Profile {
    const s = (value: string): number => this.strings.dedup(value);
    const periodNs = this.options.periodNs;
    const sampleType = [new ValueType({ type: s('samples'), unit: s('count') }), new ValueType({ type: s('cpu'), unit: s('nanoseconds') })];
    const keyPid = s('pid');
    const keyTid = s('tid');
    const keyComm = s('comm');
    const keyProcess = s('process');
    const samples = this.samples.map(({ locationIds, labels, count }) => {
      const label = [new Label({ key: keyPid, num: labels.pid }), new Label({ key: keyTid, num: labels.tid }), new Label({ key: keyComm, str: s(labels.comm) })];
      if (labels.processName !== undefined) label.push(new Label({ key: keyProcess, str: s(labels.processName) }));
      for (const [name, value] of Object.entries(labels.attribution ?? {})) if (value !== undefined) label.push(new Label({ key: s(name), str: s(value) }));
      return new Sample({ locationId: locationIds, value: [count, count * periodNs], label });
    });
    return new Profile({
      sampleType,
      sample: samples,
      mapping: this.mappings,
      location: this.locations,
      function: this.functions,
      stringTable: this.strings,
      timeNanos: this.options.startTimeNs,
      durationNanos: this.options.durationNs ?? 0,
      periodType: new ValueType({ type: s('cpu'), unit: s('nanoseconds') }),
      period: periodNs,
      comment: (this.options.comments ?? []).map(s),
      defaultSampleType: s('cpu'),
    });
  }

  encode(): Uint8Array {
    return this.build().encode();
  }

  async encodeGzip(): Promise<Buffer> {
    return gzipAsync(this.encode());
  }

  /** Attribution label sets are shared per process: their key string is built once per set. */
  private readonly attributionKeys = new WeakMap<object, string>();

  private attributionKey(attribution: SampleLabels['attribution']): string {
    if (attribution === undefined) return '';
    let key = this.attributionKeys.get(attribution);
    if (key === undefined) {
      key = JSON.stringify(attribution);
      this.attributionKeys.set(attribution, key);
    }
    return key;
  }

  private mappingId(frame: ProfileFrame, pid: number): MappingId | 0 {
    if (frame.mappingFile === '' && frame.kind !== 'jit') return 0;
    // User mappings are per process (the same library sits at other addresses
    // in each); kernel and JIT pseudo-mappings are shared.
    const owner = frame.kind === 'native' || frame.kind === 'unknown' ? pid : 0;
    const key = `${owner}|${frame.mappingFile}|${frame.mappingStart}`;
    let id = this.mappingIds.get(key);
    if (id === undefined) {
      id = this.mappings.length + 1;
      this.mappingIds.set(key, id);
      const resolved = frame.functionName !== null;
      this.mappings.push(
        new Mapping({
          id,
          memoryStart: frame.mappingStart,
          memoryLimit: frame.mappingEnd,
          fileOffset: frame.mappingFileOffset,
          filename: this.strings.dedup(frame.mappingFile),
          buildId: this.strings.dedup(frame.buildId ?? ''),
          hasFunctions: resolved,
        }),
      );
    } else if (frame.functionName !== null) {
      this.mappings[id - 1]!.hasFunctions = true;
    }
    return id;
  }

  private functionId(name: string, file: string): FunctionId {
    const key = `${name}\u0000${file}`;
    let id = this.functionIds.get(key);
    if (id === undefined) {
      id = this.functions.length + 1;
      this.functionIds.set(key, id);
      const nameIndex = this.strings.dedup(name);
      this.functions.push(new PprofFunction({ id, name: nameIndex, systemName: nameIndex, filename: this.strings.dedup(file) }));
    }
    return id;
  }

  private locationId(frame: ProfileFrame, pid: number): LocationId {
    // Callers hand the same frame objects back sample after sample (the
    // collector caches symbolized stacks): remember their location instead of
    // building its key string again. Native frames' mappings are per process.
    const known = this.locationOfFrame.get(frame);
    if (known !== undefined && known.pid === pid) return known.id;
    const id = this.locationIdByKey(frame, pid);
    this.locationOfFrame.set(frame, { pid, id });
    return id;
  }

  private locationIdByKey(original: ProfileFrame, pid: number): LocationId {
    const anonymous = isAnonymousCode(original);
    // Code in anonymous executable memory without a perf-map name is JIT
    // output: named for its runtime with how to get names, kept as a JIT frame.
    const frame: ProfileFrame = anonymous
      ? { ...original, kind: 'jit', mappingFile: JIT_MAPPING_FILE, functionName: unnamedJitFrameName(this.runtimes.get(pid) ?? -1, this.processNames.get(pid) ?? '') }
      : original;
    const mappingId = this.mappingId(frame, pid);
    const key = `${mappingId}|${frame.address}|${frame.functionName ?? ''}`;
    let id = this.locationIds.get(key);
    if (id === undefined) {
      id = this.locations.length + 1;
      this.locationIds.set(key, id);
      const line =
        frame.functionName === null ? [] : [new Line({ functionId: this.functionId(frame.functionName, frame.sourceFile ?? '') })];
      this.locations.push(new Location({ id, mappingId, address: frame.address, line }));
      if (anonymous) this.unnamedJit.add(id);
    }
    return id;
  }
}

/** An unsymbolized frame in anonymous (not file-backed) memory of a known mapping. */
function isAnonymousCode(frame: ProfileFrame): boolean {
  return frame.functionName === null && frame.kind === 'unknown' && (frame.mappingFile === '' || frame.mappingFile.startsWith('[anon')) && frame.mappingEnd > frame.mappingStart;
}
