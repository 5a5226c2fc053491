// The PostgreSQL backend of ProfileStore (store.ts), through `pg`. Several
// stateless servers may share one database: ids are content hashes (no
// allocator), symbol rows are upserted with "same content" conditions (two
// servers writing the same row agree; different content under one id is a
// collision, refused), profile ids come from a database sequence, and each
// server picks up the series others created (refresh) before answering.
//
// Samples are partitioned by day (`profiles_d<day>`), created on demand, so
// retention drops whole partitions. The distribution key is explicit:
// `series_id` leads the profile and rollup keys, so the same schema can be
// distributed by Citus (docs/architecture.md says how).
//
// Writes are group-committed per server as in the SQLite backend
// (group-commit.ts): every ingest waiting in the queue goes into one
// transaction, acknowledged after COMMIT. Rows are written in a fixed order (kind, then ascending id), so two
// servers' transactions take row locks in the same order and cannot deadlock
// on them; a deadlock or serialization failure is still retried.
import pg from 'pg';
import { IdMap } from './id-map.js';
import { rememberCommitted } from './committed-memory.js';
import { failIngestGroup, GroupCommitQueue, type PendingWrite } from './group-commit.js';
import { errIdCollision } from '../errors.js';
import {
  canonicalLabels,
  markEpoch,
  packIds,
  unpackIds,
  SYMBOL_KINDS,
  typeDescriptor,
  type FunctionRow,
  type IngestBatch,
  type LocationRow,
  type MappingRow,
  type ProfileRow,
  type ProfileStore,
  type ProfileType,
  type RetentionResult,
  type Series,
  type StackRow,
  type SymbolKind,
} from './store.js';

export const PARTITION_MS = 24 * 60 * 60 * 1000;
const dayOf = (ms: number) => Math.floor(ms / PARTITION_MS);

const MIGRATIONS: readonly string[] = [
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
];

type Client = pg.PoolClient;

function isRetryable(e: unknown): boolean {
  const code = (e as { code?: string }).code;
  return code === '40P01' || code === '40001';
}

const TABLE: Record<SymbolKind, string> = { mapping: 'mappings', function: 'functions', location: 'locations', stack: 'stacks' };

/** Columns (with array types for unnest) and the "same content" condition of each symbol upsert. */
const UPSERT: Record<SymbolKind, [string[], string[], string]> = {
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
  stack: [['id', 'locations', 'mark'], ['bigint', 'bytea', 'integer'], 't.locations = excluded.locations'],
};

const hex = (v: bigint) => v.toString(16);

export class PgStore implements ProfileStore {
  readonly backend = 'postgres' as const;
  readonly marks = new IdMap(1 << 16);
  private readonly series = new Map<number, Series>();
  private readonly profileTypes = new Map<number, ProfileType>();
  private seriesVersion = 0;
  private readonly partitions = new Set<number>();
  private readonly commits = new GroupCommitQueue<IngestBatch, number[]>((group) => this.flushOnce(group));
  private lastGcBound = -Infinity;

  private constructor(private readonly pool: pg.Pool) {}

  static async open(url: string): Promise<PgStore> {
    const pool = new pg.Pool({
      connectionString: url,
      max: 8,
      // Ids and times are below 2^53 by construction (hash.ts): bigint as a JS number is exact.
      types: { getTypeParser: ((oid: number, format?: string) => (oid === 20 ? Number : pg.types.getTypeParser(oid, format as 'text'))) as typeof pg.types.getTypeParser },
    });
    pool.on('error', () => undefined); // an idle client's lost connection: the next query reconnects
    const store = new PgStore(pool);
    await store.migrate();
    await store.refresh();
    return store;
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
      if (version > MIGRATIONS.length) throw new Error(`database has schema version ${version}, newer than this server (${MIGRATIONS.length})`);
      for (; version < MIGRATIONS.length; version++) {
        await c.query(MIGRATIONS[version]!);
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
        await c.query(`CREATE TABLE IF NOT EXISTS profiles_d${d} PARTITION OF profiles FOR VALUES FROM (${d * PARTITION_MS}) TO (${(d + 1) * PARTITION_MS})`);
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
    const rows: Record<SymbolKind, Map<number, unknown[]>> = { mapping: new Map(), function: new Map(), location: new Map(), stack: new Map() };
    const put = (kind: SymbolKind, id: number, row: unknown[], mark: number) => {
      const cur = rows[kind].get(id);
      if (!cur || (cur[cur.length - 1] as number) < mark) rows[kind].set(id, row);
    };
    const series = new Map<number, { labels: string; first: number; last: number }>();
    const types = new Map<number, string>();
    const seriesTypes = new Set<string>();
    const days = new Set<number>();
    for (const { batch } of queued) {
      const m = batch.mark;
      for (const r of batch.rows.mappings) put('mapping', r.id, [r.id, r.buildId, r.filename, hex(r.fileOffset), hex(r.size), m], m);
      for (const r of batch.rows.functions) put('function', r.id, [r.id, r.name, r.systemName, r.filename, r.startLine, m], m);
      for (const r of batch.rows.locations) put('location', r.id, [r.id, r.mappingId, hex(r.address), r.isFolded, r.lines.join(','), m], m);
      for (const r of batch.rows.stacks) put('stack', r.id, [r.id, packIds(r.locations), m], m);
      for (const t of batch.profileTypes) types.set(t.id, typeDescriptor(t));
      for (const p of batch.profiles) {
        days.add(dayOf(p.timeMs));
        seriesTypes.add(`${p.seriesId},${p.profileTypeId}`);
        const known = this.series.get(p.seriesId);
        const labels = batch.series.find((s) => s.id === p.seriesId)?.labels ?? known?.labels ?? {};
        const e = series.get(p.seriesId);
        if (e) {
          e.first = Math.min(e.first, p.timeMs);
          e.last = Math.max(e.last, p.timeMs);
        } else series.set(p.seriesId, { labels: canonicalLabels(labels), first: p.timeMs, last: p.timeMs });
      }
    }
    const profiles = queued.flatMap((q) => q.batch.profiles);
    let ids: number[] = [];
    let collided: Set<number> | undefined;
    // A database that cannot be reached answers every queued ingest with the
    // error (a 5xx the agent retries from its spool), never with silence.
    let c: Client;
    try {
      c = await this.pool.connect();
    } catch (e) {
      failIngestGroup(this.commits, queued, e, undefined);
      return;
    }
    try {
      await this.ensurePartitions(c, days);
      for (let attempt = 0; ; attempt++) {
        try {
          await c.query('BEGIN');
          const bad: number[] = [];
          for (const kind of SYMBOL_KINDS) bad.push(...(await this.upsert(c, kind, rows[kind])));
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
              [s.map((x) => x[0]), s.map((x) => x[1].labels), s.map((x) => x[1].first), s.map((x) => x[1].last)],
            );
            const ok = new Set(r.rows.map((x) => x.id));
            bad.push(...s.map((x) => x[0]).filter((id) => !ok.has(id)));
          }
          if (bad.length > 0) {
            collided = new Set(bad);
            throw errIdCollision(`content ids ${bad.slice(0, 5).join(', ')} are taken by different content`);
          }
          const st = [...seriesTypes].map((k) => k.split(',').map(Number)).sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]!);
          await c.query(
            `INSERT INTO series_types (series_id, profile_type_id) SELECT * FROM unnest($1::bigint[], $2::bigint[]) ON CONFLICT DO NOTHING`,
            [st.map((x) => x[0]), st.map((x) => x[1])],
          );
          const idRows = await c.query<{ id: number }>('SELECT nextval(\'profile_ids\') AS id FROM generate_series(1, $1::int)', [profiles.length]);
          ids = idRows.rows.map((r) => r.id);
          for (let i = 0; i < profiles.length; i += 500) {
            const chunk = profiles.slice(i, i + 500);
            const params: unknown[] = [];
            const values = chunk.map((p, k) => {
              params.push(ids[i + k], p.seriesId, p.timeMs, p.durationNs, p.period, p.profileTypeId, p.scales.join(','), p.totals.join(','), p.nStacks, p.samples);
              const b = k * 10;
              return `(${Array.from({ length: 10 }, (_, j) => `$${b + j + 1}`).join(',')})`;
            });
            await c.query(
              `INSERT INTO profiles (id, series_id, time_ms, duration_ns, period, profile_type_id, scales, totals, n_stacks, samples) VALUES ${values.join(',')}`,
              params,
            );
          }
          await c.query('COMMIT');
          break;
        } catch (e) {
          await c.query('ROLLBACK').catch(() => undefined);
          if (!collided && isRetryable(e) && attempt < 5) continue;
          throw e;
        }
      }
    } catch (e) {
      failIngestGroup(this.commits, queued, e, collided);
      return;
    } finally {
      c.release();
    }
    rememberCommitted({ marks: this.marks, series: this.series, profileTypes: this.profileTypes }, queued.map((q) => q.batch));
    let next = 0;
    for (const q of queued) {
      q.resolve(ids.slice(next, next + q.batch.profiles.length));
      next += q.batch.profiles.length;
    }
  }

  private async upsert(c: Client, kind: SymbolKind, rows: Map<number, unknown[]>): Promise<number[]> {
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
  }

  idle(): Promise<void> {
    return this.commits.idle();
  }

  /** Rollups are not kept in PostgreSQL yet: queries read raw profiles (see docs/architecture.md). */
  async eachRollup(): Promise<number> {
    return 0;
  }

  async eachProfile(
    seriesIds: number[] | null,
    fromMs: number,
    toMs: number,
    columns: readonly (keyof ProfileRow)[],
    onRow: (r: ProfileRow) => void,
    limit = -1,
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
        where += ' AND series_id = ANY($6::bigint[])';
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

  async symbolRowCounts(): Promise<Record<SymbolKind, number>> {
    const out = { mapping: 0, function: 0, location: 0, stack: 0 };
    for (const kind of SYMBOL_KINDS) out[kind] = (await this.pool.query<{ n: number }>(`SELECT COUNT(*)::bigint AS n FROM ${TABLE[kind]}`)).rows[0]!.n;
    return out;
  }

  async sizeBytes(): Promise<number> {
    return (await this.pool.query<{ n: number }>('SELECT pg_database_size(current_database())::bigint AS n')).rows[0]!.n;
  }

  async close(): Promise<void> {
    await this.commits.close();
    await this.pool.end();
  }
}
