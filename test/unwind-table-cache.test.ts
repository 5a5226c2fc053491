// The persistent unwind table cache (src/unwind/table-cache.ts): a stored
// table comes back equal; another file identity, a flipped byte, a truncated
// or foreign entry is never used (corrupt ones are deleted and counted by the
// caller, which builds again); the directory stays within its bound; and the
// table worker answers from it the second time it is asked for a file.
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TableBuildPool, type WorkerReply } from '../src/unwind/table-build-pool.js';
import { buildTable, type BuiltTable } from '../src/unwind/table-builder.js';
import { fileIdentity, TableCache } from '../src/unwind/table-cache.js';

const LIBC = '/lib/x86_64-linux-gnu/libc.so.6';

function libcTable(): BuiltTable {
  const table = buildTable([LIBC]);
  if (table.kind !== 'table') throw new Error(`no table for libc: ${table.reason}`);
  return table;
}

function expectSameTable(actual: BuiltTable, expected: BuiltTable): void {
  expect(actual.segments).toEqual(expected.segments);
  expect(actual.unsupported).toEqual(expected.unsupported);
  for (const field of ['rules', 'rows', 'pages', 'pageFirstRow', 'pageRowCount'] as const) expect(Buffer.from(actual[field].buffer).equals(Buffer.from(expected[field].buffer))).toBe(true);
}

function entries(dir: string): string[] {
  return readdirSync(dir).filter((name) => name.endsWith('.fput'));
}

describe('unwind table cache', () => {
  const table = libcTable();
  const identity = fileIdentity(statSync(LIBC, { bigint: true }));

  it('gives back the stored table, and nothing for another identity', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fleetprof-table-cache-'));
    const cache = new TableCache({ dir, maxBytes: 64 << 20 });
    expect(cache.lookup(identity).kind).toBe('miss');
    cache.store(identity, table);
    const found = cache.lookup(identity);
    if (found.kind !== 'hit') throw new Error(JSON.stringify(found));
    expectSameTable(found.table, table);
    expect(new TableCache({ dir, maxBytes: 64 << 20 }).lookup(`${identity}:other`).kind).toBe('miss');
  });

  it.each([
    ['a flipped byte in the rows', (bytes: Buffer) => bytes.writeUInt8(bytes[bytes.length >> 1]! ^ 0x40, bytes.length >> 1)],
    ['a truncated entry', (bytes: Buffer) => bytes.subarray(0, bytes.length - 100)],
    ['another format version', (bytes: Buffer) => bytes.writeUInt32LE(999, 4)],
    ['no entry at all, just garbage', () => Buffer.from('not a table')],
  ])('rejects %s and deletes the entry', (_name, damage) => {
    const dir = mkdtempSync(join(tmpdir(), 'fleetprof-table-cache-'));
    new TableCache({ dir, maxBytes: 64 << 20 }).store(identity, table);
    const [entry] = entries(dir);
    const path = join(dir, entry!);
    const bytes = readFileSync(path);
    const damaged = damage(bytes);
    writeFileSync(path, Buffer.isBuffer(damaged) ? damaged : bytes);
    const cache = new TableCache({ dir, maxBytes: 64 << 20 });
    const found = cache.lookup(identity);
    expect(found.kind).toBe('corrupt');
    expect(entries(dir)).toEqual([]);
    expect(cache.lookup(identity).kind).toBe('miss');
  });

  it('keeps the directory within its bound, evicting the least recently used', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fleetprof-table-cache-'));
    const probe = new TableCache({ dir, maxBytes: 64 << 20 });
    probe.store('size probe', table);
    const entryBytes = statSync(join(dir, entries(dir)[0]!)).size;
    const maxBytes = Math.floor(entryBytes * 2.5);
    const cache = new TableCache({ dir: mkdtempSync(join(tmpdir(), 'fleetprof-table-cache-')), maxBytes });
    for (const name of ['a', 'b', 'c', 'd']) cache.store(name, table);
    const cacheDir = (cache as unknown as { options: { dir: string } }).options.dir;
    const sizes = entries(cacheDir).map((name) => statSync(join(cacheDir, name)).size);
    expect(sizes.length).toBe(2);
    expect(sizes.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(maxBytes);
    expect(cache.lookup('a').kind).toBe('miss');
    expect(cache.lookup('d').kind).toBe('hit');
  });

  it('answers from it the second time without starting the table worker', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fleetprof-table-cache-'));
    const replies: WorkerReply[] = [];
    const workersStarted: number[] = [];
    for (let i = 0; i < 2; i++) {
      // A new pool (worker) each time, as a new agent run would have.
      const pool = new TableBuildPool((message) => {
        throw new Error(message);
      }, { dir, maxBytes: 64 << 20 });
      try {
        replies.push(await new Promise<WorkerReply>((resolve) => pool.build([LIBC], 2 << 20, resolve)));
        workersStarted.push(pool.started);
      } finally {
        pool.close();
      }
    }
    // The second run reads the cache on the main thread and never starts a worker.
    expect(workersStarted).toEqual([1, 0]);
    const [built, read] = replies;
    if (built?.type !== 'built' || read?.type !== 'built' || built.result.kind !== 'table' || read.result.kind !== 'table') throw new Error(JSON.stringify(replies));
    expect(built.cache).toBe('miss');
    expect(read.cache).toBe('hit');
    expectSameTable(read.result, built.result);
    expectSameTable(read.result, table);
  });
});
