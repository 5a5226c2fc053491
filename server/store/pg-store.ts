// The PostgreSQL backend of ProfileStore (store.ts), through `pg`. Several
// stateless servers may share one database: ids are content hashes (no
// allocator), symbol rows are upserted with "same content" conditions (two
// servers writing the same row agree; different content under one id is a
// collision, refused), profile ids come from a database sequence (each server
// takes them in blocks), and each server picks up the series others created
// (refresh) before answering.
//
// Samples are partitioned by day (`profiles_d<day>`), created on demand, so
// retention drops whole partitions. The distribution key is explicit:
// `series_id` leads the profile and rollup keys, so the same schema can be
// distributed by Citus (docs/architecture.md says how).
//
// Writes are group-committed per server as in the SQLite backend
// (group-commit.ts): every ingest waiting in the queue goes into one
// transaction (in the steady state one statement), acknowledged after it commits. Rows are written in a fixed order (kind, then ascending id), so two
// servers' transactions take row locks in the same order and cannot deadlock
// on them; a deadlock or serialization failure is still retried.
import pg from 'pg';
import { IdMap } from './id-map.js';
import { remapSamples } from './sample-codec.js';
import { WindowMerge } from './window-merge.js';
import { encodeDense, groupRefs, resolveStackRefs, writeStacks, type RefRowIo, type StackRowIo, type StackWrite } from './stack-ids.js';
import { MARKS_CACHE_MAX_ROWS, rememberCommitted } from './committed-memory.js';
import { DEFAULT_PG_COMMIT_LINGER_MS, failIngestGroup, GroupCommitQueue, type PendingWrite } from './group-commit.js';
import { errIdCollision, errUnknownStacks } from '../errors.js';
import {
  canonicalLabels,
  FLEET_SERIES_ID,
  markEpoch,
  ROLLUP_GRACE_MS,
  ROLLUP_WINDOW_MS,
  FLEET_WINDOW_MS,
  rollupWindowMs,
  rollupWindowSql,
  type RollupRow,
  packIds,
  unpackIds,
  SYMBOL_KINDS,
  typeDescriptor,
  type FunctionRow,
  type IngestBatch,
  type LocationRow,
  type NewProfile,
  type MappingRow,
  type ProfileRow,
  type ProfileStore,
  type StoreOptions,
  type ProfileType,
  type RetentionResult,
  type Series,
  type StackRow,
  type SymbolKind,
} from './store.js';

export const PARTITION_MS = 24 * 60 * 60 * 1000;
/** How often (at most) a server looks for windows to roll up, after a commit. */
const ROLLUP_CHECK_MS = 2000;
const dayOf = (ms: number) => Math.floor(ms / PARTITION_MS);
/** Profile rows per INSERT: 10 parameters each, under PostgreSQL's 65,535. */
const MAX_PROFILES_PER_STATEMENT = 500;
/**
 * Profile rows up to this size stay whole in their page: PostgreSQL would
 * otherwise try to compress (pglz) and then move out of line (a second heap
 * and index insert in the TOAST table) every row over ~2 KB, which a
 * 2,000-stack profile is (about 2.3 KB), and its varint samples barely compress.
 * The most a heap page allows.
 */
const PROFILE_TOAST_TUPLE_TARGET = 8160;
/** Statements inserting up to this many profile rows are prepared (one per row count and connection). */
const PREPARED_PROFILE_ROWS_MAX = 16;
/** Profile ids a server takes from the sequence at once; unused ones are gaps, as with nextval itself. */
const PROFILE_ID_BLOCK = 1024;

/**
 * Rollup bookkeeping: the (series, window) pairs and fleet windows these
 * profiles make dirty, in key order. An existing dirty row is updated, not
 * skipped: the row lock makes a server rolling that window up wait for this
 * commit (so its read sees these profiles), or, if it took the row first,
 * makes this insert wait and write the row again (so the window is dirty again).
 */
function dirtyWindows(profiles: readonly NewProfile[]): [number, number][] {
  const dirty = new Map<string, [number, number]>();
  for (const p of profiles) {
    if (p.timeMs < 0) continue;
    for (const sid of [p.seriesId, FLEET_SERIES_ID]) {
      const len = rollupWindowMs(sid);
      const w = Math.floor(p.timeMs / len) * len;
      dirty.set(`${sid},${w}`, [sid, w]);
    }
  }
  return [...dirty.values()].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
}

/** How many of these profile ids are stored: after a lost connection, whether its transaction committed. */
async function storedProfileCount(c: Client, ids: readonly number[]): Promise<number> {
  if (ids.length === 0) return 0;
  const r = await c.query<{ n: number }>('SELECT count(*)::int AS n FROM profiles WHERE id = ANY($1::bigint[])', [ids]);
  return r.rows[0]?.n ?? 0;
}

/** SQL, or SQL plus a JS step run after it in the same transaction (data SQL cannot convert). */
interface PgMigration {
  sql: string;
  run?: (c: pg.PoolClient) => Promise<void>;
}

export const PG_MIGRATIONS: readonly (string | PgMigration)[] = [
  `
  CREATE TABLE mappings (id bigint PRIMARY KEY, build_id text NOT NULL, filename text NOT NULL,
    file_offset text NOT NULL, size text NOT NULL, mark integer NOT NULL);
  CREATE TABLE functions (id bigint PRIMARY KEY, name text NOT NULL, system_name text NOT NULL,
    filename text NOT NULL, start_line bigint NOT NULL, mark integer NOT NULL);
  CREATE TABLE locations (id bigint PRIMARY KEY, mapping_id bigint NOT NULL, address text NOT NULL,
    is_folded boolean NOT NULL, lines text NOT NULL, mark integer NOT NULL);
  CREATE TABLE stacks (id bigint PRIMARY KEY, locations bytea NOT NULL, mark integer NOT NULL);
  CREATE SEQUENCE series_version;
  -- version: bumped on every change, so servers re-read only what changed (refresh).
  CREATE TABLE series (id bigint PRIMARY KEY, labels text NOT NULL, first_ms bigint NOT NULL, last_ms bigint NOT NULL,
    version bigint NOT NULL DEFAULT nextval('series_version'));
  CREATE INDEX series_version_idx ON series (version);
  CREATE TABLE profile_types (id bigint PRIMARY KEY, descriptor text NOT NULL);
  CREATE TABLE series_types (series_id bigint NOT NULL, profile_type_id bigint NOT NULL, PRIMARY KEY (series_id, profile_type_id));
  CREATE SEQUENCE profile_ids;
  CREATE TABLE profiles (
    id bigint NOT NULL,
    series_id bigint NOT NULL,
    time_ms bigint NOT NULL,
    duration_ns bigint NOT NULL,
    period bigint NOT NULL,
    profile_type_id bigint NOT NULL,
    scales text NOT NULL,
    totals text NOT NULL,
    n_stacks integer NOT NULL,
    samples bytea NOT NULL,
    PRIMARY KEY (series_id, time_ms, id)
  ) PARTITION BY RANGE (time_ms);
  CREATE INDEX profiles_id ON profiles (id);
  CREATE INDEX profiles_time ON profiles (time_ms);
  `,
  // 2: dense stack ids (stack-ids.ts): the content hash becomes the unique
  // `hash`, the database hands out `id` (identity), packed samples store ids.
  // Stored profiles are re-packed under the new ids.
  {
    sql: `
    CREATE TABLE stacks_v2 (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, hash bigint NOT NULL, locations bytea NOT NULL, mark integer NOT NULL);
    INSERT INTO stacks_v2 (hash, locations, mark) SELECT id, locations, mark FROM stacks ORDER BY id;
    `,
    run: async (c) => {
      const idOf = new Map<number, number>();
      for (const r of (await c.query<{ id: number; hash: number }>('SELECT id, hash FROM stacks_v2')).rows) idOf.set(r.hash, r.id);
      const newId = (old: number) => {
        if (old === 0) return 0;
        const id = idOf.get(old);
        if (id === undefined) throw new Error(`schema 2 migration: a stored profile references stack ${old}, which is not in the stacks table`);
        return id;
      };
      for (let after = 0; ; ) {
        const rows = (await c.query<{ id: number; scales: string; samples: Buffer }>('SELECT id, scales, samples FROM profiles WHERE id > $1 ORDER BY id LIMIT 500', [after])).rows;
        if (rows.length === 0) break;
        for (const r of rows) {
          await c.query('UPDATE profiles SET samples = $1 WHERE id = $2', [remapSamples(r.samples, r.scales.split(',').map(Number), newId), r.id]);
        }
        after = rows[rows.length - 1]!.id;
      }
      await c.query('DROP TABLE stacks');
      await c.query('ALTER TABLE stacks_v2 RENAME TO stacks');
      await c.query('CREATE UNIQUE INDEX stacks_hash ON stacks (hash)');
    },
  },
  // 3: rollups (see the header of rollUpDue): per series and window, and for
  // the fleet (series_id 0), the merge of the window's profiles. rollup_dirty
  // holds the (series, window) pairs with profiles their rollup does not
  // include; each ingest writes its pairs, and a rollup is read only when its
  // pair is not dirty. series_id leads both keys (the distribution key).
  `
  CREATE TABLE rollups (
    series_id bigint NOT NULL,
    window_ms bigint NOT NULL,
    profile_type_id bigint NOT NULL,
    n_profiles integer NOT NULL,
    duration_ns bigint NOT NULL,
    periods text NOT NULL,
    scales text NOT NULL,
    samples bytea NOT NULL,
    PRIMARY KEY (series_id, window_ms, profile_type_id));
  CREATE TABLE rollup_dirty (series_id bigint NOT NULL, window_ms bigint NOT NULL, PRIMARY KEY (series_id, window_ms));
  INSERT INTO rollup_dirty SELECT DISTINCT series_id, (time_ms / ${ROLLUP_WINDOW_MS}) * ${ROLLUP_WINDOW_MS} FROM profiles WHERE time_ms >= 0;
  INSERT INTO rollup_dirty SELECT DISTINCT ${FLEET_SERIES_ID}, (time_ms / ${FLEET_WINDOW_MS}) * ${FLEET_WINDOW_MS} FROM profiles WHERE time_ms >= 0;
  `,
  // 4: rollups written before the accumulator fix of 2026-11-30 lost one
  // value each time a window's accumulator grew: drop them and mark every
  // window with profiles dirty, so they are rolled up again.
  `
  DELETE FROM rollups;
  INSERT INTO rollup_dirty SELECT DISTINCT series_id, (time_ms / ${ROLLUP_WINDOW_MS}) * ${ROLLUP_WINDOW_MS} FROM profiles WHERE time_ms >= 0 ON CONFLICT DO NOTHING;
  INSERT INTO rollup_dirty SELECT DISTINCT ${FLEET_SERIES_ID}, (time_ms / ${FLEET_WINDOW_MS}) * ${FLEET_WINDOW_MS} FROM profiles WHERE time_ms >= 0 ON CONFLICT DO NOTHING;
  `,
  // 5: samples blobs are written in coding 2 from here on (sample-codec.ts).
  // No data changes, and coding-1 rows stay readable. The version is what
  // makes a server from before coding 2, which would read such a blob as
  // coding 1 and serve wrong numbers, refuse the store instead ("schema
  // version ..., newer than this server"). In a rolling upgrade of several
  // servers on one database, stop the old servers before a new one starts.
  'SELECT 1;',
  // 6: each stack row keeps the check lane of the marks cache (stack-ids.ts
  // StackWrite.check), so a server can vouch for rows other servers wrote
  // (learnStacks). Rows stored before have none and are not learned.
  'ALTER TABLE stacks ADD COLUMN IF NOT EXISTS check_lane integer;',
];

type Client = pg.PoolClient;

/**
 * How often a server reads the stack rows stored since its last look
 * (learnStacks), and how many rows one read takes at most.
 */
const LEARN_INTERVAL_MS = 1000;
const LEARN_PAGE_ROWS = 20_000;

function isRetryable(e: unknown): boolean {
  const code = (e as { code?: string }).code;
  return code === '40P01' || code === '40001';
}

/**
 * The pooled client's connection is gone: PostgreSQL restarted or an
 * administrator terminated the backend while it sat idle in the pool. The
 * pool drops such a client when its socket's close event runs, which can be
 * after the next ingest has already checked it out.
 */
function isConnectionLost(e: unknown): boolean {
  const code = (e as { code?: string }).code;
  if (code === '57P01' || code === '57P02' || code === '57P03') return true; // admin shutdown, crash shutdown, cannot connect now
  return code === undefined && e instanceof Error && /Connection terminated|ECONNRESET|EPIPE|not queryable/.test(e.message);
}

/** Symbol kinds keyed by content hash; stacks are written by stack-ids.ts. */
type RowKind = Exclude<SymbolKind, 'stack'>;
const ROW_KINDS: readonly RowKind[] = ['mapping', 'function', 'location'];
const TABLE: Record<SymbolKind, string> = { mapping: 'mappings', function: 'functions', location: 'locations', stack: 'stacks' };

/** Columns (with array types for unnest) and the "same content" condition of each symbol upsert. */
const UPSERT: Record<RowKind, [string[], string[], string]> = {
  mapping: [
    ['id', 'build_id', 'filename', 'file_offset', 'size', 'mark'],
    ['bigint', 'text', 'text', 'text', 'text', 'integer'],
    "t.build_id = excluded.build_id AND (excluded.build_id <> '' OR t.filename = excluded.filename)",
  ],
  function: [
    ['id', 'name', 'system_name', 'filename', 'start_line', 'mark'],
    ['bigint', 'text', 'text', 'text', 'bigint', 'integer'],
    't.name = excluded.name AND t.system_name = excluded.system_name AND t.filename = excluded.filename AND t.start_line = excluded.start_line',
  ],
  location: [
    ['id', 'mapping_id', 'address', 'is_folded', 'lines', 'mark'],
    ['bigint', 'bigint', 'text', 'boolean', 'text', 'integer'],
    't.mapping_id = excluded.mapping_id AND t.address = excluded.address AND t.is_folded = excluded.is_folded AND t.lines = excluded.lines',
  ],
};

const hex = (v: bigint) => v.toString(16);

/**
 * Stack rows through one client inside a transaction. Rows are selected and
 * inserted in ascending hash order; an insert another server made meanwhile
 * is skipped (ON CONFLICT DO NOTHING) and found by the next select, so no
 * identity value is spent on a stack that already has one (ids stay dense).
 */
function stackIo(c: Client): StackRowIo {
  return {
    select: async (hashes) =>
      (await c.query<{ hash: number; id: number; locations: Buffer }>('SELECT hash, id, locations FROM stacks WHERE hash = ANY($1::bigint[])', [hashes])).rows,
    // Every found row is updated (not only lower marks): the row lock keeps a concurrent retention sweep from deleting it.
    // Locked in id order, so two servers bumping overlapping stacks do not deadlock.
    bumpMarks: async (ids, mark) =>
      (
        await c.query<{ id: number }>(
          'UPDATE stacks SET mark = GREATEST(mark, $1) WHERE id IN (SELECT id FROM stacks WHERE id = ANY($2::bigint[]) ORDER BY id FOR UPDATE) RETURNING id',
          [mark, ids],
        )
      ).rows.map((r) => r.id),
    insert: async (rows) =>
      (
        await c.query<{ hash: number; id: number }>(
          `INSERT INTO stacks (hash, locations, mark, check_lane) SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::integer[], $4::integer[]) ON CONFLICT (hash) DO NOTHING RETURNING hash, id`,
          [rows.map((r) => r.hash), rows.map((r) => r.locations), rows.map((r) => r.mark), rows.map((r) => r.check)],
        )
      ).rows,
  };
}

/**
 * Rows behind referenced stacks (resolveStackRefs), through one client inside
 * the ingest transaction. Raised rows are locked in id order (FOR UPDATE), so
 * a concurrent retention sweep either waits for this commit (and then sees the
 * new mark) or deleted them first (and they are missing from the answer).
 */
function refIo(c: Client): RefRowIo {
  return {
    selectStacks: async (hashes) =>
      (await c.query<{ hash: number; id: number; mark: number; locations: Buffer }>('SELECT hash, id, mark, locations FROM stacks WHERE hash = ANY($1::bigint[])', [hashes])).rows,
    selectLocations: async (ids) =>
      (await c.query<{ id: number; mark: number; mapping_id: number; lines: string }>('SELECT id, mark, mapping_id, lines FROM locations WHERE id = ANY($1::bigint[])', [ids])).rows,
    raiseMarks: async (kind, ids, mark) => {
      if (ids.length === 0) return [];
      const t = TABLE[kind];
      const r = await c.query<{ id: number }>(
        `UPDATE ${t} SET mark = GREATEST(mark, $1) WHERE id IN (SELECT id FROM ${t} WHERE id = ANY($2::bigint[]) ORDER BY id FOR UPDATE) RETURNING id`,
        [mark, ids],
      );
      return r.rows.map((x) => x.id);
    },
  };
}

export class PgStore implements ProfileStore {
  readonly backend = 'postgres' as const;
  /** Wide: a stack's dense id beside its mark (committed-memory.ts). */
  readonly marks = new IdMap(1 << 16, true);
  private readonly series = new Map<number, Series>();
  private readonly profileTypes = new Map<number, ProfileType>();
  private seriesVersion = 0;
  private readonly partitions = new Set<number>();
  private readonly commits: GroupCommitQueue<IngestBatch, number[]>;
  private lastGcBound = -Infinity;
  private rolling: Promise<void> | undefined;
  private lastRollupMs = 0;
  /** Profile ids taken from the sequence and not used yet (takeProfileIds). */
  private profileIdPool: number[] = [];
  /** Highest stack id learnStacks has read. */
  private stackCursor = 0;
  private learnTimer: NodeJS.Timeout | undefined;
  private learning: Promise<unknown> | undefined;

  private constructor(
    private readonly pool: pg.Pool,
    options: StoreOptions,
  ) {
    this.commits = new GroupCommitQueue<IngestBatch, number[]>((group) => this.flushOnce(group), {
      lingerMs: options.commitLingerMs ?? DEFAULT_PG_COMMIT_LINGER_MS,
    });
  }

  static async open(url: string, options: StoreOptions = {}): Promise<PgStore> {
    const pool = new pg.Pool({
      connectionString: url,
      max: 8,
      // Ids and times are below 2^53 by construction (src/profile/identity.ts): bigint as a JS number is exact.
      types: { getTypeParser: ((oid: number, format?: string) => (oid === 20 ? Number : pg.types.getTypeParser(oid, format as 'text'))) as typeof pg.types.getTypeParser },
    });
    pool.on('error', () => undefined); // an idle client's lost connection: the next query reconnects
    // A checked-out client whose connection ends (PostgreSQL restarted, the
    // network cut) fails its queries, which the caller sees, and then also
    // emits 'error' on itself. The pool listens only while a client is idle,
    // so between two queries of a transaction nobody would: an uncaught
    // exception, which stopped the whole server (seen in CI, in
    // test/server-store-down.test.ts). The pool drops such a client when it is released.
    pool.on('connect', (client) => client.on('error', () => undefined));
    const store = new PgStore(pool, options);
    await store.migrate();
    await store.refresh();
    await store.learnStacks();
    store.learnTimer = setInterval(() => {
      // A read that fails (the database restarting) only leaves the cache as it was: the next tick reads on from the cursor.
      store.learning ??= store.learnStacks().catch(() => 0).finally(() => (store.learning = undefined));
    }, LEARN_INTERVAL_MS).unref();
    return store;
  }

  /**
   * Puts the stack rows stored since the last call (by any server) into the
   * marks cache, with their marks, check lanes and dense ids, and returns
   * how many it added. Servers sharing a database each see a share of the
   * fleet's pushes; without this, each learned every stack of the fleet on
   * its own, through a transaction that finds the row stored and raises its
   * mark (three servers: three times the first day's writes, measured in
   * bench/fleet-ingest.ts). A row read here vouches as much as one this
   * server wrote: it was stored with at least that mark, marks only rise,
   * and garbage collection takes only rows marked below the current epoch
   * minus one (store.ts), so only rows marked in the current epoch are
   * taken. It reads by dense id: a row whose id was drawn before the
   * cursor but committed after the read is never learned here, which costs
   * only what learning it the slow way costs (this is a cache).
   */
  async learnStacks(): Promise<number> {
    const epoch = markEpoch(Date.now());
    let learned = 0;
    for (;;) {
      if (this.marks.size >= MARKS_CACHE_MAX_ROWS) return learned;
      const r = await this.pool.query<{ id: number; hash: number; mark: number; check_lane: number | null }>(
        'SELECT id, hash, mark, check_lane FROM stacks WHERE id > $1 ORDER BY id LIMIT $2',
        [this.stackCursor, LEARN_PAGE_ROWS],
      );
      for (const row of r.rows) {
        if (row.check_lane === null || row.mark < epoch || this.marks.get(row.hash, -1) >= row.mark) continue;
        this.marks.set3(row.hash, row.mark, row.check_lane, row.id);
        learned++;
      }
      if (r.rows.length > 0) this.stackCursor = r.rows[r.rows.length - 1]!.id;
      if (r.rows.length < LEARN_PAGE_ROWS) return learned;
    }
  }

  private async migrate(): Promise<void> {
    const c = await this.pool.connect();
    try {
      await c.query('BEGIN');
      // One server migrates at a time (others wait here).
      await c.query('SELECT pg_advisory_xact_lock(7413001)');
      await c.query('CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)');
      const r = await c.query<{ version: number }>('SELECT version FROM schema_version');
      let version = r.rows[0]?.version ?? 0;
      if (r.rows.length === 0) await c.query('INSERT INTO schema_version VALUES (0)');
      if (version > PG_MIGRATIONS.length) throw new Error(`database has schema version ${version}, newer than this server (${PG_MIGRATIONS.length})`);
      for (; version < PG_MIGRATIONS.length; version++) {
        const m = PG_MIGRATIONS[version]!;
        await c.query(typeof m === 'string' ? m : m.sql);
        if (typeof m !== 'string') await m.run?.(c);
        await c.query('UPDATE schema_version SET version = $1', [version + 1]);
      }
      await c.query('COMMIT');
    } catch (e) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw e;
    } finally {
      c.release();
    }
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

  /** Series, their bounds and kinds changed by any server since the last refresh. */
  async refresh(): Promise<void> {
    const changed = await this.pool.query<{ id: number; labels: string; first_ms: number; last_ms: number; version: number }>(
      'SELECT id, labels, first_ms, last_ms, version FROM series WHERE version > $1',
      [this.seriesVersion],
    );
    if (changed.rows.length === 0) return;
    const types = await this.pool.query<{ id: number; descriptor: string }>('SELECT id, descriptor FROM profile_types');
    for (const t of types.rows) if (!this.profileTypes.has(t.id)) this.profileTypes.set(t.id, { id: t.id, ...(JSON.parse(t.descriptor) as Omit<ProfileType, 'id'>) });
    for (const r of changed.rows) {
      let s = this.series.get(r.id);
      if (!s) this.series.set(r.id, (s = { id: r.id, labels: JSON.parse(r.labels) as Record<string, string>, firstMs: r.first_ms, lastMs: r.last_ms, typeIds: new Set() }));
      // The row is widened by every server's commits and narrowed by retention: it is the truth.
      s.firstMs = r.first_ms;
      s.lastMs = r.last_ms;
      this.seriesVersion = Math.max(this.seriesVersion, r.version);
    }
    const st = await this.pool.query<{ series_id: number; profile_type_id: number }>('SELECT series_id, profile_type_id FROM series_types WHERE series_id = ANY($1::bigint[])', [
      changed.rows.map((r) => r.id),
    ]);
    for (const r of st.rows) this.series.get(r.series_id)?.typeIds.add(r.profile_type_id);
  }

  write(batch: IngestBatch): Promise<number[]> {
    return this.commits.write(batch);
  }

  private async ensurePartitions(c: Client, days: Set<number>): Promise<void> {
    for (const d of days) {
      if (this.partitions.has(d)) continue;
      // Its own transaction: creating a partition takes a lock on the parent we must not hold through the ingest.
      try {
        await c.query(
          `CREATE TABLE IF NOT EXISTS profiles_d${d} PARTITION OF profiles FOR VALUES FROM (${d * PARTITION_MS}) TO (${(d + 1) * PARTITION_MS}) WITH (toast_tuple_target = ${PROFILE_TOAST_TUPLE_TARGET})`,
        );
      } catch (e) {
        // Another server created it at the same moment.
        const code = (e as { code?: string }).code;
        if (code !== '42P07' && code !== '23505') throw e;
      }
      this.partitions.add(d);
    }
  }

  /** Commits one group (group-commit.ts) in one transaction. */
  private async flushOnce(queued: PendingWrite<IngestBatch, number[]>[]): Promise<void> {
    const rows: Record<RowKind, Map<number, unknown[]>> = { mapping: new Map(), function: new Map(), location: new Map() };
    const put = (kind: RowKind, id: number, row: unknown[], mark: number) => {
      const cur = rows[kind].get(id);
      if (!cur || (cur[cur.length - 1] as number) < mark) rows[kind].set(id, row);
    };
    const stacks = new Map<number, StackWrite>();
    let stackIds: IdMap | undefined;
    // Labels as ingest gave them: canonicalized only where series rows are written (not in the steady state, which only widens bounds).
    const series = new Map<number, { labels: Record<string, string>; first: number; last: number }>();
    const types = new Map<number, string>();
    const seriesTypes = new Set<string>();
    const days = new Set<number>();
    for (const { batch } of queued) {
      const m = batch.mark;
      for (const r of batch.rows.mappings) put('mapping', r.id, [r.id, r.buildId, r.filename, hex(r.fileOffset), hex(r.size), m], m);
      for (const r of batch.rows.functions) put('function', r.id, [r.id, r.name, r.systemName, r.filename, r.startLine, m], m);
      for (const r of batch.rows.locations) put('location', r.id, [r.id, r.mappingId, hex(r.address), r.isFolded, r.lines.join(','), m], m);
      for (const r of batch.rows.stacks) {
        const cur = stacks.get(r.id);
        if (!cur || cur.mark < m) stacks.set(r.id, { hash: r.id, locations: packIds(r.locations), mark: m, check: batch.checks.get(r.id, 0) });
      }
      for (const t of batch.profileTypes) types.set(t.id, typeDescriptor(t));
      for (const p of batch.profiles) {
        days.add(dayOf(p.timeMs));
        // series_types is only ever added to; memory holds pairs this server committed or read back.
        if (!this.series.get(p.seriesId)?.typeIds.has(p.profileTypeId)) seriesTypes.add(`${p.seriesId},${p.profileTypeId}`);
        const known = this.series.get(p.seriesId);
        const labels = batch.series.find((s) => s.id === p.seriesId)?.labels ?? known?.labels ?? {};
        const e = series.get(p.seriesId);
        if (e) {
          e.first = Math.min(e.first, p.timeMs);
          e.last = Math.max(e.last, p.timeMs);
        } else series.set(p.seriesId, { labels, first: p.timeMs, last: p.timeMs });
      }
    }
    const profiles = queued.flatMap((q) => q.batch.profiles);
    let ids: number[] = [];
    let collided: Set<number> | undefined;
    let unknown: Set<number> | undefined;
    const refs = groupRefs(queued.map((q) => q.batch), stacks);
    // A database that cannot be reached answers every queued ingest with the
    // error (a 5xx the agent retries from its spool), never with silence.
    let c: Client;
    try {
      c = await this.pool.connect();
    } catch (e) {
      failIngestGroup(this.commits, queued, e, undefined);
      return;
    }
    // The steady state (every symbol stored, series and kinds known, today's
    // partition made) adds only profile rows: one statement, atomic on its
    // own, so no BEGIN/COMMIT (one round trip instead of six).
    const steady =
      refs.size === 0 &&
      stacks.size === 0 &&
      ROW_KINDS.every((k) => rows[k].size === 0) &&
      types.size === 0 &&
      seriesTypes.size === 0 &&
      queued.every((q) => q.batch.series.length === 0) &&
      [...days].every((d) => this.partitions.has(d)) &&
      profiles.length <= MAX_PROFILES_PER_STATEMENT;
    const dirty = dirtyWindows(profiles);
    let committing = false;
    let released = false;
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          if (ids.length !== profiles.length) ids = await this.takeProfileIds(c, profiles.length);
          if (steady) {
            stackIds = (await writeStacks(stacks, profiles, stackIo(c))).ids;
            const bounds = [...series].sort((x, y) => x[0] - y[0]).map(([id, b]): [number, number, number] => [id, b.first, b.last]);
            committing = true;
            await this.writeProfiles(c, profiles, stackIds, ids, bounds, dirty);
            break;
          }
          await this.ensurePartitions(c, days);
          await c.query('BEGIN');
          let known: Map<number, number> | undefined;
          if (refs.size > 0) {
            const r = await resolveStackRefs(refs, refIo(c));
            if (r.missing.length > 0) {
              unknown = new Set(r.missing);
              throw errUnknownStacks(r.missing);
            }
            known = r.ids;
          }
          const bad: number[] = [];
          for (const kind of ROW_KINDS) bad.push(...(await this.upsert(c, kind, rows[kind])));
          const written = await writeStacks(stacks, profiles, stackIo(c), known);
          bad.push(...written.collided);
          stackIds = written.ids;
          if (types.size > 0) {
            const t = [...types].sort((a, b) => a[0] - b[0]);
            const r = await c.query<{ id: number }>(
              `INSERT INTO profile_types AS t (id, descriptor) SELECT * FROM unnest($1::bigint[], $2::text[])
               ON CONFLICT (id) DO UPDATE SET descriptor = t.descriptor WHERE t.descriptor = excluded.descriptor RETURNING id`,
              [t.map((x) => x[0]), t.map((x) => x[1])],
            );
            const ok = new Set(r.rows.map((x) => x.id));
            bad.push(...t.map((x) => x[0]).filter((id) => !ok.has(id)));
          }
          if (series.size > 0) {
            // New series are inserted; known ones widen their bounds (and bump their version) only when they grow.
            const s = [...series].sort((a, b) => a[0] - b[0]);
            const r = await c.query<{ id: number }>(
              `INSERT INTO series AS t (id, labels, first_ms, last_ms) SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[])
               ON CONFLICT (id) DO UPDATE SET first_ms = LEAST(t.first_ms, excluded.first_ms), last_ms = GREATEST(t.last_ms, excluded.last_ms),
                 version = CASE WHEN excluded.first_ms < t.first_ms OR excluded.last_ms > t.last_ms THEN nextval('series_version') ELSE t.version END
               WHERE t.labels = excluded.labels RETURNING id`,
              [s.map((x) => x[0]), s.map((x) => canonicalLabels(x[1].labels)), s.map((x) => x[1].first), s.map((x) => x[1].last)],
            );
            const ok = new Set(r.rows.map((x) => x.id));
            bad.push(...s.map((x) => x[0]).filter((id) => !ok.has(id)));
          }
          if (bad.length > 0) {
            collided = new Set(bad);
            throw errIdCollision(`content ids ${bad.slice(0, 5).join(', ')} are taken by different content`);
          }
          const st = [...seriesTypes].map((k) => k.split(',').map(Number)).sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]!);
          if (st.length > 0) await c.query(
            `INSERT INTO series_types (series_id, profile_type_id) SELECT * FROM unnest($1::bigint[], $2::bigint[]) ON CONFLICT DO NOTHING`,
            [st.map((x) => x[0]), st.map((x) => x[1])],
          );
          await this.writeProfiles(c, profiles, stackIds!, ids, [], dirty);
          committing = true;
          await c.query('COMMIT');
          break;
        } catch (e) {
          // A connection lost before COMMIT was sent committed nothing: the group is retried on a
          // fresh client. Lost during the COMMIT (or the steady state's one statement), the outcome
          // is unknown until asked: the transaction stored all of this group's profile ids or none
          // (they are ours alone, from the pool), so a fresh client looks them up. All stored: done;
          // none: retried; the lookup failing too: the ingests get the error (the agents' spools retry).
          if (isConnectionLost(e) && attempt < 2) {
            c.release(e as Error); // destroys it
            released = true;
            c = await this.pool.connect();
            released = false;
            if (committing) {
              const stored = await storedProfileCount(c, ids);
              if (stored === ids.length) break;
              if (stored !== 0) throw e;
              committing = false;
            }
            continue;
          }
          if (!steady) await c.query('ROLLBACK').catch(() => undefined);
          if (!collided && !unknown && isRetryable(e) && attempt < 5) continue;
          throw e;
        }
      }
    } catch (e) {
      failIngestGroup(this.commits, queued, e, collided, unknown);
      return;
    } finally {
      if (!released) c.release();
    }
    rememberCommitted({ marks: this.marks, series: this.series, profileTypes: this.profileTypes }, queued.map((q) => q.batch), stackIds!);
    this.scheduleRollups();
    let next = 0;
    for (const q of queued) {
      q.resolve(ids.slice(next, next + q.batch.profiles.length));
      next += q.batch.profiles.length;
    }
  }

  /** Ids for n profiles, from the block this server took from the sequence (a round trip per PROFILE_ID_BLOCK, not per commit). */
  private async takeProfileIds(c: Client, n: number): Promise<number[]> {
    if (this.profileIdPool.length < n) {
      const want = Math.max(n - this.profileIdPool.length, PROFILE_ID_BLOCK);
      const r = await c.query<{ id: number }>("SELECT nextval('profile_ids') AS id FROM generate_series(1, $1::int)", [want]);
      for (const row of r.rows) this.profileIdPool.push(row.id);
    }
    return this.profileIdPool.splice(0, n);
  }

  /**
   * Inserts the profile rows; the last statement also widens the series'
   * bounds (id, first, last: only where they grow) and marks the rollup
   * windows dirty. The dirty rows reference `bounds`, so PostgreSQL updates
   * the series rows first and takes the dirty rows last, as every commit
   * does: the fleet's row is shared by every ingest and held briefly.
   */
  private async writeProfiles(
    c: Client,
    profiles: readonly NewProfile[],
    stackIds: IdMap,
    ids: readonly number[],
    bounds: readonly [number, number, number][],
    dirty: readonly [number, number][],
  ): Promise<void> {
    for (let i = 0; i < profiles.length; i += MAX_PROFILES_PER_STATEMENT) {
      const chunk = profiles.slice(i, i + MAX_PROFILES_PER_STATEMENT);
      const last = i + MAX_PROFILES_PER_STATEMENT >= profiles.length;
      const params: unknown[] = [];
      let sql = '';
      if (last) {
        params.push(
          bounds.map((b) => b[0]),
          bounds.map((b) => b[1]),
          bounds.map((b) => b[2]),
          dirty.map((d) => d[0]),
          dirty.map((d) => d[1]),
        );
        sql = `WITH bounds AS (
            UPDATE series t SET first_ms = LEAST(t.first_ms, v.first_ms), last_ms = GREATEST(t.last_ms, v.last_ms), version = nextval('series_version')
            FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS v(id, first_ms, last_ms)
            WHERE t.id = v.id AND (v.first_ms < t.first_ms OR v.last_ms > t.last_ms) RETURNING t.id),
          dirty AS (
            INSERT INTO rollup_dirty (series_id, window_ms) SELECT * FROM unnest($4::bigint[], $5::bigint[]) WHERE (SELECT count(*) FROM bounds) >= 0
            ON CONFLICT (series_id, window_ms) DO UPDATE SET window_ms = excluded.window_ms)
          `;
      }
      const values = chunk.map((p, k) => {
        const { blob, scales, nStacks } = encodeDense(p, stackIds);
        const b = params.length;
        params.push(ids[i + k], p.seriesId, p.timeMs, p.durationNs, p.period, p.profileTypeId, scales.join(','), p.totals.join(','), nStacks, blob);
        return `(${Array.from({ length: 10 }, (_, j) => `$${b + j + 1}`).join(',')})`;
      });
      sql += `INSERT INTO profiles (id, series_id, time_ms, duration_ns, period, profile_type_id, scales, totals, n_stacks, samples) VALUES ${values.join(',')}`;
      // The usual commit's statement (a few profiles) is prepared once per
      // connection, so PostgreSQL neither parses nor plans it again. Only a
      // last chunk is that short (the others hold MAX_PROFILES_PER_STATEMENT rows).
      const name = chunk.length <= PREPARED_PROFILE_ROWS_MAX ? `fleetprof_profiles_${chunk.length}` : undefined;
      await c.query({ name, text: sql, values: params });
    }
  }

  private async upsert(c: Client, kind: RowKind, rows: Map<number, unknown[]>): Promise<number[]> {
    if (rows.size === 0) return [];
    const [columns, types, same] = UPSERT[kind];
    const sorted = [...rows.values()].sort((a, b) => (a[0] as number) - (b[0] as number));
    const accepted = new Set<number>();
    for (let i = 0; i < sorted.length; i += 20000) {
      const chunk = sorted.slice(i, i + 20000);
      const arrays = columns.map((_, j) => chunk.map((r) => r[j]));
      const r = await c.query<{ id: number }>(
        `INSERT INTO ${TABLE[kind]} AS t (${columns.join(',')}) SELECT * FROM unnest(${types.map((t, j) => `$${j + 1}::${t}[]`).join(',')})
         ON CONFLICT (id) DO UPDATE SET mark = GREATEST(t.mark, excluded.mark) WHERE ${same} RETURNING id`,
        arrays,
      );
      for (const x of r.rows) accepted.add(x.id);
    }
    return [...rows.keys()].filter((id) => !accepted.has(id));
  }

  async ingestBarrier(): Promise<void> {
    await this.idle();
    await this.rolling;
    await this.rollUpDue();
  }

  idle(): Promise<void> {
    return this.commits.idle();
  }

  /**
   * Rollups. Any server may roll up any window: it takes the window's dirty
   * row (DELETE ... FOR UPDATE SKIP LOCKED, so two servers never build the same
   * window at once), merges the window's profiles and replaces the rollup, in
   * one transaction. An ingest writes its dirty rows (insert or no-op update,
   * which locks them) with its profiles: a roller taking the row waits for
   * that commit and then reads its profiles, or had taken it first and the
   * ingest's write waits and re-creates it, so the window is dirty again.
   * Readers skip a rollup whose pair is dirty and read the raw rows instead,
   * so a rollup is only ever read when it holds every committed profile.
   * Windows are rolled up once their series (the fleet: its newest series)
   * has data past the window's end plus a grace period, as in SQLite.
   */
  private scheduleRollups(): void {
    if (this.rolling || this.commits.closed) return;
    const now = Date.now();
    if (now - this.lastRollupMs < ROLLUP_CHECK_MS) return;
    this.lastRollupMs = now;
    this.rolling = this.rollUpDue()
      .catch(() => undefined) // retried on a later commit: the dirty rows stay
      .finally(() => (this.rolling = undefined));
  }

  private async rollUpDue(): Promise<void> {
    for (;;) {
      const due = await this.pool.query<{ series_id: number; window_ms: number }>(
        `SELECT d.series_id, d.window_ms FROM rollup_dirty d
         WHERE d.window_ms > 0 AND d.window_ms + ${rollupWindowSql('d.series_id')} + ${ROLLUP_GRACE_MS} <=
           CASE WHEN d.series_id = ${FLEET_SERIES_ID} THEN (SELECT MAX(last_ms) FROM series) ELSE (SELECT last_ms FROM series s WHERE s.id = d.series_id) END
         ORDER BY d.series_id = ${FLEET_SERIES_ID}, d.window_ms LIMIT 100`,
      );
      if (due.rows.length === 0) return;
      let done = 0;
      for (const r of due.rows) {
        if (this.commits.closed) return;
        if (await this.rollUp(r.series_id, r.window_ms)) done++;
      }
      if (done === 0) return; // the rest is being rolled up by other servers
    }
  }

  /** Rolls up one (series, window); false when another server holds it. */
  private async rollUp(seriesId: number, windowMs: number): Promise<boolean> {
    const c = await this.pool.connect();
    try {
      await c.query('BEGIN');
      const taken = await c.query(
        'DELETE FROM rollup_dirty WHERE ctid IN (SELECT ctid FROM rollup_dirty WHERE series_id = $1 AND window_ms = $2 FOR UPDATE SKIP LOCKED)',
        [seriesId, windowMs],
      );
      if ((taken.rowCount ?? 0) === 0) {
        await c.query('ROLLBACK');
        return false;
      }
      const merge = new WindowMerge((ptid) => this.profileTypes.get(ptid)?.sampleTypes.length ?? 0);
      await this.refreshTypes(c);
      const seriesFilter = seriesId === FLEET_SERIES_ID ? '' : ' AND series_id = $4';
      for (let after = -1; ; ) {
        const params: unknown[] = [windowMs, windowMs + rollupWindowMs(seriesId), after];
        if (seriesFilter) params.push(seriesId);
        const rows = (
          await c.query<ProfileRow>(
            `SELECT id, profile_type_id, scales, duration_ns, period, samples FROM profiles WHERE time_ms >= $1 AND time_ms < $2 AND id > $3${seriesFilter} ORDER BY id LIMIT 1000`,
            params,
          )
        ).rows;
        for (const r of rows) merge.add(r);
        if (rows.length < 1000) break;
        after = rows[rows.length - 1]!.id;
      }
      const out = merge.rows(seriesId, windowMs);
      await c.query('DELETE FROM rollups WHERE series_id = $1 AND window_ms = $2', [seriesId, windowMs]);
      if (out.length > 0) {
        await c.query(
          `INSERT INTO rollups (series_id, window_ms, profile_type_id, n_profiles, duration_ns, periods, scales, samples)
           SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::integer[], $5::bigint[], $6::text[], $7::text[], $8::bytea[])`,
          [
            out.map((r) => r.series_id),
            out.map((r) => r.window_ms),
            out.map((r) => r.profile_type_id),
            out.map((r) => r.n_profiles),
            out.map((r) => r.duration_ns),
            out.map((r) => r.periods),
            out.map((r) => r.scales),
            out.map((r) => r.samples),
          ],
        );
      }
      await c.query('COMMIT');
      return true;
    } catch (e) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw e;
    } finally {
      c.release();
    }
  }

  /** Profile kinds another server created (a rollup may merge their profiles). */
  private async refreshTypes(c: Client): Promise<void> {
    const types = await c.query<{ id: number; descriptor: string }>('SELECT id, descriptor FROM profile_types');
    for (const t of types.rows) if (!this.profileTypes.has(t.id)) this.profileTypes.set(t.id, { id: t.id, ...(JSON.parse(t.descriptor) as Omit<ProfileType, 'id'>) });
  }

  async eachRollup(seriesIds: number[] | null, fromMs: number, toMs: number, onRow: (r: RollupRow) => void): Promise<number> {
    if (seriesIds !== null && seriesIds.length === 0) return 0;
    const params: unknown[] = [fromMs, toMs];
    let which = `r.series_id <> ${FLEET_SERIES_ID}`;
    if (seriesIds !== null) {
      params.push(seriesIds);
      which = 'r.series_id = ANY($3::bigint[])';
    }
    const r = await this.pool.query<RollupRow>(
      `SELECT r.series_id, r.window_ms, r.profile_type_id, r.n_profiles, r.duration_ns, r.periods, r.scales, r.samples FROM rollups r
       WHERE ${which} AND r.window_ms >= $1 AND r.window_ms + ${rollupWindowSql('r.series_id')} <= $2
         AND NOT EXISTS (SELECT 1 FROM rollup_dirty d WHERE d.series_id = r.series_id AND d.window_ms = r.window_ms)`,
      params,
    );
    for (const row of r.rows) onRow(row);
    return r.rows.length;
  }

  async eachProfile(
    seriesIds: number[] | null,
    fromMs: number,
    toMs: number,
    columns: readonly (keyof ProfileRow)[],
    onRow: (r: ProfileRow) => void,
    limit = -1,
    exclude?: ReadonlySet<string>,
  ): Promise<number> {
    if (seriesIds !== null && seriesIds.length === 0) return 0;
    // Keyset pages, so a merge over many profiles never holds them all at once.
    const cols = [...new Set([...columns, 'time_ms', 'id'])].join(', ');
    const page = 1000;
    let n = 0;
    let after: [number, number] = [fromMs - 1, -1];
    for (;;) {
      const want = limit < 0 ? page : Math.min(page, limit - n);
      if (want <= 0) break;
      const params: unknown[] = [fromMs, toMs, after[0], after[1], want];
      let where = 'time_ms >= $1 AND time_ms < $2 AND (time_ms, id) > ($3, $4)';
      if (seriesIds !== null) {
        params.push(seriesIds);
        where += ` AND series_id = ANY($${params.length}::bigint[])`;
      }
      if (exclude && exclude.size > 0) {
        // Pairs a rollup already answered (rollupKey).
        params.push([...exclude]);
        where += ` AND NOT ((series_id::text || ':' || (time_ms / ${ROLLUP_WINDOW_MS})::text) = ANY($${params.length}::text[]))`;
      }
      const r = await this.pool.query<ProfileRow>(`SELECT ${cols} FROM profiles WHERE ${where} ORDER BY time_ms, id LIMIT $5`, params);
      for (const row of r.rows) onRow(row);
      n += r.rows.length;
      if (r.rows.length < want) break;
      const last = r.rows[r.rows.length - 1]!;
      after = [last.time_ms, last.id];
    }
    return n;
  }

  async getProfile(id: number): Promise<ProfileRow | undefined> {
    return (await this.pool.query<ProfileRow>('SELECT * FROM profiles WHERE id = $1', [id])).rows[0];
  }

  async fetchStacks(ids: readonly number[]): Promise<StackRow[]> {
    if (ids.length === 0) return [];
    const r = await this.pool.query<{ id: number; locations: Buffer }>('SELECT id, locations FROM stacks WHERE id = ANY($1::bigint[])', [ids]);
    return r.rows.map((x) => ({ id: x.id, locations: unpackIds(x.locations) }));
  }

  async fetchLocations(ids: readonly number[]): Promise<LocationRow[]> {
    if (ids.length === 0) return [];
    const r = await this.pool.query<{ id: number; mapping_id: number; address: string; is_folded: boolean; lines: string }>(
      'SELECT id, mapping_id, address, is_folded, lines FROM locations WHERE id = ANY($1::bigint[])',
      [ids],
    );
    return r.rows.map((x) => ({
      id: x.id,
      mappingId: x.mapping_id,
      address: BigInt('0x' + x.address),
      isFolded: x.is_folded,
      lines: x.lines === '' ? [] : x.lines.split(',').map(Number),
    }));
  }

  async fetchFunctions(ids: readonly number[]): Promise<FunctionRow[]> {
    if (ids.length === 0) return [];
    const r = await this.pool.query<{ id: number; name: string; system_name: string; filename: string; start_line: number }>(
      'SELECT id, name, system_name, filename, start_line FROM functions WHERE id = ANY($1::bigint[])',
      [ids],
    );
    return r.rows.map((x) => ({ id: x.id, name: x.name, systemName: x.system_name, filename: x.filename, startLine: x.start_line }));
  }

  async fetchMappings(ids: readonly number[]): Promise<MappingRow[]> {
    if (ids.length === 0) return [];
    const r = await this.pool.query<{ id: number; build_id: string; filename: string; file_offset: string; size: string }>(
      'SELECT id, build_id, filename, file_offset, size FROM mappings WHERE id = ANY($1::bigint[])',
      [ids],
    );
    return r.rows.map((x) => ({ id: x.id, buildId: x.build_id, filename: x.filename, fileOffset: BigInt('0x' + x.file_offset), size: BigInt('0x' + x.size) }));
  }

  async retain(cutoffMs: number, nowMs: number): Promise<RetentionResult> {
    const result: RetentionResult = { profiles: 0, symbols: { mapping: 0, function: 0, location: 0, stack: 0 } };
    const c = await this.pool.connect();
    try {
      // One server sweeps at a time; the others skip this round.
      const lock = await c.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(7413002) AS ok');
      if (!lock.rows[0]!.ok) return result;
      try {
        // Whole days before the cutoff: drop their partitions.
        const parts = await c.query<{ name: string }>(
          `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'profiles'`,
        );
        const cutDay = dayOf(cutoffMs);
        for (const { name } of parts.rows) {
          const d = Number(/^profiles_d(-?\d+)$/.exec(name)?.[1] ?? NaN);
          if (!Number.isFinite(d) || d >= cutDay) continue;
          const n = await c.query<{ n: number }>(`SELECT COUNT(*)::bigint AS n FROM ${name}`);
          await c.query(`DROP TABLE IF EXISTS ${name}`);
          result.profiles += n.rows[0]!.n;
          this.partitions.delete(d);
        }
        // The day the cutoff falls in: row by row.
        result.profiles += (await c.query('DELETE FROM profiles WHERE time_ms < $1', [cutoffMs])).rowCount ?? 0;
        // Rollups of windows that lost profiles go too; raw rows serve what is left of the window straddling the cutoff.
        const cutWindowMs = Math.floor(cutoffMs / ROLLUP_WINDOW_MS) * ROLLUP_WINDOW_MS;
        await c.query('DELETE FROM rollups WHERE window_ms < $1', [cutWindowMs + ROLLUP_WINDOW_MS]);
        await c.query('DELETE FROM rollup_dirty WHERE window_ms < $1', [cutWindowMs]);
        await c.query(
          // A series with nothing left gets first > last (no data), as in memory.
          `UPDATE series s SET first_ms = COALESCE((SELECT MIN(time_ms) FROM profiles p WHERE p.series_id = s.id), ${Number.MAX_SAFE_INTEGER}), version = nextval('series_version') WHERE s.first_ms < $1`,
          [cutoffMs],
        );
        const oldest = await c.query<{ t: number | null }>('SELECT MIN(time_ms) AS t FROM profiles');
        const t = oldest.rows[0]?.t;
        const bound = Math.min(t == null ? Infinity : markEpoch(t), markEpoch(nowMs) - 1);
        if (bound > this.lastGcBound) {
          for (const kind of SYMBOL_KINDS) result.symbols[kind] = (await c.query(`DELETE FROM ${TABLE[kind]} WHERE mark < $1`, [bound])).rowCount ?? 0;
          this.lastGcBound = bound;
        }
      } finally {
        await c.query('SELECT pg_advisory_unlock(7413002)');
      }
    } finally {
      c.release();
    }
    for (const s of this.series.values()) if (s.firstMs < cutoffMs) s.firstMs = cutoffMs;
    return result;
  }

  commitStats(): { commits: number; ingests: number } {
    const s = this.commits.stats;
    return { commits: s.commits, ingests: s.batches };
  }

  async symbolRowCounts(): Promise<Record<SymbolKind, number>> {
    const out = { mapping: 0, function: 0, location: 0, stack: 0 };
    for (const kind of SYMBOL_KINDS) out[kind] = (await this.pool.query<{ n: number }>(`SELECT COUNT(*)::bigint AS n FROM ${TABLE[kind]}`)).rows[0]!.n;
    return out;
  }

  async sizeBytes(): Promise<number> {
    return (await this.pool.query<{ n: number }>('SELECT pg_database_size(current_database())::bigint AS n')).rows[0]!.n;
  }

  async close(): Promise<void> {
    clearInterval(this.learnTimer);
    await this.learning;
    await this.commits.close();
    await this.pool.end();
  }
}
