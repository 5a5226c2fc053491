// A minimal promise layer over the callback API of the `sqlite3` package.
// Only what the store needs: run/get/all/exec and a serialized transaction
// helper. Each Db owns one connection; sqlite3 runs statements on libuv's
// thread pool, so awaiting here never blocks the event loop.
import sqlite3 from 'sqlite3';

export type SqlValue = string | number | null | Buffer;
export type Row = Record<string, SqlValue>;

/** Statements runCached keeps prepared per connection; the oldest is finalized past this. */
const STATEMENT_CACHE_SIZE = 64;

export class Db {
  /** runCached's prepared statements by SQL text, oldest first. */
  private readonly statements = new Map<string, Promise<sqlite3.Statement>>();

  private constructor(private readonly db: sqlite3.Database) {}

  static open(file: string, readOnly = false): Promise<Db> {
    const mode = readOnly ? sqlite3.OPEN_READONLY : sqlite3.OPEN_READWRITE | sqlite3.OPEN_CREATE;
    return new Promise((resolve, reject) => {
      const db = new sqlite3.Database(file, mode, (err) => (err ? reject(err) : resolve(new Db(db))));
    });
  }

  run(sql: string, params: readonly SqlValue[] = []): Promise<{ lastID: number; changes: number }> {
    return new Promise((resolve, reject) => {
      this.db.run(sql, params, function (this: sqlite3.RunResult, err: Error | null) {
        if (err) reject(err);
        else resolve({ lastID: this.lastID, changes: this.changes });
      });
    });
  }

  /**
   * run() for a statement a hot path repeats. sqlite3's run() prepares,
   * runs and finalizes: two thread-pool round trips (each an event-loop
   * wake-up and a callback) and a parse of the text every time. A kept
   * statement is one round trip; in-process this took a commit of one
   * profile row from ~1.0 to ~0.6 ms of CPU (BEGIN/run/COMMIT).
   */
  async runCached(sql: string, params: readonly SqlValue[]): Promise<{ changes: number }> {
    const stmt = await this.prepared(sql);
    return new Promise((resolve, reject) => {
      stmt.run(params, function (this: sqlite3.RunResult, err: Error | null) {
        if (err) reject(err);
        else resolve({ changes: this.changes });
      });
    });
  }

  private prepared(sql: string): Promise<sqlite3.Statement> {
    let p = this.statements.get(sql);
    if (p === undefined) {
      if (this.statements.size >= STATEMENT_CACHE_SIZE) {
        const [oldest, old] = this.statements.entries().next().value!;
        this.statements.delete(oldest);
        // Finalize runs after the runs already queued on it (sqlite3 queues it behind them).
        void old.then((st) => st.finalize(), () => undefined);
      }
      // Awaited before the first run: when a prepare fails, sqlite3 drops the
      // runs queued behind it without calling them back.
      p = new Promise((resolve, reject) => {
        const st = this.db.prepare(sql, (err: Error | null) => (err ? reject(err) : resolve(st)));
      });
      this.statements.set(sql, p);
      p.catch(() => this.statements.delete(sql));
    }
    return p;
  }

  get<T = Row>(sql: string, params: readonly SqlValue[] = []): Promise<T | undefined> {
    return new Promise((resolve, reject) => {
      this.db.get(sql, params, (err: Error | null, row: T | undefined) => (err ? reject(err) : resolve(row)));
    });
  }

  all<T = Row>(sql: string, params: readonly SqlValue[] = []): Promise<T[]> {
    return new Promise((resolve, reject) => {
      this.db.all(sql, params, (err: Error | null, rows: T[]) => (err ? reject(err) : resolve(rows)));
    });
  }

  /** Streams rows one by one (keeps memory flat for large result sets). */
  each<T = Row>(sql: string, params: readonly SqlValue[], onRow: (row: T) => void): Promise<number> {
    return new Promise((resolve, reject) => {
      let failure: unknown;
      this.db.each(
        sql,
        params,
        (err: Error | null, row: T) => {
          if (err || failure !== undefined) return;
          try {
            onRow(row);
          } catch (e) {
            failure = e;
          }
        },
        (err: Error | null, count: number) => {
          if (err) reject(err);
          else if (failure !== undefined) reject(failure);
          else resolve(count);
        },
      );
    });
  }

  exec(sql: string): Promise<void> {
    return new Promise((resolve, reject) => this.db.exec(sql, (err) => (err ? reject(err) : resolve())));
  }

  async close(): Promise<void> {
    // A statement left unfinalized keeps the connection open (close fails with SQLITE_BUSY).
    const kept = [...this.statements.values()];
    this.statements.clear();
    for (const p of kept) {
      const st = await p.catch(() => undefined);
      if (st) await new Promise<void>((resolve) => st.finalize(() => resolve()));
    }
    return new Promise((resolve, reject) => this.db.close((err) => (err ? reject(err) : resolve())));
  }

  /**
   * Runs fn inside BEGIN IMMEDIATE/COMMIT. Callers must not interleave other
   * statements on this connection meanwhile (the store funnels all writes
   * through one queue, so they don't).
   */
  async transaction<T>(fn: () => Promise<T>): Promise<T> {
    await this.exec('BEGIN IMMEDIATE');
    try {
      const out = await fn();
      await this.exec('COMMIT');
      return out;
    } catch (e) {
      await this.exec('ROLLBACK').catch(() => undefined);
      throw e;
    }
  }
}

/** Rows per multi-row INSERT: below SQLite's limit of 32766 variables. */
export const insertChunkRows = (columns: readonly string[]): number => Math.max(1, Math.floor(30000 / columns.length));

/** Statements of at most this many rows stay prepared (runCached): a group commit's few profiles; larger ones vary too much to reuse. */
const CACHED_INSERT_ROWS = 16;

/**
 * Inserts rows with multi-row VALUES lists, chunked below SQLite's variable
 * limit, because one statement per row costs a thread-pool round trip each.
 */
export async function insertMany(db: Db, table: string, columns: readonly string[], rows: readonly SqlValue[][]): Promise<void> {
  if (rows.length === 0) return;
  const perRow = `(${columns.map(() => '?').join(',')})`;
  const chunkRows = insertChunkRows(columns);
  for (let i = 0; i < rows.length; i += chunkRows) {
    const chunk = rows.slice(i, i + chunkRows);
    const params: SqlValue[] = [];
    for (const r of chunk) params.push(...r);
    const sql = `INSERT INTO ${table} (${columns.join(',')}) VALUES ${chunk.map(() => perRow).join(',')}`;
    await (chunk.length <= CACHED_INSERT_ROWS ? db.runCached(sql, params) : db.run(sql, params));
  }
}
