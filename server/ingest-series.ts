// What both ingest formats share once every sample has its stack's content
// id: splitting samples into series by their labels, and the batch handed to
// the store. A pprof (ingest.ts) and a lean push (ingest-push.ts) of the same
// agent profile therefore give the same series and the same stored rows.
//
// Labels: string sample labels become series labels (as Pyroscope does), so a
// whole-host profile keeps `comm`/`process` per sample. Labels named in
// dropSampleLabels (default pid,tid: one series per process or thread would
// grow the series table with every process start) and numeric labels (e.g.
// the agent's pid/tid) are dropped and their samples summed. Request labels
// win over sample labels of the same name (the operator's label is the
// deployment's truth); label names are sanitized to [a-zA-Z_][a-zA-Z0-9_]*.
import { StackAccumulator } from './store/accumulator.js';
import { SEED, textId } from '../src/profile/identity.js';
import type { IdMap } from './store/id-map.js';
import { canonicalLabels, typeDescriptor, type IngestBatch, type NewProfile, type ProfileStore, type ProfileType, type SampleTypeDesc, type SymbolRows } from './store/store.js';
import { errIdCollision } from './errors.js';
import { stringAt, type RawProfile } from './pprof/decode.js';

export const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
export const MAX_LABELS = 32;
export const MAX_LABEL_VALUE_LENGTH = 1024;

export const DEFAULT_DROP_SAMPLE_LABELS: readonly string[] = ['pid', 'tid'];

export interface IngestOptions {
  /** Sample label names not turned into series labels (high cardinality). */
  dropSampleLabels: ReadonlySet<string>;
}

export const DEFAULT_INGEST_OPTIONS: IngestOptions = { dropSampleLabels: new Set(DEFAULT_DROP_SAMPLE_LABELS) };

export interface IngestResult {
  /** Id of the first stored profile (one per series the samples fall into). */
  id: number;
  ids: number[];
  seriesIds: number[];
  timeMs: number;
  samples: number;
  stacks: number;
  /** Sample labels not kept: configured as dropped, numeric, or invalid (too long, too many). */
  droppedLabels: number;
}

const SAFE_LABEL_NAME = /[^a-zA-Z0-9_]/g;
const sanitizeLabelName = (k: string) => {
  const s = k.replace(SAFE_LABEL_NAME, '_');
  return /^[a-zA-Z_]/.test(s) ? s : '_' + s;
};

// Accumulators are pooled across requests: a profile's takes ~160 KB of typed
// arrays (hash table, ids, values, dense ids), and making them per request
// was garbage the collector had to sweep at every push.
const POOLED_ACCUMULATORS = 8;
const POOLED_MAX_SLOTS = 1 << 16;
const accumulatorPool: StackAccumulator[] = [];

function takeAccumulator(nTypes: number, expected: number): StackAccumulator {
  for (let i = accumulatorPool.length - 1; i >= 0; i--) {
    const acc = accumulatorPool[i]!;
    if (acc.cols !== nTypes || acc.capacity < expected) continue;
    accumulatorPool.splice(i, 1);
    acc.reset();
    return acc;
  }
  return new StackAccumulator(nTypes, expected, true);
}

/** Samples' values summed per stack id, per series (request labels + kept sample labels). */
export class SeriesSplit {
  readonly series = new Map<string, { acc: StackAccumulator; labels: Record<string, string> }>();
  droppedLabels = 0;
  private readonly keyNames = new Map<string, string | null>();

  constructor(
    private readonly labels: Record<string, string>,
    private readonly opts: IngestOptions,
    readonly nTypes: number,
    /** Capacity of the first series' accumulator: the usual one-series push needs no table growth; more series start small. */
    private readonly firstCapacity: number,
  ) {}

  /** The series name of a sample label key, or null when it is not kept. */
  private keyName(raw: string): string | null {
    let n = this.keyNames.get(raw);
    if (n === undefined) {
      n = raw === '' || this.opts.dropSampleLabels.has(raw) ? null : sanitizeLabelName(raw);
      if (n !== null && this.labels[n] !== undefined) n = null; // the request's label wins
      this.keyNames.set(raw, n);
    }
    return n;
  }

  /**
   * The accumulator of samples carrying these string labels (keys[i] = values[i]),
   * and how many of them were dropped. Call once per distinct label set.
   */
  forLabels(keys: readonly string[], values: readonly string[]): { acc: StackAccumulator; dropped: number } {
    const merged: Record<string, string> = { ...this.labels };
    let dropped = 0;
    for (let j = 0; j < keys.length; j++) {
      const name = this.keyName(keys[j]!);
      const value = values[j]!;
      if (name === null || value.length > MAX_LABEL_VALUE_LENGTH || (merged[name] === undefined && Object.keys(merged).length >= MAX_LABELS)) dropped++;
      else merged[name] = value;
    }
    return { acc: this.seriesFor(merged), dropped };
  }

  private seriesFor(merged: Record<string, string>): StackAccumulator {
    const key = canonicalLabels(merged);
    let e = this.series.get(key);
    if (!e) this.series.set(key, (e = { acc: takeAccumulator(this.nTypes, this.series.size === 0 ? this.firstCapacity : 1024), labels: merged }));
    return e.acc;
  }

  /** Hands the accumulators back for the next request; call once their contents were copied out. */
  release(): void {
    for (const { acc } of this.series.values()) {
      if (accumulatorPool.length < POOLED_ACCUMULATORS && acc.capacity <= POOLED_MAX_SLOTS) accumulatorPool.push(acc);
    }
    this.series.clear();
  }

  /** No samples: the series still gets an (empty) profile, so it exists and its timeline shows zero. */
  ensureOne(): void {
    if (this.series.size === 0) this.seriesFor({ ...this.labels });
  }
}

/** The profile header both formats carry. */
export interface ProfileHeader {
  sampleTypes: SampleTypeDesc[];
  periodType: SampleTypeDesc | undefined;
  defaultSampleType: string;
  timeMs: number;
  durationNs: number;
  period: number;
  nSamples: number;
}

/** What a decoded pprof (pprof/decode.ts) and a decoded push (pprof/decode-push.ts) both have for the header. */
type DecodedHeader = Pick<RawProfile, 'buf' | 'nStrings' | 'strStart' | 'strEnd' | 'sampleTypes' | 'periodType' | 'defaultSampleType' | 'durationNanos' | 'period' | 'nSamples'>;

/** The header of a decoded pprof or push, its strings resolved. */
export function profileHeader(p: DecodedHeader, timeMs: number): ProfileHeader {
  const vt = (t: { type: number; unit: number }) => ({ type: stringAt(p, t.type), unit: stringAt(p, t.unit) });
  return {
    sampleTypes: p.sampleTypes.map(vt),
    periodType: p.periodType ? vt(p.periodType) : undefined,
    defaultSampleType: stringAt(p, p.defaultSampleType),
    timeMs,
    durationNs: p.durationNanos,
    period: p.period,
    nSamples: p.nSamples,
  };
}

/** Hands the batch to the store and waits for its commit. `refs`: stack ids referenced, not defined, whose rows the store must vouch for. */
export async function finishIngest(
  store: ProfileStore,
  header: ProfileHeader,
  split: SeriesSplit,
  mark: number,
  rows: SymbolRows,
  checks: IdMap,
  refs?: number[],
): Promise<IngestResult> {
  split.ensureOne();
  const typeDesc: Omit<ProfileType, 'id'> = { sampleTypes: header.sampleTypes, periodType: header.periodType, defaultSampleType: header.defaultSampleType };
  const profileTypeId = textId(SEED.profileType, typeDescriptor(typeDesc));
  const knownType = store.profileType(profileTypeId);
  if (knownType && typeDescriptor(knownType) !== typeDescriptor(typeDesc)) throw errIdCollision(`profile kind id ${profileTypeId} is taken by another kind`);
  const batch: IngestBatch = {
    mark,
    rows,
    checks,
    series: [],
    profileTypes: knownType ? [] : [{ id: profileTypeId, ...typeDesc }],
    profiles: [],
    refs: refs !== undefined && refs.length > 0 ? refs : undefined,
  };
  const nTypes = split.nTypes;
  let nStacksTotal = 0;
  for (const [key, { acc }] of split.series) {
    const seriesId = textId(SEED.series, key);
    const known = store.seriesById(seriesId);
    if (known && canonicalLabels(known.labels) !== key) throw errIdCollision(`series id ${seriesId} is taken by ${canonicalLabels(known.labels)}`);
    if (!known) batch.series.push({ id: seriesId, labels: JSON.parse(key) as Record<string, string> });
    // Unsorted: the store packs them once it knows their dense ids (store/stack-ids.ts).
    const stackHashes = acc.ids.slice(0, acc.length);
    const vals = acc.values.slice(0, acc.length * nTypes);
    const totals = new Array<number>(nTypes).fill(0);
    for (let k = 0; k < vals.length; k++) totals[k % nTypes]! += vals[k]!;
    nStacksTotal += acc.length;
    const denseIds = acc.denseIds?.slice(0, acc.length);
    const row: NewProfile = { seriesId, timeMs: header.timeMs, durationNs: header.durationNs, period: header.period, profileTypeId, totals, nTypes, stackHashes, values: vals, denseIds };
    batch.profiles.push(row);
  }
  split.release(); // everything above copied what it keeps
  const ids = await store.write(batch);
  return {
    id: ids[0]!,
    ids,
    seriesIds: batch.profiles.map((r) => r.seriesId),
    timeMs: header.timeMs,
    samples: header.nSamples,
    stacks: nStacksTotal,
    droppedLabels: split.droppedLabels,
  };
}
