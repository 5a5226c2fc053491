// The store: SQLite files in the data directory plus the in-memory symbol
// database and series index. Writes go through one queue that group-commits
// everything pending (new symbols, series, profiles) in a single transaction;
// an ingest request is acknowledged only after its transaction committed, so
// a 2xx means durable across a process crash (WAL, synchronous=NORMAL).
// Reads use a second connection, so a long merge never waits on a commit.
import { mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Db, insertMany, type SqlValue } from './sqlite.js';
import { migrate } from './schema.js';
import { SymbolDb } from './symbols.js';
import { addSamples, encodeSamples } from './sample-codec.js';

/**
 * Rollups. A query over an hour of a 100-node fleet would otherwise unpack
 * 36,000 profile blobs. Once a series has data past a window's end (plus a
 * grace period), a background job on the write queue merges that window's
 * profiles into one `rollups` row per profile kind; queries read rollups for
 * the whole windows inside their range and raw rows for the rest. Raw rows
 * are kept (per-profile APIs, timelines). A profile arriving late into a
 * rolled-up window deletes the rollup in its own commit, so readers then fall
 * back to raw rows, and the window is rolled up again later.
 */
export const ROLLUP_WINDOW_MS = 10 * 60 * 1000;
export const ROLLUP_GRACE_MS = 60 * 1000;

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

/** Key of a (series, window index) pair, as computed in SQL too. */
export const rollupKey = (seriesId: number, windowIndex: number) => seriesId * 4294967296 + windowIndex;

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

export interface NewProfile {
  seriesId: number;
  timeMs: number;
  durationNs: number;
  period: number;
  profileTypeId: number;
  scales: number[];
  totals: number[];
  nStacks: number;
  samples: Buffer;
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

interface QueuedProfile {
  row: SqlValue[];
  resolve: (id: number) => void;
  reject: (e: unknown) => void;
}

export const DB_FILE = 'fleetprof.db';

export class SqliteStore {
  readonly symbols = new SymbolDb();
  readonly series = new Map<number, Series>();
  private readonly seriesByKey = new Map<string, number>();
  readonly profileTypes = new Map<number, ProfileType>();
  private readonly profileTypeByKey = new Map<string, number>();
  private pendingSeries: SqlValue[][] = [];
  private pendingTypes: SqlValue[][] = [];
  private pendingSeriesTypes: SqlValue[][] = [];
  private queue: QueuedProfile[] = [];
  private jobs: (() => Promise<void>)[] = [];
  private flushing: Promise<void> | undefined;
  private nextProfileId = 1;
  // Rollup bookkeeping: window indices per series (time_ms / ROLLUP_WINDOW_MS).
  private readonly rolledUp = new Map<number, Set<number>>();
  private readonly dirty = new Map<number, Set<number>>();
  private readonly rollupScheduled = new Set<number>();
  private compacting = -1;
  private pendingInvalidations: [number, number][] = [];
  private maxSeriesId = 0;
  private closed = false;

  private constructor(
    readonly dataDir: string,
    private readonly writer: Db,
    readonly reader: Db,
  ) {}

  static async open(dataDir: string): Promise<SqliteStore> {
    mkdirSync(dataDir, { recursive: true });
    const file = join(dataDir, DB_FILE);
    const writer = await Db.open(file);
    // page_size and auto_vacuum only take effect before the first table exists.
    await writer.exec('PRAGMA page_size = 8192; PRAGMA auto_vacuum = INCREMENTAL;');
    await writer.get('PRAGMA journal_mode = WAL');
    // NORMAL in WAL mode: a commit survives a process crash (kill -9); only an
    // OS crash / power loss can drop the last transactions.
    await writer.exec('PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; PRAGMA cache_size = -65536;');
    await migrate(writer);
    const reader = await Db.open(file);
    await reader.exec('PRAGMA query_only = 1; PRAGMA busy_timeout = 5000; PRAGMA cache_size = -131072; PRAGMA mmap_size = 1073741824;');
    const store = new SqliteStore(dataDir, writer, reader);
    await store.load();
    store.scheduleRollups();
    return store;
  }

  private async load(): Promise<void> {
    const s = this.symbols;
    const db = this.reader;
    await db.each<{ id: number; value: string }>('SELECT id, value FROM strings ORDER BY id', [], (r) => s.loadString(r.id, r.value));
    await db.each<{ id: number; memory_start: string; memory_limit: string; file_offset: string; filename_id: number; build_id_id: number; flags: number }>(
      'SELECT * FROM mappings ORDER BY id',
      [],
      (r) =>
        s.loadMapping(r.id, {
          memoryStart: BigInt('0x' + r.memory_start),
          memoryLimit: BigInt('0x' + r.memory_limit),
          fileOffset: BigInt('0x' + r.file_offset),
          filename: r.filename_id,
          buildId: r.build_id_id,
          flags: r.flags,
        }),
    );
    await db.each<{ id: number; name_id: number; system_name_id: number; filename_id: number; start_line: number }>('SELECT * FROM functions ORDER BY id', [], (r) =>
      s.loadFunction(r.id, { name: r.name_id, systemName: r.system_name_id, filename: r.filename_id, startLine: r.start_line }),
    );
    await db.each<{ id: number; mapping_id: number; address: string; is_folded: number; lines: string }>('SELECT * FROM locations ORDER BY id', [], (r) =>
      s.loadLocation(r.id, {
        mappingId: r.mapping_id,
        address: BigInt('0x' + r.address),
        isFolded: r.is_folded !== 0,
        lines: r.lines === '' ? [] : r.lines.split(',').map(Number),
      }),
    );
    await db.each<{ id: number; parent_id: number; location_id: number }>('SELECT id, parent_id, location_id FROM stacks ORDER BY id', [], (r) =>
      s.loadStack(r.id, r.parent_id, r.location_id),
    );
    await db.each<{ id: number; descriptor: string }>('SELECT id, descriptor FROM profile_types', [], (r) => {
      this.profileTypes.set(r.id, { id: r.id, ...(JSON.parse(r.descriptor) as Omit<ProfileType, 'id'>) });
      this.profileTypeByKey.set(r.descriptor, r.id);
    });
    await db.each<{ id: number; labels: string }>('SELECT id, labels FROM series', [], (r) => {
      this.series.set(r.id, { id: r.id, labels: JSON.parse(r.labels) as Record<string, string>, firstMs: Infinity, lastMs: -Infinity, typeIds: new Set() });
      this.seriesByKey.set(r.labels, r.id);
      this.maxSeriesId = Math.max(this.maxSeriesId, r.id);
    });
    await db.each<{ series_id: number; profile_type_id: number }>('SELECT series_id, profile_type_id FROM series_types', [], (r) =>
      this.series.get(r.series_id)?.typeIds.add(r.profile_type_id),
    );
    for (const id of this.series.keys()) await this.refreshBounds(id);
    await db.each<{ series_id: number; window_ms: number }>('SELECT DISTINCT series_id, window_ms FROM rollups', [], (r) =>
      setOf(this.rolledUp, r.series_id).add(Math.floor(r.window_ms / ROLLUP_WINDOW_MS)),
    );
    await db.each<{ series_id: number; w: number }>(`SELECT DISTINCT series_id, time_ms / ${ROLLUP_WINDOW_MS} AS w FROM profiles WHERE time_ms >= 0`, [], (r) => {
      if (!this.rolledUp.get(r.series_id)?.has(r.w)) setOf(this.dirty, r.series_id).add(r.w);
    });
    const max = await db.get<{ m: number | null }>('SELECT MAX(id) AS m FROM profiles');
    this.nextProfileId = (max?.m ?? 0) + 1;
  }

  /** MIN/MAX per series use the (series_id, time_ms) index: two seeks each. */
  private async refreshBounds(seriesId: number): Promise<void> {
    const s = this.series.get(seriesId);
    if (!s) return;
    const r = await this.reader.get<{ lo: number | null; hi: number | null }>(
      'SELECT (SELECT MIN(time_ms) FROM profiles WHERE series_id = ?1) AS lo, (SELECT MAX(time_ms) FROM profiles WHERE series_id = ?1) AS hi',
      [seriesId],
    );
    s.firstMs = r?.lo ?? Infinity;
    s.lastMs = r?.hi ?? -Infinity;
  }

  /** Id of the series with exactly these labels, created if new. */
  seriesId(labels: Record<string, string>): number {
    const sorted: Record<string, string> = {};
    for (const k of Object.keys(labels).sort()) sorted[k] = labels[k]!;
    const key = JSON.stringify(sorted);
    let id = this.seriesByKey.get(key);
    if (id === undefined) {
      id = ++this.maxSeriesId;
      this.series.set(id, { id, labels: sorted, firstMs: Infinity, lastMs: -Infinity, typeIds: new Set() });
      this.seriesByKey.set(key, id);
      this.pendingSeries.push([id, key]);
    }
    return id;
  }

  profileTypeId(t: Omit<ProfileType, 'id'>): number {
    const key = JSON.stringify({ sampleTypes: t.sampleTypes, periodType: t.periodType, defaultSampleType: t.defaultSampleType });
    let id = this.profileTypeByKey.get(key);
    if (id === undefined) {
      id = this.profileTypes.size + 1;
      this.profileTypes.set(id, { id, ...t });
      this.profileTypeByKey.set(key, id);
      this.pendingTypes.push([id, key]);
    }
    return id;
  }

  /** Queues a profile; resolves with its id once committed. */
  append(p: NewProfile): Promise<number> {
    if (this.closed) return Promise.reject(new Error('store is closed'));
    const id = this.nextProfileId++;
    const s = this.series.get(p.seriesId)!;
    if (!s.typeIds.has(p.profileTypeId)) {
      s.typeIds.add(p.profileTypeId);
      this.pendingSeriesTypes.push([p.seriesId, p.profileTypeId]);
    }
    s.firstMs = Math.min(s.firstMs, p.timeMs);
    s.lastMs = Math.max(s.lastMs, p.timeMs);
    if (p.timeMs >= 0) {
      const w = Math.floor(p.timeMs / ROLLUP_WINDOW_MS);
      const rolled = this.rolledUp.get(p.seriesId);
      if (rolled?.has(w) || this.compacting === rollupKey(p.seriesId, w)) {
        // Late arrival: the rollup goes in the same commit as this profile.
        rolled?.delete(w);
        this.pendingInvalidations.push([p.seriesId, w * ROLLUP_WINDOW_MS]);
      }
      setOf(this.dirty, p.seriesId).add(w);
    }
    const row: SqlValue[] = [id, p.seriesId, p.timeMs, p.durationNs, p.period, p.profileTypeId, p.scales.join(','), p.totals.join(','), p.nStacks, p.samples];
    return new Promise((resolve, reject) => {
      this.queue.push({ row, resolve, reject });
      this.kick();
    });
  }

  private kick(): void {
    if (this.flushing) return;
    this.flushing = new Promise<void>((resolve) => setImmediate(() => void this.flushLoop().finally(resolve)));
  }

  private async flushLoop(): Promise<void> {
    try {
      while (this.queue.length > 0 || this.jobs.length > 0) {
        if (this.queue.length > 0) await this.flushOnce();
        const job = this.jobs.shift();
        if (job) await job();
      }
    } finally {
      this.flushing = undefined;
    }
    if (this.queue.length > 0 || this.jobs.length > 0) this.kick();
  }

  private async flushOnce(): Promise<void> {
    const batch = this.queue;
    this.queue = [];
    const sym = this.symbols.takePending();
    const series = this.pendingSeries;
    const types = this.pendingTypes;
    const seriesTypes = this.pendingSeriesTypes;
    const invalidations = this.pendingInvalidations;
    this.pendingInvalidations = [];
    this.pendingSeries = [];
    this.pendingTypes = [];
    this.pendingSeriesTypes = [];
    const w = this.writer;
    try {
      await w.transaction(async () => {
        await insertMany(w, 'strings', ['id', 'value'], sym.strings);
        await insertMany(w, 'mappings', ['id', 'memory_start', 'memory_limit', 'file_offset', 'filename_id', 'build_id_id', 'flags'], sym.mappings);
        await insertMany(w, 'functions', ['id', 'name_id', 'system_name_id', 'filename_id', 'start_line'], sym.functions);
        await insertMany(w, 'locations', ['id', 'mapping_id', 'address', 'is_folded', 'lines'], sym.locations);
        await insertMany(w, 'stacks', ['id', 'parent_id', 'location_id'], sym.stacks);
        await insertMany(w, 'series', ['id', 'labels'], series);
        await insertMany(w, 'profile_types', ['id', 'descriptor'], types);
        await insertMany(w, 'series_types', ['series_id', 'profile_type_id'], seriesTypes);
        await insertMany(
          w,
          'profiles',
          ['id', 'series_id', 'time_ms', 'duration_ns', 'period', 'profile_type_id', 'scales', 'totals', 'n_stacks', 'samples'],
          batch.map((b) => b.row),
        );
        for (const [seriesId, windowMs] of invalidations) await w.run('DELETE FROM rollups WHERE series_id = ? AND window_ms = ?', [seriesId, windowMs]);
      });
    } catch (e) {
      // Symbols stay assigned in memory; write them with the next batch.
      this.symbols.restorePending(sym);
      this.pendingSeries = [...series, ...this.pendingSeries];
      this.pendingTypes = [...types, ...this.pendingTypes];
      this.pendingSeriesTypes = [...seriesTypes, ...this.pendingSeriesTypes];
      this.pendingInvalidations = [...invalidations, ...this.pendingInvalidations];
      for (const b of batch) b.reject(e);
      return;
    }
    for (const b of batch) b.resolve(b.row[0] as number);
    this.scheduleRollups();
  }

  /** Queues a rollup job for every dirty window its series has moved past. */
  scheduleRollups(): void {
    for (const [seriesId, windows] of this.dirty) {
      const s = this.series.get(seriesId);
      if (!s) continue;
      for (const w of windows) {
        const key = rollupKey(seriesId, w);
        if (w < 1 || (w + 1) * ROLLUP_WINDOW_MS + ROLLUP_GRACE_MS > s.lastMs || this.rollupScheduled.has(key)) continue;
        this.rollupScheduled.add(key);
        this.jobs.push(() => this.rollUp(seriesId, w).catch(() => undefined));
      }
    }
    if (this.jobs.length > 0) this.kick();
  }

  /** Schedules rollups of windows closed by data already committed, then waits for them. */
  async ingestBarrier(): Promise<void> {
    this.scheduleRollups();
    await this.idle();
  }

  /** Resolves once every queued write and rollup job has run (tests, benchmarks). */
  async idle(): Promise<void> {
    while (this.flushing || this.queue.length > 0 || this.jobs.length > 0) {
      this.kick();
      await this.flushing;
    }
  }

  /** Merges the profiles of one series window into rollup rows; runs on the write queue. */
  private async rollUp(seriesId: number, w: number): Promise<void> {
    const key = rollupKey(seriesId, w);
    this.rollupScheduled.delete(key);
    const dirty = this.dirty.get(seriesId);
    if (!dirty?.has(w) || this.closed) return;
    dirty.delete(w);
    this.compacting = key;
    let ok = false;
    try {
      const from = w * ROLLUP_WINDOW_MS;
      const rows = await this.writer.all<Pick<ProfileRow, 'profile_type_id' | 'scales' | 'duration_ns' | 'period' | 'samples'>>(
        'SELECT profile_type_id, scales, duration_ns, period, samples FROM profiles WHERE series_id = ? AND time_ms >= ? AND time_ms < ?',
        [seriesId, from, from + ROLLUP_WINDOW_MS],
      );
      // Dense per-type sums indexed by stack id (allocation-light; one scan of
      // `touched` at the end yields the stacks in ascending id order).
      const n = this.symbols.stackCount;
      const byType = new Map<number, { n: number; duration: number; periods: Set<number>; sums: Float64Array[]; touched: Uint8Array }>();
      for (const r of rows) {
        const nTypes = this.profileTypes.get(r.profile_type_id)?.sampleTypes.length ?? 0;
        let agg = byType.get(r.profile_type_id);
        if (!agg) {
          agg = { n: 0, duration: 0, periods: new Set(), sums: Array.from({ length: nTypes }, () => new Float64Array(n)), touched: new Uint8Array(n) };
          byType.set(r.profile_type_id, agg);
        }
        agg.n++;
        agg.duration += r.duration_ns;
        agg.periods.add(r.period);
        const scales = r.scales.split(',').map(Number);
        for (let t = 0; t < nTypes; t++) addSamples(r.samples, nTypes, t, scales[t]!, agg.sums[t]!, agg.touched);
      }
      const out: SqlValue[][] = [];
      for (const [typeId, agg] of byType) {
        const nTypes = agg.sums.length;
        let count = 0;
        for (let i = 0; i < n; i++) count += agg.touched[i]!;
        const ids = new Float64Array(count);
        const vals = new Float64Array(count * nTypes);
        let k = 0;
        for (let i = 0; i < n; i++) {
          if (!agg.touched[i]) continue;
          ids[k] = i;
          for (let t = 0; t < nTypes; t++) vals[k * nTypes + t] = agg.sums[t]![i]!;
          k++;
        }
        const { blob, scales } = encodeSamples(ids, vals, nTypes);
        out.push([seriesId, from, typeId, agg.n, agg.duration, [...agg.periods].join(','), scales.join(','), blob]);
      }
      await this.writer.transaction(async () => {
        await this.writer.run('DELETE FROM rollups WHERE series_id = ? AND window_ms = ?', [seriesId, from]);
        await insertMany(this.writer, 'rollups', ['series_id', 'window_ms', 'profile_type_id', 'n_profiles', 'duration_ns', 'periods', 'scales', 'samples'], out);
      });
      ok = true;
    } finally {
      this.compacting = -1;
      // A profile that arrived meanwhile left the window dirty and queued the
      // deletion of this rollup; otherwise the window is now rolled up.
      if (ok && !dirty.has(w)) setOf(this.rolledUp, seriesId).add(w);
      else if (!ok) dirty.add(w);
    }
  }

  /** Streams rollup rows of whole windows within [fromMs, toMs) of the given series (all when null). */
  eachRollup(seriesIds: number[] | null, fromMs: number, toMs: number, onRow: (r: RollupRow) => void): Promise<number> {
    const cols = 'series_id, window_ms, profile_type_id, n_profiles, duration_ns, periods, scales, samples';
    const where = seriesIds === null ? '' : `series_id IN (${seriesIds.join(',')}) AND `;
    if (seriesIds !== null && seriesIds.length === 0) return Promise.resolve(0);
    return this.reader.each(`SELECT ${cols} FROM rollups WHERE ${where}window_ms >= ? AND window_ms + ${ROLLUP_WINDOW_MS} <= ?`, [fromMs, toMs], onRow);
  }

  /** Deletes profiles older than cutoffMs; runs on the write queue. Returns the number deleted. */
  deleteBefore(cutoffMs: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.jobs.push(async () => {
        try {
          let deleted = 0;
          // Chunks keep each write transaction short so ingest keeps flowing.
          for (;;) {
            const r = await this.writer.run('DELETE FROM profiles WHERE id IN (SELECT id FROM profiles WHERE time_ms < ? LIMIT 5000)', [cutoffMs]);
            deleted += r.changes;
            if (r.changes < 5000) break;
            if (this.queue.length > 0) await this.flushOnce();
          }
          // Rollups of windows that lost profiles go too (raw rows serve what is
          // left of the window straddling the cutoff until it is rolled up again).
          if (deleted > 0) {
            const cutWindow = Math.floor(cutoffMs / ROLLUP_WINDOW_MS);
            await this.writer.run('DELETE FROM rollups WHERE window_ms < ?', [(cutWindow + 1) * ROLLUP_WINDOW_MS]);
            for (const [sid, set] of this.rolledUp) {
              for (const w of set) {
                if (w <= cutWindow) {
                  set.delete(w);
                  if (w === cutWindow) setOf(this.dirty, sid).add(w);
                }
              }
            }
            for (const set of this.dirty.values()) for (const w of set) if (w < cutWindow) set.delete(w);
          }
          if (deleted > 0) {
            await this.writer.exec('PRAGMA incremental_vacuum');
            for (const s of this.series.values()) if (s.firstMs < cutoffMs) await this.refreshBounds(s.id);
          }
          resolve(deleted);
        } catch (e) {
          reject(e);
        }
      });
      this.kick();
    });
  }

  /**
   * Streams stored profile rows of the given series (all when null) with
   * from <= time < to, skipping rows whose rollupKey(series, window) is in
   * `exclude` (windows the caller already read from rollups).
   */
  eachProfile(
    seriesIds: number[] | null,
    fromMs: number,
    toMs: number,
    columns: readonly (keyof ProfileRow)[],
    onRow: (r: ProfileRow) => void,
    limit = -1,
    exclude?: readonly number[],
  ): Promise<number> {
    const cols = columns.join(', ');
    if (seriesIds !== null && seriesIds.length === 0) return Promise.resolve(0);
    const params: SqlValue[] = [fromMs, toMs];
    let skip = '';
    if (exclude && exclude.length > 0) {
      skip = ` AND (series_id * 4294967296 + time_ms / ${ROLLUP_WINDOW_MS}) NOT IN (SELECT value FROM json_each(?))`;
      params.push(JSON.stringify(exclude));
    }
    params.push(limit);
    if (seriesIds === null) {
      return this.reader.each(`SELECT ${cols} FROM profiles WHERE time_ms >= ? AND time_ms < ?${skip} ORDER BY time_ms LIMIT ?`, params, onRow);
    }
    // The IN list rides on the (series_id, time_ms) index.
    const ids = seriesIds.join(',');
    return this.reader.each(`SELECT ${cols} FROM profiles WHERE series_id IN (${ids}) AND time_ms >= ? AND time_ms < ?${skip} ORDER BY time_ms LIMIT ?`, params, onRow);
  }

  getProfile(id: number): Promise<ProfileRow | undefined> {
    return this.reader.get<ProfileRow>('SELECT * FROM profiles WHERE id = ?', [id]);
  }

  /** Bytes of the database, its WAL and shared-memory files. */
  sizeBytes(): number {
    let total = 0;
    for (const suffix of ['', '-wal', '-shm']) {
      try {
        total += statSync(join(this.dataDir, DB_FILE + suffix)).size;
      } catch {
        // file absent
      }
    }
    return total;
  }

  /** Waits for queued writes, then closes both connections. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.flushing) await this.flushing;
    await this.writer.exec('PRAGMA wal_checkpoint(TRUNCATE)').catch(() => undefined);
    await this.reader.close();
    await this.writer.close();
  }
}

function setOf<K, V>(m: Map<K, Set<V>>, k: K): Set<V> {
  let s = m.get(k);
  if (!s) m.set(k, (s = new Set()));
  return s;
}
