// A minimal promise layer over the callback API of the `sqlite3` package.
// Only what the store needs: run/get/all/exec and a serialized transaction
// helper. Each Db owns one connection; sqlite3 runs statements on libuv's
// thread pool, so awaiting here never blocks the event loop.
import sqlite3 from 'sqlite3';

export type SqlValue = string | number | null | Buffer;
export type Row = Record<string, SqlValue>;

export class Db {
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

  close(): Promise<void> {
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

/**
 * Inserts rows with multi-row VALUES lists, chunked below SQLite's variable
 * limit, because one statement per row costs a thread-pool round trip each.
 */
export async function insertMany(db: Db, table: string, columns: readonly string[], rows: readonly SqlValue[][]): Promise<void> {
  if (rows.length === 0) return;
  const perRow = `(${columns.map(() => '?').join(',')})`;
  const chunkRows = Math.max(1, Math.floor(30000 / columns.length));
  for (let i = 0; i < rows.length; i += chunkRows) {
    const chunk = rows.slice(i, i + chunkRows);
    const params: SqlValue[] = [];
    for (const r of chunk) params.push(...r);
    await db.run(`INSERT INTO ${table} (${columns.join(',')}) VALUES ${chunk.map(() => perRow).join(',')}`, params);
  }
}
