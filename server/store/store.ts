// The one storage interface. Routes, ingest and query talk to a ProfileStore
// and never to a backend's internals; sqlite-store.ts implements it on an
// embedded SQLite file.
//
// Identity: symbol rows, series and profile kinds are keyed by content ids
// (src/profile/identity.ts), so servers sharing one database never coordinate ids.
//
// Garbage collection by marks: every symbol row carries `mark`, the latest
// mark epoch (MARK_EPOCH_MS) of a profile that referenced it. A profile of
// time t ingested at time n marks everything it references with
// max(epoch(t), epoch(n)), and a row is only ever marked together with (or
// after) the rows it references, so mark(location) >= mark(stack using it)
// and so on. After retention deleted the old profiles, every row whose mark is below
//   C = min(epoch(oldest retained profile), epoch(now) - 1)
// is referenced by no retained profile and is deleted. The "- 1" covers
// ingests in flight (their marks are >= the epoch they started in, at most
// one epoch ago); servers sharing a database must agree on the time to
// within an epoch. The ingest cache (`marks`) only skips writing a row when
// it knows the row's mark is already >= the new mark, and such a row is never
// collected while that profile is retained, so the cache needs no
// invalidation, not even across servers.
import type { IdMap } from './id-map.js';

export const MARK_EPOCH_MS = 60 * 60 * 1000;
export const markEpoch = (ms: number): number => Math.floor(ms / MARK_EPOCH_MS);

export const ROLLUP_WINDOW_MS = 10 * 60 * 1000;
export const ROLLUP_GRACE_MS = 60 * 1000;
/**
 * Series id of the fleet rollups: per FLEET_WINDOW_MS window, the merge of
 * every series, so a query over all series reads one row per minute (a
 * fleet's hour: 60 rows instead of 36,000 profiles or 600 series rollups).
 * Their windows are shorter than a series' because an unaligned range reads
 * the windows at its edges raw: at most two minutes of the fleet's profiles.
 * Series ids are content hashes, never 0.
 */
export const FLEET_SERIES_ID = 0;
export const FLEET_WINDOW_MS = 60 * 1000;
/** Rollup window length of a series (the fleet's or a series' own). */
export const rollupWindowMs = (seriesId: number): number => (seriesId === FLEET_SERIES_ID ? FLEET_WINDOW_MS : ROLLUP_WINDOW_MS);
/** SQL expression of the window length of a rollup row, given its series id column. */
export const rollupWindowSql = (seriesIdColumn: string): string =>
  `(CASE WHEN ${seriesIdColumn} = ${FLEET_SERIES_ID} THEN ${FLEET_WINDOW_MS} ELSE ${ROLLUP_WINDOW_MS} END)`;
/** Key of a (series, window index) pair. */
export const rollupKey = (seriesId: number, windowIndex: number): string => `${seriesId}:${windowIndex}`;

export type SymbolKind = 'mapping' | 'function' | 'location' | 'stack';
export const SYMBOL_KINDS: readonly SymbolKind[] = ['mapping', 'function', 'location', 'stack'];

export interface SampleTypeDesc {
  type: string;
  unit: string;
}

export interface ProfileType {
  id: number;
  sampleTypes: SampleTypeDesc[];
  periodType: SampleTypeDesc | undefined;
  defaultSampleType: string;
}

export interface Series {
  id: number;
  labels: Record<string, string>;
  /** Time bounds of the stored profiles (Unix ms); firstMs > lastMs when it has none. */
  firstMs: number;
  lastMs: number;
  typeIds: Set<number>;
}

/** A binary, identified by its build ID (else its path). */
export interface MappingRow {
  id: number;
  buildId: string;
  filename: string;
  /** File offset and size of the first mapping of it seen; downloads rebuild a mapping from them. */
  fileOffset: bigint;
  size: bigint;
}

export interface FunctionRow {
  id: number;
  name: string;
  systemName: string;
  filename: string;
  startLine: number;
}

/** A code location: address is file-relative (see ingest.ts), 0 for resolved kernel/JIT frames. */
export interface LocationRow {
  id: number;
  mappingId: number; // 0 = none
  address: bigint;
  isFolded: boolean;
  /** Pairs (functionId, line), innermost frame first as in pprof. */
  lines: number[];
}

/**
 * A whole stack: its location ids, leaf first as in pprof. One row per
 * distinct stack (not a prefix tree), so a query resolves the stacks it read
 * with one lookup each, and builds its flame tree from them directly.
 */
export interface StackRow {
  /** The dense id (stack-ids.ts) when read from the store; the content hash in an IngestBatch. */
  id: number;
  locations: number[];
}

export interface SymbolRows {
  mappings: MappingRow[];
  functions: FunctionRow[];
  locations: LocationRow[];
  stacks: StackRow[];
}

/**
 * A profile as ingest hands it to the store: its stacks by content hash (0 =
 * the empty stack) and values[i * nTypes + t]. The store packs it under
 * dense stack ids once it knows them (stack-ids.ts).
 */
export interface NewProfile {
  seriesId: number;
  timeMs: number;
  durationNs: number;
  period: number;
  profileTypeId: number;
  totals: number[];
  nTypes: number;
  stackHashes: Float64Array;
  values: Float64Array;
  /**
   * Beside stackHashes: each stack's dense id when ingest found it in the
   * marks cache (so the row is stored with a mark >= this profile's and keeps
   * that id while the profile is retained), 0 when the commit must resolve it.
   */
  denseIds?: Float64Array;
}

export interface ProfileRow {
  id: number;
  series_id: number;
  time_ms: number;
  duration_ns: number;
  period: number;
  profile_type_id: number;
  scales: string;
  totals: string;
  n_stacks: number;
  samples: Buffer;
}

export interface RollupRow {
  series_id: number;
  window_ms: number;
  profile_type_id: number;
  n_profiles: number;
  duration_ns: number;
  periods: string;
  scales: string;
  samples: Buffer;
}

/** One ingest request: the profiles it produced and every symbol row they need (re)marked. */
export interface IngestBatch {
  mark: number;
  rows: SymbolRows;
  /** Row id -> the collision check lane (src/profile/identity.ts) of every row in `rows`, stored in the marks cache after commit. */
  checks: IdMap;
  series: { id: number; labels: Record<string, string> }[];
  profileTypes: ProfileType[];
  profiles: NewProfile[];
  /**
   * Stacks (content ids) a lean push referenced without defining them and
   * that the marks cache could not vouch for: the store finds their rows,
   * raises their marks (and their locations', functions' and mappings') to
   * `mark` in the same transaction, or refuses the batch with
   * FP_ERR_UNKNOWN_STACKS naming those it does not hold. Their check lanes
   * are in `checks`.
   */
  refs?: number[];
}

export interface RetentionResult {
  profiles: number;
  /** Symbol rows collected, by kind. */
  symbols: Record<SymbolKind, number>;
}

export interface ProfileStore {
  readonly backend: 'sqlite' | 'postgres';
  /** Ingest cache: row id -> (mark, check) of rows known to be stored with at least that mark. */
  readonly marks: IdMap;

  allSeries(): Iterable<Series>;
  seriesById(id: number): Series | undefined;
  profileType(id: number): ProfileType | undefined;
  /** Picks up series and profile kinds other servers wrote (no-op for a single-writer backend). */
  refresh(): Promise<void>;

  /** Writes symbols, series and profiles in one transaction; resolves with the profile ids once committed. */
  write(batch: IngestBatch): Promise<number[]>;

  /** Streams profile rows of the series (all when null) with from <= time < to, minus windows in `exclude` (rollupKey). */
  eachProfile(
    seriesIds: number[] | null,
    fromMs: number,
    toMs: number,
    columns: readonly (keyof ProfileRow)[],
    onRow: (r: ProfileRow) => void,
    limit?: number,
    exclude?: ReadonlySet<string>,
  ): Promise<number>;
  /** Streams rollups of whole windows within [fromMs, toMs). */
  eachRollup(seriesIds: number[] | null, fromMs: number, toMs: number, onRow: (r: RollupRow) => void): Promise<number>;
  getProfile(id: number): Promise<ProfileRow | undefined>;

  fetchStacks(ids: readonly number[]): Promise<StackRow[]>;
  fetchLocations(ids: readonly number[]): Promise<LocationRow[]>;
  fetchFunctions(ids: readonly number[]): Promise<FunctionRow[]>;
  fetchMappings(ids: readonly number[]): Promise<MappingRow[]>;

  /** Deletes profiles older than cutoffMs, then every symbol row nothing retained references. */
  retain(cutoffMs: number, nowMs: number): Promise<RetentionResult>;
  symbolRowCounts(): Promise<Record<SymbolKind, number>>;
  sizeBytes(): Promise<number>;
  /** Commits of ingests this process made and the ingests they held (group commit: ingests / commits is how well they were shared). */
  commitStats(): { commits: number; ingests: number };

  /** Schedules rollups of closed windows and waits for queued writes (tests, benchmarks). */
  ingestBarrier(): Promise<void>;
  idle(): Promise<void>;
  close(): Promise<void>;
}

/** How a store is opened, apart from where (the URL). */
export interface StoreOptions {
  /** Group commit linger (group-commit.ts): how long a commit starting from idle waits for more ingests. */
  commitLingerMs?: number;
}

/** `sqlite:<dir>` or a bare directory, or `postgres://...` / `postgresql://...`. */
export function parseStoreUrl(url: string): { backend: 'sqlite'; dir: string } | { backend: 'postgres'; url: string } {
  if (/^postgres(ql)?:\/\//.test(url)) return { backend: 'postgres', url };
  return { backend: 'sqlite', dir: url.startsWith('sqlite:') ? url.slice('sqlite:'.length) : url };
}

/** Canonical JSON of a label set (sorted keys): the series identity. */
export function canonicalLabels(labels: Record<string, string>): string {
  const sorted: Record<string, string> = {};
  for (const k of Object.keys(labels).sort()) sorted[k] = labels[k]!;
  return JSON.stringify(sorted);
}

export function typeDescriptor(t: Omit<ProfileType, 'id'>): string {
  return JSON.stringify({ sampleTypes: t.sampleTypes, periodType: t.periodType, defaultSampleType: t.defaultSampleType });
}


/** A stack's location ids as stored: little-endian float64 each (exact below 2^53). */
export function packIds(ids: readonly number[]): Buffer {
  const b = Buffer.allocUnsafe(ids.length * 8);
  for (let i = 0; i < ids.length; i++) b.writeDoubleLE(ids[i]!, i * 8);
  return b;
}

export function unpackIds(b: Uint8Array): number[] {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out = new Array<number>(b.byteLength >> 3);
  for (let i = 0; i < out.length; i++) out[i] = view.getFloat64(i * 8, true);
  return out;
}
