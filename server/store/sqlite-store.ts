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
      });
    } catch (e) {
      // Symbols stay assigned in memory; write them with the next batch.
      this.symbols.restorePending(sym);
      this.pendingSeries = [...series, ...this.pendingSeries];
      this.pendingTypes = [...types, ...this.pendingTypes];
      this.pendingSeriesTypes = [...seriesTypes, ...this.pendingSeriesTypes];
      for (const b of batch) b.reject(e);
      return;
    }
    for (const b of batch) b.resolve(b.row[0] as number);
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

  /** Streams stored profile rows of the given series (all when null) with from <= time < to. */
  eachProfile(
    seriesIds: number[] | null,
    fromMs: number,
    toMs: number,
    columns: readonly (keyof ProfileRow)[],
    onRow: (r: ProfileRow) => void,
    limit = -1,
  ): Promise<number> {
    const cols = columns.join(', ');
    if (seriesIds === null) {
      return this.reader.each(`SELECT ${cols} FROM profiles WHERE time_ms >= ? AND time_ms < ? ORDER BY time_ms LIMIT ?`, [fromMs, toMs, limit], onRow);
    }
    if (seriesIds.length === 0) return Promise.resolve(0);
    // The IN list rides on the (series_id, time_ms) index.
    const ids = seriesIds.join(',');
    return this.reader.each(
      `SELECT ${cols} FROM profiles WHERE series_id IN (${ids}) AND time_ms >= ? AND time_ms < ? ORDER BY time_ms LIMIT ?`,
      [fromMs, toMs, limit],
      onRow,
    );
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
