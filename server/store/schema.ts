// Schema migrations, applied in order at startup. Never edit a shipped
// migration: append a new one. `schema_version` holds the number of applied
// migrations. A migration is SQL, or SQL plus a step in JS run after it in the
// same transaction (for data SQL cannot convert, e.g. packed samples).
import type { Db } from './sqlite.js';
import { remapSamples } from './sample-codec.js';

export interface Migration {
  sql: string;
  run?: (db: Db) => Promise<void>;
}

export const MIGRATIONS: readonly (string | Migration)[] = [
  // 1: symbol database, series, packed profiles.
  `
  CREATE TABLE strings (id INTEGER PRIMARY KEY, value TEXT NOT NULL);
  -- Addresses are hex TEXT: they are unsigned 64-bit, beyond SQLite INTEGER and JS numbers.
  CREATE TABLE mappings (
    id INTEGER PRIMARY KEY, memory_start TEXT NOT NULL, memory_limit TEXT NOT NULL, file_offset TEXT NOT NULL,
    filename_id INTEGER NOT NULL, build_id_id INTEGER NOT NULL, flags INTEGER NOT NULL);
  CREATE TABLE functions (
    id INTEGER PRIMARY KEY, name_id INTEGER NOT NULL, system_name_id INTEGER NOT NULL,
    filename_id INTEGER NOT NULL, start_line INTEGER NOT NULL);
  -- lines: "functionId,line,functionId,line..." innermost first, as in pprof.
  CREATE TABLE locations (
    id INTEGER PRIMARY KEY, mapping_id INTEGER NOT NULL, address TEXT NOT NULL,
    is_folded INTEGER NOT NULL, lines TEXT NOT NULL);
  -- Prefix tree of stacks: root is the implicit id 0.
  CREATE TABLE stacks (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL, location_id INTEGER NOT NULL);
  -- labels: canonical JSON of the sorted label set; it is the series identity.
  CREATE TABLE series (id INTEGER PRIMARY KEY, labels TEXT NOT NULL UNIQUE);
  -- Sample types + period type of a profile, shared by all profiles of the same kind.
  CREATE TABLE profile_types (id INTEGER PRIMARY KEY, descriptor TEXT NOT NULL UNIQUE);
  CREATE TABLE profiles (
    id INTEGER PRIMARY KEY,
    series_id INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    period INTEGER NOT NULL,
    profile_type_id INTEGER NOT NULL,
    scales TEXT NOT NULL,   -- per sample type divisor of the packed values (see sample-codec.ts)
    totals TEXT NOT NULL,   -- per sample type sum, so timelines need not unpack samples
    n_stacks INTEGER NOT NULL,
    samples BLOB NOT NULL);
  -- Which profile kinds each series has, so a query can pick its sample type without a scan.
  CREATE TABLE series_types (series_id INTEGER NOT NULL, profile_type_id INTEGER NOT NULL,
    PRIMARY KEY (series_id, profile_type_id)) WITHOUT ROWID;
  CREATE INDEX profiles_series_time ON profiles (series_id, time_ms);
  CREATE INDEX profiles_time ON profiles (time_ms);
  `,
  // 2: rollups: per series, per ROLLUP_WINDOW_MS window and profile kind, the
  // merge of all its profiles in the same packed format (see sqlite-store.ts).
  `
  CREATE TABLE rollups (
    series_id INTEGER NOT NULL,
    window_ms INTEGER NOT NULL,  -- window start (Unix ms, multiple of the window length)
    profile_type_id INTEGER NOT NULL,
    n_profiles INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    periods TEXT NOT NULL,       -- distinct periods of the merged profiles, comma separated
    scales TEXT NOT NULL,
    samples BLOB NOT NULL,
    PRIMARY KEY (series_id, window_ms, profile_type_id)) WITHOUT ROWID;
  `,
  // 3: fleet-wide identity (see store.ts, src/profile/identity.ts). Ids are content hashes;
  // mappings are binaries (build ID, else path), locations carry file-relative
  // addresses, strings live in their rows. `mark` drives garbage collection.
  // The old tables hold per-process ids that cannot be converted: migrate()
  // refuses a data directory that still has profiles in them.
  `
  DROP TABLE strings; DROP TABLE mappings; DROP TABLE functions; DROP TABLE locations; DROP TABLE stacks;
  DROP TABLE series; DROP TABLE profile_types; DROP TABLE profiles; DROP TABLE series_types; DROP TABLE rollups;
  -- file_offset, size, address: hex TEXT (unsigned 64-bit).
  CREATE TABLE mappings (id INTEGER PRIMARY KEY, build_id TEXT NOT NULL, filename TEXT NOT NULL,
    file_offset TEXT NOT NULL, size TEXT NOT NULL, mark INTEGER NOT NULL);
  CREATE TABLE functions (id INTEGER PRIMARY KEY, name TEXT NOT NULL, system_name TEXT NOT NULL,
    filename TEXT NOT NULL, start_line INTEGER NOT NULL, mark INTEGER NOT NULL);
  -- lines: "functionId,line,functionId,line..." innermost first, as in pprof.
  CREATE TABLE locations (id INTEGER PRIMARY KEY, mapping_id INTEGER NOT NULL, address TEXT NOT NULL,
    is_folded INTEGER NOT NULL, lines TEXT NOT NULL, mark INTEGER NOT NULL);
  -- locations: the stack's location ids, leaf first, float64 little-endian each.
  CREATE TABLE stacks (id INTEGER PRIMARY KEY, locations BLOB NOT NULL, mark INTEGER NOT NULL);
  CREATE TABLE series (id INTEGER PRIMARY KEY, labels TEXT NOT NULL);
  CREATE TABLE profile_types (id INTEGER PRIMARY KEY, descriptor TEXT NOT NULL);
  CREATE TABLE profiles (
    id INTEGER PRIMARY KEY,
    series_id INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    period INTEGER NOT NULL,
    profile_type_id INTEGER NOT NULL,
    scales TEXT NOT NULL,
    totals TEXT NOT NULL,
    n_stacks INTEGER NOT NULL,
    samples BLOB NOT NULL);
  CREATE TABLE series_types (series_id INTEGER NOT NULL, profile_type_id INTEGER NOT NULL,
    PRIMARY KEY (series_id, profile_type_id)) WITHOUT ROWID;
  CREATE INDEX profiles_series_time ON profiles (series_id, time_ms);
  CREATE INDEX profiles_time ON profiles (time_ms);
  CREATE TABLE rollups (
    series_id INTEGER NOT NULL,
    window_ms INTEGER NOT NULL,
    profile_type_id INTEGER NOT NULL,
    n_profiles INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    periods TEXT NOT NULL,
    scales TEXT NOT NULL,
    samples BLOB NOT NULL,
    PRIMARY KEY (series_id, window_ms, profile_type_id)) WITHOUT ROWID;
  `,
  // 4: dense stack ids (stack-ids.ts). A stack keeps its content hash (now the
  // unique `hash`) and gets a small integer id, which packed samples store:
  // one or two bytes per sorted delta instead of six or seven. Existing
  // profiles are re-packed under the new ids; rollups are dropped and rebuilt
  // from them (the store marks their windows dirty at start).
  {
    sql: `
    CREATE TABLE stacks_v4 (id INTEGER PRIMARY KEY, hash INTEGER NOT NULL, locations BLOB NOT NULL, mark INTEGER NOT NULL);
    INSERT INTO stacks_v4 (hash, locations, mark) SELECT id, locations, mark FROM stacks ORDER BY id;
    DELETE FROM rollups;
    `,
    run: async (db) => {
      const idOf = new Map<number, number>();
      await db.each<{ id: number; hash: number }>('SELECT id, hash FROM stacks_v4', [], (r) => idOf.set(r.hash, r.id));
      const newId = (old: number) => {
        if (old === 0) return 0;
        const id = idOf.get(old);
        if (id === undefined) throw new Error(`schema 4 migration: a stored profile references stack ${old}, which is not in the stacks table`);
        return id;
      };
      // Keyset pages: the whole table never sits in memory.
      for (let after = 0; ; ) {
        const rows = await db.all<{ id: number; scales: string; samples: Buffer }>('SELECT id, scales, samples FROM profiles WHERE id > ? ORDER BY id LIMIT 500', [after]);
        if (rows.length === 0) break;
        for (const r of rows) {
          const blob = remapSamples(r.samples, r.scales.split(',').map(Number), newId);
          await db.run('UPDATE profiles SET samples = ? WHERE id = ?', [blob, r.id]);
        }
        after = rows[rows.length - 1]!.id;
      }
      await db.exec('DROP TABLE stacks; ALTER TABLE stacks_v4 RENAME TO stacks; CREATE UNIQUE INDEX stacks_hash ON stacks (hash);');
    },
  },
  // 5: rollups written before the accumulator fix of 2026-11-30 lost one
  // value each time a window's accumulator grew. They are derived data: drop
  // them, and the store rebuilds them from the profiles (it marks windows
  // without a rollup dirty at start).
  'DELETE FROM rollups;',
  // 6: samples blobs are written in coding 2 from here on (sample-codec.ts).
  // No data changes, and coding-1 rows stay readable. The version is what
  // makes a server from before coding 2, which would read such a blob as
  // coding 1 and serve wrong numbers, refuse the store instead ("schema
  // version ..., newer than this server"). In a rolling upgrade of several
  // servers on one database, stop the old servers before a new one starts.
  'SELECT 1;',
];

export async function migrate(db: Db): Promise<number> {
  await db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)');
  const row = await db.get<{ version: number }>('SELECT version FROM schema_version');
  let version = row?.version ?? 0;
  if (row === undefined) await db.run('INSERT INTO schema_version (version) VALUES (0)');
  if (version > MIGRATIONS.length) {
    throw new Error(`data directory has schema version ${version}, newer than this server (${MIGRATIONS.length})`);
  }
  if (version >= 1 && version < 3) {
    const old = await db.get<{ n: number }>('SELECT COUNT(*) AS n FROM profiles');
    if ((old?.n ?? 0) > 0) {
      throw new Error(
        `data directory holds ${old!.n} profiles in schema version ${version}, whose per-process symbol ids this server cannot convert; ` +
          'start this server on an empty data directory (or keep the previous version for the old data)',
      );
    }
  }
  for (; version < MIGRATIONS.length; version++) {
    const m = MIGRATIONS[version]!;
    await db.transaction(async () => {
      await db.exec(typeof m === 'string' ? m : m.sql);
      if (typeof m !== 'string') await m.run?.(db);
      await db.run('UPDATE schema_version SET version = ?', [version + 1]);
    });
  }
  return version;
}
