// The SQLite backend of ProfileStore (store.ts): one file in the data
// directory, owned by this process. Writes go through one queue that
// group-commits everything pending (symbol rows, series, profiles) in a single
// transaction; an ingest request is acknowledged only after its transaction
// committed, so a 2xx means durable across a process crash (WAL,
// synchronous=NORMAL). Reads use a second connection, so a long merge never
// waits on a commit. Symbols are not held in memory: queries fetch the rows
// they need (symbols.ts caches them, bounded).
import { mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Db, insertChunkRows, insertMany, type SqlValue } from './sqlite.js';
import { migrate } from './schema.js';
import { encodeDense, groupRefs, resolveStackRefs, writeStacks, type RefRowIo, type StackRowIo, type StackWrite } from './stack-ids.js';
import { WindowMerge } from './window-merge.js';
import { IdMap } from './id-map.js';
import { rememberCommitted } from './committed-memory.js';
import { DEFAULT_COMMIT_LINGER_MS, failIngestGroup, GroupCommitQueue, type PendingWrite } from './group-commit.js';
import { errIdCollision, errUnknownStacks } from '../errors.js';
import {
  markEpoch,
  FLEET_WINDOW_MS,
  ROLLUP_GRACE_MS,
  ROLLUP_WINDOW_MS,
  rollupKey,
  rollupWindowMs,
  rollupWindowSql,
  SYMBOL_KINDS,
  type FunctionRow,
  type IngestBatch,
  type LocationRow,
  type MappingRow,
  type NewProfile,
  type ProfileRow,
  type ProfileStore,
  type StoreOptions,
  type ProfileType,
  type RetentionResult,
  type RollupRow,
  type Series,
  type StackRow,
  type SymbolKind,
  canonicalLabels,
  FLEET_SERIES_ID,
  packIds,
  typeDescriptor,
  unpackIds,
} from './store.js';

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

export const DB_FILE = 'fleetprof.db';

const PROFILE_COLUMNS = ['id', 'series_id', 'time_ms', 'duration_ns', 'period', 'profile_type_id', 'scales', 'totals', 'n_stacks', 'samples'] as const;

/** Symbol kinds keyed by content hash; stacks are written by stack-ids.ts. */
type RowKind = Exclude<SymbolKind, 'stack'>;
const ROW_KINDS: readonly RowKind[] = ['mapping', 'function', 'location'];
const TABLE: Record<SymbolKind, string> = { mapping: 'mappings', function: 'functions', location: 'locations', stack: 'stacks' };
const hex = (v: bigint) => v.toString(16);
const idList = (ids: readonly number[]) => JSON.stringify(ids);

export class SqliteStore implements ProfileStore {
  readonly backend = 'sqlite' as const;
  /** Wide: a stack's dense id beside its mark (committed-memory.ts). */
  readonly marks = new IdMap(1 << 16, true);
  // This process is the file's only writer, so it hands out dense stack ids
  // itself: never reused while it runs (the query symbol cache may hold ids
  // of rows retention collected), no gaps from conflicting inserts.
  private nextStackId = 1;
  private readonly series = new Map<number, Series>();
  private readonly profileTypes = new Map<number, ProfileType>();
  // Ingest groups, with rollup and retention jobs run between them.
  private readonly commits: GroupCommitQueue<IngestBatch, number[]>;
  private nextProfileId = 1;
  // Rollup bookkeeping: window indices per series (time_ms / rollupWindowMs(series)), the fleet under FLEET_SERIES_ID.
  private readonly rolledUp = new Map<number, Set<number>>();
  private readonly dirty = new Map<number, Set<number>>();
  private readonly rollupScheduled = new Set<string>();
  private compacting = '';
  private pendingInvalidations: [number, number][] = [];
  private lastGcCutoff = -Infinity;

  private constructor(
    readonly dataDir: string,
    private readonly writer: Db,
    readonly reader: Db,
    options: StoreOptions,
  ) {
    this.commits = new GroupCommitQueue<IngestBatch, number[]>((group) => this.flushOnce(group), {
      lingerMs: options.commitLingerMs ?? DEFAULT_COMMIT_LINGER_MS,
    });
  }

  static async open(dataDir: string, options: StoreOptions = {}): Promise<SqliteStore> {
    mkdirSync(dataDir, { recursive: true });
    const file = join(dataDir, DB_FILE);
    const writer = await Db.open(file);
    // page_size and auto_vacuum only take effect before the first table exists.
    await writer.exec('PRAGMA page_size = 8192; PRAGMA auto_vacuum = INCREMENTAL;');
    await writer.get('PRAGMA journal_mode = WAL');
    // NORMAL in WAL mode: a commit survives a process crash (kill -9); only an
    // OS crash / power loss can drop the last transactions.
    // journal_size_limit: after a checkpoint resets the WAL, its file is cut back to
    // 16 MiB; without it the file stays at its largest size ever (checkpoints
    // wait while queries read, and the WAL grows meanwhile), which is disk the
    // store holds for nothing.
    await writer.exec('PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; PRAGMA cache_size = -65536; PRAGMA journal_size_limit = 16777216;');
    await migrate(writer);
    const reader = await Db.open(file);
    await reader.exec('PRAGMA query_only = 1; PRAGMA busy_timeout = 5000; PRAGMA cache_size = -131072; PRAGMA mmap_size = 1073741824;');
    const store = new SqliteStore(dataDir, writer, reader, options);
    await store.load();
    store.scheduleRollups();
    return store;
  }

  /** Series and profile kinds only: symbols stay on disk until a query needs them. */
  private async load(): Promise<void> {
    const db = this.reader;
    await db.each<{ id: number; descriptor: string }>('SELECT id, descriptor FROM profile_types', [], (r) => {
      this.profileTypes.set(r.id, { id: r.id, ...(JSON.parse(r.descriptor) as Omit<ProfileType, 'id'>) });
    });
    await db.each<{ id: number; labels: string }>('SELECT id, labels FROM series', [], (r) => {
      this.series.set(r.id, { id: r.id, labels: JSON.parse(r.labels) as Record<string, string>, firstMs: Infinity, lastMs: -Infinity, typeIds: new Set() });
    });
    await db.each<{ series_id: number; profile_type_id: number }>('SELECT series_id, profile_type_id FROM series_types', [], (r) =>
      this.series.get(r.series_id)?.typeIds.add(r.profile_type_id),
    );
    for (const id of this.series.keys()) await this.refreshBounds(id);
    await db.each<{ series_id: number; window_ms: number }>('SELECT DISTINCT series_id, window_ms FROM rollups', [], (r) =>
      setOf(this.rolledUp, r.series_id).add(Math.floor(r.window_ms / rollupWindowMs(r.series_id))),
    );
    await db.each<{ series_id: number; w: number }>(`SELECT DISTINCT series_id, time_ms / ${ROLLUP_WINDOW_MS} AS w FROM profiles WHERE time_ms >= 0`, [], (r) => {
      if (!this.rolledUp.get(r.series_id)?.has(r.w)) setOf(this.dirty, r.series_id).add(r.w);
    });
    await db.each<{ w: number }>(`SELECT DISTINCT time_ms / ${FLEET_WINDOW_MS} AS w FROM profiles WHERE time_ms >= 0`, [], (r) => {
      if (!this.rolledUp.get(FLEET_SERIES_ID)?.has(r.w)) setOf(this.dirty, FLEET_SERIES_ID).add(r.w);
    });
    const max = await db.get<{ m: number | null }>('SELECT MAX(id) AS m FROM profiles');
    this.nextProfileId = (max?.m ?? 0) + 1;
    const maxStack = await db.get<{ m: number | null }>('SELECT MAX(id) AS m FROM stacks');
    this.nextStackId = (maxStack?.m ?? 0) + 1;
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

  allSeries(): Iterable<Series> {
    return this.series.values();
  }

  seriesById(id: number): Series | undefined {
    return this.series.get(id);
  }

  profileType(id: number): ProfileType | undefined {
    return this.profileTypes.get(id);
  }

  async refresh(): Promise<void> {
    // This process is the file's only writer: memory is already current.
  }

  write(batch: IngestBatch): Promise<number[]> {
    return this.commits.write(batch);
  }

  /** Upserts rows of one kind; returns the ids whose stored content differs (collisions). */
  private async upsert(kind: RowKind, rows: Map<number, SqlValue[]>): Promise<number[]> {
    if (rows.size === 0) return [];
    const [columns, same] = UPSERT[kind];
    const perRow = `(${columns.map(() => '?').join(',')})`;
    const chunkRows = Math.floor(30000 / columns.length);
    const all = [...rows.values()];
    const accepted = new Set<number>();
    for (let i = 0; i < all.length; i += chunkRows) {
      const chunk = all.slice(i, i + chunkRows);
      const params: SqlValue[] = [];
      for (const r of chunk) params.push(...r);
      const out = await this.writer.all<{ id: number }>(
        `INSERT INTO ${TABLE[kind]} (${columns.join(',')}) VALUES ${chunk.map(() => perRow).join(',')} ` +
          `ON CONFLICT(id) DO UPDATE SET mark = max(mark, excluded.mark) WHERE ${same} RETURNING id`,
        params,
      );
      for (const r of out) accepted.add(r.id);
    }
    return [...rows.keys()].filter((id) => !accepted.has(id));
  }

  /** Commits one group (group-commit.ts) in one transaction. */
  private async flushOnce(queued: PendingWrite<IngestBatch, number[]>[]): Promise<void> {
    // Rows of all queued batches, deduplicated by id (the highest mark wins).
    const rows: Record<RowKind, Map<number, SqlValue[]>> = { mapping: new Map(), function: new Map(), location: new Map() };
    const put = (kind: RowKind, id: number, row: SqlValue[], mark: number) => {
      const cur = rows[kind].get(id);
      if (!cur || (cur[cur.length - 1] as number) < mark) rows[kind].set(id, row);
    };
    const stacks = new Map<number, StackWrite>();
    const series = new Map<number, SqlValue[]>();
    const types = new Map<number, SqlValue[]>();
    const seriesTypes = new Set<string>();
    const newProfiles: [number, NewProfile][] = [];
    const ids: number[][] = [];
    for (const { batch } of queued) {
      const m = batch.mark;
      for (const r of batch.rows.mappings) put('mapping', r.id, [r.id, r.buildId, r.filename, hex(r.fileOffset), hex(r.size), m], m);
      for (const r of batch.rows.functions) put('function', r.id, [r.id, r.name, r.systemName, r.filename, r.startLine, m], m);
      for (const r of batch.rows.locations) put('location', r.id, [r.id, r.mappingId, hex(r.address), r.isFolded ? 1 : 0, r.lines.join(','), m], m);
      for (const r of batch.rows.stacks) {
        const cur = stacks.get(r.id);
        if (!cur || cur.mark < m) stacks.set(r.id, { hash: r.id, locations: packIds(r.locations), mark: m, check: batch.checks.get(r.id, 0) });
      }
      for (const s of batch.series) series.set(s.id, [s.id, canonicalLabels(s.labels)]);
      for (const t of batch.profileTypes) types.set(t.id, [t.id, typeDescriptor(t)]);
      const mine: number[] = [];
      for (const p of batch.profiles) {
        const id = this.nextProfileId++;
        mine.push(id);
        // series_types is only ever added to, and memory mirrors what committed.
        if (!this.series.get(p.seriesId)?.typeIds.has(p.profileTypeId)) seriesTypes.add(`${p.seriesId},${p.profileTypeId}`);
        newProfiles.push([id, p]);
        this.noteWindow(p);
      }
      ids.push(mine);
    }
    let stackIds: IdMap | undefined;
    const nextStackId = this.nextStackId;
    const invalidations = this.pendingInvalidations;
    this.pendingInvalidations = [];
    const w = this.writer;
    let collided: Set<number> | undefined;
    let unknown: Set<number> | undefined;
    const refs = groupRefs(queued.map((q) => q.batch), stacks);
    // A group that only adds profile rows (the steady state: every stack and
    // symbol already stored, series and kinds known) is one INSERT statement,
    // atomic on its own, so it needs no BEGIN/COMMIT: one thread-pool round
    // trip instead of three.
    const profilesOnly =
      refs.size === 0 &&
      stacks.size === 0 &&
      ROW_KINDS.every((k) => rows[k].size === 0) &&
      series.size === 0 &&
      types.size === 0 &&
      seriesTypes.size === 0 &&
      invalidations.length === 0 &&
      newProfiles.length <= insertChunkRows(PROFILE_COLUMNS);
    const inTransaction = <T>(fn: () => Promise<T>): Promise<T> => (profilesOnly ? fn() : w.transaction(fn));
    try {
      await inTransaction(async () => {
        let known: Map<number, number> | undefined;
        if (refs.size > 0) {
          const r = await resolveStackRefs(refs, this.refIo());
          if (r.missing.length > 0) {
            unknown = new Set(r.missing);
            throw errUnknownStacks(r.missing);
          }
          known = r.ids;
        }
        const bad: number[] = [];
        for (const kind of ROW_KINDS) bad.push(...(await this.upsert(kind, rows[kind])));
        const st = await writeStacks(stacks, newProfiles.map((x) => x[1]), this.stackIo(), known);
        bad.push(...st.collided);
        stackIds = st.ids;
        bad.push(...(await this.upsertPlain('series', ['id', 'labels'], 'labels = excluded.labels', series)));
        bad.push(...(await this.upsertPlain('profile_types', ['id', 'descriptor'], 'descriptor = excluded.descriptor', types)));
        if (bad.length > 0) {
          collided = new Set(bad);
          throw errIdCollision(`content ids ${bad.slice(0, 5).join(', ')} are taken by different content`);
        }
        if (seriesTypes.size > 0) await w.run(`INSERT OR IGNORE INTO series_types (series_id, profile_type_id) VALUES ${[...seriesTypes].map((k) => `(${k})`).join(',')}`);
        const profiles: SqlValue[][] = newProfiles.map(([id, p]) => {
          const { blob, scales, nStacks } = encodeDense(p, stackIds!);
          return [id, p.seriesId, p.timeMs, p.durationNs, p.period, p.profileTypeId, scales.join(','), p.totals.join(','), nStacks, blob];
        });
        await insertMany(w, 'profiles', PROFILE_COLUMNS, profiles);
        for (const [seriesId, windowMs] of invalidations) await w.run('DELETE FROM rollups WHERE series_id = ? AND window_ms = ?', [seriesId, windowMs]);
      });
    } catch (e) {
      this.nextStackId = nextStackId; // the rolled-back inserts' ids are free again
      this.pendingInvalidations = [...invalidations, ...this.pendingInvalidations];
      failIngestGroup(this.commits, queued, e, collided, unknown);
      return;
    }
    // Committed: remember what is stored (marks cache), the series and kinds.
    rememberCommitted({ marks: this.marks, series: this.series, profileTypes: this.profileTypes }, queued.map((q) => q.batch), stackIds!);
    queued.forEach((q, i) => q.resolve(ids[i]!));
    this.scheduleRollups();
  }

  /** Rows behind referenced stacks, through the writer connection (inside the flush transaction; retention runs on the same queue). */
  private refIo(): RefRowIo {
    const w = this.writer;
    return {
      selectStacks: (hashes) => w.all('SELECT hash, id, mark, locations FROM stacks WHERE hash IN (SELECT value FROM json_each(?))', [idList(hashes)]),
      selectLocations: (ids) => w.all('SELECT id, mark, mapping_id, lines FROM locations WHERE id IN (SELECT value FROM json_each(?))', [idList(ids)]),
      raiseMarks: async (kind, ids, mark) => {
        if (ids.length === 0) return [];
        const rows = await w.all<{ id: number }>(`UPDATE ${TABLE[kind]} SET mark = max(mark, ?) WHERE id IN (SELECT value FROM json_each(?)) RETURNING id`, [mark, idList(ids)]);
        return rows.map((r) => r.id);
      },
    };
  }

  /** Stack rows through this store's writer connection (inside the flush transaction). */
  private stackIo(): StackRowIo {
    const w = this.writer;
    return {
      select: async (hashes) => {
        const out: { hash: number; id: number; locations: Buffer }[] = [];
        for (let i = 0; i < hashes.length; i += 20000) {
          out.push(...(await w.all<{ hash: number; id: number; locations: Buffer }>('SELECT hash, id, locations FROM stacks WHERE hash IN (SELECT value FROM json_each(?))', [idList(hashes.slice(i, i + 20000))])));
        }
        return out;
      },
      // Retention runs on this same queue: nothing deletes a row between the select and here.
      bumpMarks: async (ids, mark) => {
        await w.run('UPDATE stacks SET mark = ? WHERE id IN (SELECT value FROM json_each(?)) AND mark < ?', [mark, idList(ids), mark]);
        return ids;
      },
      insert: async (rows) => {
        const out = rows.map((r) => ({ hash: r.hash, id: this.nextStackId++ }));
        await insertMany(w, 'stacks', ['id', 'hash', 'locations', 'mark'], rows.map((r, i) => [out[i]!.id, r.hash, r.locations, r.mark]));
        return out;
      },
    };
  }

  private async upsertPlain(table: string, columns: string[], same: string, rows: Map<number, SqlValue[]>): Promise<number[]> {
    if (rows.size === 0) return [];
    const params: SqlValue[] = [];
    for (const r of rows.values()) params.push(...r);
    const out = await this.writer.all<{ id: number }>(
      `INSERT INTO ${table} (${columns.join(',')}) VALUES ${[...rows.values()].map(() => `(${columns.map(() => '?').join(',')})`).join(',')} ` +
        `ON CONFLICT(id) DO UPDATE SET id = id WHERE ${same} RETURNING id`,
      params,
    );
    const ok = new Set(out.map((r) => r.id));
    return [...rows.keys()].filter((id) => !ok.has(id));
  }

  /** Rollup bookkeeping of a profile about to be committed: its series' window and the fleet's. */
  private noteWindow(p: NewProfile): void {
    if (p.timeMs < 0) return;
    for (const sid of [p.seriesId, FLEET_SERIES_ID]) {
      const len = rollupWindowMs(sid);
      const w = Math.floor(p.timeMs / len);
      const rolled = this.rolledUp.get(sid);
      if (rolled?.has(w) || this.compacting === rollupKey(sid, w)) {
        // Late arrival: the rollup goes in the same commit as this profile.
        rolled?.delete(w);
        this.pendingInvalidations.push([sid, w * len]);
      }
      setOf(this.dirty, sid).add(w);
    }
  }

  /** Queues a rollup job for every dirty window its series has moved past. */
  scheduleRollups(): void {
    // The fleet rollup of a window waits until the newest series moved past it
    // (a node that stopped sending does not hold it back; a late profile invalidates it).
    let fleetLastMs = -Infinity;
    for (const s of this.series.values()) if (s.lastMs > fleetLastMs) fleetLastMs = s.lastMs;
    // Series windows first: the queue runs jobs in order, so the fleet job of a window comes after them.
    const order = [...this.dirty.keys()].sort((a, b) => (a === FLEET_SERIES_ID ? 1 : 0) - (b === FLEET_SERIES_ID ? 1 : 0));
    for (const seriesId of order) {
      const windows = this.dirty.get(seriesId)!;
      const lastMs = seriesId === FLEET_SERIES_ID ? fleetLastMs : this.series.get(seriesId)?.lastMs;
      if (lastMs === undefined) continue;
      const len = rollupWindowMs(seriesId);
      for (const w of windows) {
        // Time first: this runs after every commit over every dirty window, and most are not due (no key string made for them).
        if (w < 1 || (w + 1) * len + ROLLUP_GRACE_MS > lastMs) continue;
        const key = rollupKey(seriesId, w);
        if (this.rollupScheduled.has(key)) continue;
        this.rollupScheduled.add(key);
        this.commits.addJob(() => this.rollUp(seriesId, w).catch(() => undefined));
      }
    }
    if (this.commits.jobsPending > 0) this.commits.kick();
  }

  async ingestBarrier(): Promise<void> {
    this.scheduleRollups();
    await this.idle();
  }

  idle(): Promise<void> {
    return this.commits.idle();
  }

  /** Merges the profiles of one series window (of every series: FLEET_SERIES_ID) into rollup rows; runs on the write queue. */
  private async rollUp(seriesId: number, w: number): Promise<void> {
    const key = rollupKey(seriesId, w);
    this.rollupScheduled.delete(key);
    const dirty = this.dirty.get(seriesId);
    if (!dirty?.has(w) || this.commits.closed) return;
    dirty.delete(w);
    this.compacting = key;
    let ok = false;
    try {
      const len = rollupWindowMs(seriesId);
      const from = w * len;
      const merge = new WindowMerge((ptid) => this.profileTypes.get(ptid)?.sampleTypes.length ?? 0);
      const cols = 'profile_type_id, scales, duration_ns, period, samples';
      if (seriesId === FLEET_SERIES_ID) {
        await this.writer.each<ProfileRow>(`SELECT ${cols} FROM profiles WHERE time_ms >= ? AND time_ms < ?`, [from, from + len], (r) => merge.add(r));
      } else {
        await this.writer.each<ProfileRow>(`SELECT ${cols} FROM profiles WHERE series_id = ? AND time_ms >= ? AND time_ms < ?`, [seriesId, from, from + len], (r) =>
          merge.add(r),
        );
      }
      const out: SqlValue[][] = merge
        .rows(seriesId, from)
        .map((r) => [r.series_id, r.window_ms, r.profile_type_id, r.n_profiles, r.duration_ns, r.periods, r.scales, r.samples]);
      await this.writer.transaction(async () => {
        await this.writer.run('DELETE FROM rollups WHERE series_id = ? AND window_ms = ?', [seriesId, from]);
        await insertMany(this.writer, 'rollups', ['series_id', 'window_ms', 'profile_type_id', 'n_profiles', 'duration_ns', 'periods', 'scales', 'samples'], out);
      });
      ok = true;
    } finally {
      this.compacting = '';
      // A profile that arrived meanwhile left the window dirty and queued the
      // deletion of this rollup; otherwise the window is now rolled up.
      if (ok && !dirty.has(w)) setOf(this.rolledUp, seriesId).add(w);
      else if (!ok) dirty.add(w);
    }
  }

  eachRollup(seriesIds: number[] | null, fromMs: number, toMs: number, onRow: (r: RollupRow) => void): Promise<number> {
    const cols = 'series_id, window_ms, profile_type_id, n_profiles, duration_ns, periods, scales, samples';
    if (seriesIds !== null && seriesIds.length === 0) return Promise.resolve(0);
    // null: every series' own rollups (not the fleet's, which has its own id).
    const where = seriesIds === null ? `series_id <> ${FLEET_SERIES_ID} AND ` : `series_id IN (SELECT value FROM json_each(?)) AND `;
    const params: SqlValue[] = seriesIds === null ? [] : [idList(seriesIds)];
    return this.reader.each(`SELECT ${cols} FROM rollups WHERE ${where}window_ms >= ? AND window_ms + ${rollupWindowSql('series_id')} <= ?`, [...params, fromMs, toMs], onRow);
  }

  retain(cutoffMs: number, nowMs: number): Promise<RetentionResult> {
    return new Promise((resolve, reject) => {
      this.commits.addJob(async () => {
        try {
          resolve(await this.retainNow(cutoffMs, nowMs));
        } catch (e) {
          reject(e);
        }
      });
      this.commits.kick();
    });
  }

  private async retainNow(cutoffMs: number, nowMs: number): Promise<RetentionResult> {
    const result: RetentionResult = { profiles: 0, symbols: { mapping: 0, function: 0, location: 0, stack: 0 } };
    // Chunks keep each write transaction short so ingest keeps flowing.
    for (;;) {
      const r = await this.writer.run('DELETE FROM profiles WHERE id IN (SELECT id FROM profiles WHERE time_ms < ? LIMIT 5000)', [cutoffMs]);
      result.profiles += r.changes;
      if (r.changes < 5000) break;
      await this.commits.flushPending();
    }
    if (result.profiles > 0) {
      // Rollups of windows that lost profiles go too (raw rows serve what is
      // left of the window straddling the cutoff until it is rolled up again).
      // (Window lengths differ by series: rollupWindowMs.)
      await this.writer.run(`DELETE FROM rollups WHERE window_ms < (CAST(? AS INTEGER) / ${rollupWindowSql('series_id')} + 1) * ${rollupWindowSql('series_id')}`, [cutoffMs]);
      for (const [sid, set] of this.rolledUp) {
        const cutWindow = Math.floor(cutoffMs / rollupWindowMs(sid));
        for (const w of set) {
          if (w <= cutWindow) {
            set.delete(w);
            if (w === cutWindow) setOf(this.dirty, sid).add(w);
          }
        }
      }
      for (const [sid, set] of this.dirty) {
        const cutWindow = Math.floor(cutoffMs / rollupWindowMs(sid));
        for (const w of set) if (w < cutWindow) set.delete(w);
      }
      for (const s of this.series.values()) if (s.firstMs < cutoffMs) await this.refreshBounds(s.id);
    }
    // Symbol sweep (store.ts explains the bound). It scans the symbol tables,
    // so it runs only when the bound moved: at most once per mark epoch.
    const oldest = await this.writer.get<{ t: number | null }>('SELECT MIN(time_ms) AS t FROM profiles');
    const bound = Math.min(oldest?.t == null ? Infinity : markEpoch(oldest.t), markEpoch(nowMs) - 1);
    if (bound > this.lastGcCutoff) {
      await this.writer.transaction(async () => {
        for (const kind of SYMBOL_KINDS) result.symbols[kind] = (await this.writer.run(`DELETE FROM ${TABLE[kind]} WHERE mark < ?`, [bound])).changes;
      });
      this.lastGcCutoff = bound;
    }
    if (result.profiles > 0 || Object.values(result.symbols).some((n) => n > 0)) await this.writer.exec('PRAGMA incremental_vacuum');
    return result;
  }

  eachProfile(
    seriesIds: number[] | null,
    fromMs: number,
    toMs: number,
    columns: readonly (keyof ProfileRow)[],
    onRow: (r: ProfileRow) => void,
    limit = -1,
    exclude?: ReadonlySet<string>,
  ): Promise<number> {
    const cols = columns.join(', ');
    if (seriesIds !== null && seriesIds.length === 0) return Promise.resolve(0);
    const params: SqlValue[] = [fromMs, toMs];
    let skip = '';
    if (exclude && exclude.size > 0) {
      skip = ` AND (series_id || ':' || (time_ms / ${ROLLUP_WINDOW_MS})) NOT IN (SELECT value FROM json_each(?))`;
      params.push(JSON.stringify([...exclude]));
    }
    params.push(limit);
    if (seriesIds === null) {
      return this.reader.each(`SELECT ${cols} FROM profiles WHERE time_ms >= ? AND time_ms < ?${skip} ORDER BY time_ms LIMIT ?`, params, onRow);
    }
    // The IN list rides on the (series_id, time_ms) index.
    return this.reader.each(
      `SELECT ${cols} FROM profiles WHERE series_id IN (SELECT value FROM json_each(?)) AND time_ms >= ? AND time_ms < ?${skip} ORDER BY time_ms LIMIT ?`,
      [idList(seriesIds), ...params],
      onRow,
    );
  }

  getProfile(id: number): Promise<ProfileRow | undefined> {
    return this.reader.get<ProfileRow>('SELECT * FROM profiles WHERE id = ?', [id]);
  }

  async fetchStacks(ids: readonly number[]): Promise<StackRow[]> {
    const rows = await this.byIds<{ id: number; locations: Buffer }>('stacks', 'id, locations', ids);
    return rows.map((r) => ({ id: r.id, locations: unpackIds(r.locations) }));
  }

  async fetchLocations(ids: readonly number[]): Promise<LocationRow[]> {
    const rows = await this.byIds<{ id: number; mapping_id: number; address: string; is_folded: number; lines: string }>('locations', 'id, mapping_id, address, is_folded, lines', ids);
    return rows.map((r) => ({
      id: r.id,
      mappingId: r.mapping_id,
      address: BigInt('0x' + r.address),
      isFolded: r.is_folded !== 0,
      lines: r.lines === '' ? [] : r.lines.split(',').map(Number),
    }));
  }

  async fetchFunctions(ids: readonly number[]): Promise<FunctionRow[]> {
    const rows = await this.byIds<{ id: number; name: string; system_name: string; filename: string; start_line: number }>('functions', 'id, name, system_name, filename, start_line', ids);
    return rows.map((r) => ({ id: r.id, name: r.name, systemName: r.system_name, filename: r.filename, startLine: r.start_line }));
  }

  async fetchMappings(ids: readonly number[]): Promise<MappingRow[]> {
    const rows = await this.byIds<{ id: number; build_id: string; filename: string; file_offset: string; size: string }>('mappings', 'id, build_id, filename, file_offset, size', ids);
    return rows.map((r) => ({ id: r.id, buildId: r.build_id, filename: r.filename, fileOffset: BigInt('0x' + r.file_offset), size: BigInt('0x' + r.size) }));
  }

  private byIds<T>(table: string, cols: string, ids: readonly number[]): Promise<T[]> {
    if (ids.length === 0) return Promise.resolve([]);
    return this.reader.all<T>(`SELECT ${cols} FROM ${table} WHERE id IN (SELECT value FROM json_each(?))`, [idList(ids)]);
  }

  commitStats(): { commits: number; ingests: number } {
    const st = this.commits.stats;
    return { commits: st.commits, ingests: st.batches };
  }

  async symbolRowCounts(): Promise<Record<SymbolKind, number>> {
    const out = { mapping: 0, function: 0, location: 0, stack: 0 };
    for (const kind of SYMBOL_KINDS) out[kind] = (await this.reader.get<{ n: number }>(`SELECT COUNT(*) AS n FROM ${TABLE[kind]}`))!.n;
    return out;
  }

  /** Bytes of the database, its WAL and shared-memory files. */
  async sizeBytes(): Promise<number> {
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
    await this.commits.close();
    await this.writer.exec('PRAGMA wal_checkpoint(TRUNCATE)').catch(() => undefined);
    await this.reader.close();
    await this.writer.close();
  }
}

/** Column lists and the "same content" condition of each symbol upsert (mark last). */
const UPSERT: Record<RowKind, [string[], string]> = {
  mapping: [['id', 'build_id', 'filename', 'file_offset', 'size', 'mark'], "build_id = excluded.build_id AND (excluded.build_id <> '' OR filename = excluded.filename)"],
  function: [
    ['id', 'name', 'system_name', 'filename', 'start_line', 'mark'],
    'name = excluded.name AND system_name = excluded.system_name AND filename = excluded.filename AND start_line = excluded.start_line',
  ],
  location: [
    ['id', 'mapping_id', 'address', 'is_folded', 'lines', 'mark'],
    'mapping_id = excluded.mapping_id AND address = excluded.address AND is_folded = excluded.is_folded AND lines = excluded.lines',
  ],
};

function setOf<K, V>(m: Map<K, Set<V>>, k: K): Set<V> {
  let s = m.get(k);
  if (!s) m.set(k, (s = new Set()));
  return s;
}
