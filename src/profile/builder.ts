import { gzip } from 'node:zlib';
import { promisify } from 'node:util';
import { Function as PprofFunction, Label, Line, Location, Mapping, Profile, Sample, StringTable, ValueType } from 'pprof-format';
import type { FrameKind } from './api-types.js';
import { JIT_MAPPING_FILE, jitRuntimeOfBinary, unnamedJitFrameName } from './frame-kind.js';
import type { FunctionDef, LocationDef, MappingContext, PushIdentityCache } from './push-identity-cache.js';
import type { LeanProfile, LeanStack } from './push-encode.js';

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
  /**
   * Kept across builders (intervals) by the agent when it sends lean pushes:
   * the fleet-wide ids of the locations and stacks added are looked up there
   * (computed once per frame and frame array it keeps), and buildLean() gives
   * the profile in the form a lean push is encoded from.
   */
  identities?: PushIdentityCache;
}

type MappingId = number;
type LocationId = number;
type FunctionId = number;

interface InternedStack {
  pid: number;
  /** Same id for the same location ids. */
  id: number;
  locationIds: LocationId[];
  /** Its fleet-wide id, check and locations (with options.identities); undefined for the empty stack. */
  lean?: LeanStack;
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
  private readonly samples: { locationIds: LocationId[]; labels: SampleLabels; count: number; stack: InternedStack }[] = [];
  /** With options.identities: each location's, function's and mapping's fleet-wide definition, by id - 1. */
  private readonly locationDefs: LocationDef[] = [];
  private readonly functionDefs: FunctionDef[] = [];
  private readonly mappingDefs: MappingContext[] = [];
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
      this.samples.push({ locationIds: stack.locationIds, labels, count, stack });
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
    const identities = this.options.identities;
    if (identities === undefined || locationIds.length === 0) return { pid, id, locationIds };
    const locs = locationIds.map((l) => this.locationDefs[l - 1]!);
    const { id: gid, check } = identities.stack(locs);
    return { pid, id, locationIds, lean: { id: gid, check, locs } };
  }

  /**
   * The samples added so far as a lean push is encoded from them
   * (push-encode.ts): the same content preparePush(this.build()) gives, from
   * the identities kept in options.identities instead of hashing the profile.
   * Samples are merged per (stack, string labels) in the order build() writes
   * them; numeric labels (pid, tid) are not sent.
   */
  buildLean(): LeanProfile {
    if (this.options.identities === undefined) throw new Error('buildLean needs the identities option');
    const periodNs = this.options.periodNs;
    const stacks: LeanStack[] = [];
    const stackIndex = new Map<number, number>(); // stack id -> index in stacks
    const labelSets: string[][] = [];
    const labelSetIndex = new Map<string, number>();
    const merged = new Map<number, number>(); // (label set, stack) -> sample
    const keyRange = this.samples.length + 1;
    const sampleStack: number[] = [];
    const sampleLabelSet: number[] = [];
    const values: number[] = [];
    for (const { labels, count, stack } of this.samples) {
      let si = -1;
      if (stack.lean !== undefined) {
        const known = stackIndex.get(stack.lean.id);
        if (known !== undefined) si = known;
        else {
          si = stacks.length;
          stackIndex.set(stack.lean.id, si);
          stacks.push(stack.lean);
        }
      }
      // String labels as build() writes them; an empty value is string 0 there, which a push does not send.
      const processName = labels.processName ?? '';
      const attribution = this.attributionKey(labels.attribution);
      const lk = `${labels.comm}\u0000${processName}\u0000${attribution}`;
      let ls = labelSetIndex.get(lk);
      if (ls === undefined) {
        const pairs: string[] = [];
        if (labels.comm !== '') pairs.push('comm', labels.comm);
        if (processName !== '') pairs.push('process', processName);
        for (const [name, value] of Object.entries(labels.attribution ?? {})) if (value !== undefined && value !== '') pairs.push(name, value);
        ls = pairs.length === 0 ? -1 : labelSets.push(pairs) - 1;
        labelSetIndex.set(lk, ls);
      }
      const mk = (ls + 1) * keyRange + (si + 1);
      let i = merged.get(mk);
      if (i === undefined) {
        i = sampleStack.length;
        merged.set(mk, i);
        sampleStack.push(si);
        sampleLabelSet.push(ls);
        values.push(0, 0);
      }
      values[2 * i]! += count;
      values[2 * i + 1]! += count * periodNs;
    }
    return {
      sampleTypes: [
        ['samples', 'count'],
        ['cpu', 'nanoseconds'],
      ],
      periodType: ['cpu', 'nanoseconds'],
      period: periodNs,
      timeNanos: this.options.startTimeNs,
      durationNanos: Number(this.options.durationNs ?? 0n),
      defaultSampleType: 'cpu',
      stacks,
      labelSets,
      sampleStack: Int32Array.from(sampleStack),
      sampleLabelSet: Int32Array.from(sampleLabelSet),
      sampleValues: Float64Array.from(values),
      nSamples: sampleStack.length,
    };
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
      if (this.options.identities !== undefined) this.mappingDefs.push(this.options.identities.mapping(this.mappings[id - 1]!, this.strings.strings));
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
      if (this.options.identities !== undefined) this.functionDefs.push(this.options.identities.function(name, file, key));
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
      const identities = this.options.identities;
      if (identities !== undefined) {
        const fn = line.length === 0 ? undefined : this.functionDefs[Number(line[0]!.functionId) - 1];
        this.locationDefs.push(identities.location(mappingId === 0 ? undefined : this.mappingDefs[mappingId - 1], frame.address, fn));
      }
    }
    return id;
  }
}

/** An unsymbolized frame in anonymous (not file-backed) memory of a known mapping. */
function isAnonymousCode(frame: ProfileFrame): boolean {
  return frame.functionName === null && frame.kind === 'unknown' && (frame.mappingFile === '' || frame.mappingFile.startsWith('[anon')) && frame.mappingEnd > frame.mappingStart;
}
