// The table worker (src/unwind/table-worker.ts) builds the same table as the
// in-process compiler (libc, and node's 76k FDEs), hands it over as typed arrays, serves small files
// ahead of a big one queued before them, and reports files it cannot read.
import { describe, expect, it } from 'vitest';
import { readElfCfi } from '../src/unwind/elf-cfi.js';
import { compileTable } from '../src/unwind/row-compiler.js';
import { ruleKey } from '../src/unwind/rules.js';
import { TableBuildPool, type WorkerReply } from '../src/unwind/table-build-pool.js';
import { decodeRule, RULE_FIELDS } from '../src/unwind/table-builder.js';
import { buildOmitFramePointerProgram } from './helpers/unwind-fixtures.js';

const LIBC = '/lib/x86_64-linux-gnu/libc.so.6';

function buildAll(pool: TableBuildPool, requests: { paths: string[]; sizeBytes: number }[]): Promise<{ order: number[]; replies: WorkerReply[] }> {
  return new Promise((resolve) => {
    const order: number[] = [];
    const replies: WorkerReply[] = [];
    requests.forEach((request, i) =>
      pool.build(request.paths, request.sizeBytes, (reply) => {
        order.push(i);
        replies[i] = reply;
        if (order.length === requests.length) resolve({ order, replies });
      }),
    );
  });
}

describe('unwind table worker', () => {
  it.each([LIBC, process.execPath])('builds the table of %s exactly as compileTable does, rules and rows included', async (path) => {
    const errors: string[] = [];
    const pool = new TableBuildPool((message) => errors.push(message));
    try {
      const { replies } = await buildAll(pool, [{ paths: ['/nonexistent/file', path], sizeBytes: 2 << 20 }]);
      const reply = replies[0]!;
      expect(reply.type).toBe('built');
      if (reply.type !== 'built' || reply.result.kind !== 'table') throw new Error(JSON.stringify(reply));
      const table = reply.result;
      // The worker streams (one FDE's rows at a time); the reference holds every FDE's rows.
      const expected = compileTable(readElfCfi(path).fdes);
      expect(table.rules.length / RULE_FIELDS).toBe(expected.rules.length);
      for (let i = 0; i < expected.rules.length; i++) expect(ruleKey(decodeRule(table.rules, i))).toBe(ruleKey(expected.rules[i]!));
      expect(table.rows.length).toBe(expected.rowAddressLow.length);
      let mismatches = 0;
      for (let i = 0; i < table.rows.length; i++) {
        if ((table.rows[i]! & 0xffff) !== expected.rowAddressLow[i] || table.rows[i]! >>> 16 !== expected.rowRule[i]) mismatches++;
      }
      expect(mismatches).toBe(0);
      expect([...table.pages]).toEqual([...expected.pages]);
      expect([...table.pageFirstRow]).toEqual([...expected.pageFirstRow]);
      expect([...table.pageRowCount]).toEqual([...expected.pageRowCount]);
      expect(table.segments.length).toBeGreaterThan(1);
      expect(errors).toEqual([]);
    } finally {
      pool.close();
    }
  }, 60_000);

  it('serves a small file queued behind a big one first, and reports unreadable and non-ELF files', async () => {
    const pool = new TableBuildPool(() => {});
    try {
      const small = buildOmitFramePointerProgram('clang', 'unwind-callbacks.c');
      const { order, replies } = await buildAll(pool, [
        { paths: [process.execPath], sizeBytes: 64 << 20 },
        { paths: [small], sizeBytes: 16 << 10 },
        { paths: ['/nonexistent'], sizeBytes: 4096 },
        { paths: ['/etc/hostname'], sizeBytes: 4096 },
      ]);
      // node (76k FDEs) is built a slice at a time: the small ones overtake it.
      expect(order.at(-1)).toBe(0);
      expect(replies[1]).toMatchObject({ type: 'built', result: { kind: 'table' } });
      expect(replies[2]).toMatchObject({ type: 'built', result: { kind: 'noTable', reason: 'unreadable' } });
      expect(replies[3]).toMatchObject({ type: 'built', result: { kind: 'noTable' } });
      expect(replies[0]).toMatchObject({ type: 'built', result: { kind: 'table' } });
    } finally {
      pool.close();
    }
  }, 60_000);

  it('builds a small file on the main thread while no worker runs (the table the worker builds), and sends a big one to a worker', async () => {
    const small = buildOmitFramePointerProgram('clang', 'unwind-callbacks.c');
    const here = new TableBuildPool(() => {});
    const there = new TableBuildPool(() => {});
    try {
      const [builtHere] = (await buildAll(here, [{ paths: [small], sizeBytes: 16 << 10 }])).replies;
      expect([here.started, here.builtOnMainThread]).toEqual([0, 1]);
      // The same file said to be big goes to a worker: the reference.
      const [builtThere] = (await buildAll(there, [{ paths: [small], sizeBytes: 64 << 20 }])).replies;
      expect([there.started, there.builtOnMainThread]).toEqual([1, 0]);
      if (builtHere?.type !== 'built' || builtThere?.type !== 'built' || builtHere.result.kind !== 'table' || builtThere.result.kind !== 'table') throw new Error(JSON.stringify([builtHere, builtThere]));
      const a = builtHere.result;
      const b = builtThere.result;
      expect(a.rows.length).toBeGreaterThan(0);
      for (const key of ['rules', 'rows', 'pages', 'pageFirstRow', 'pageRowCount'] as const) expect([...a[key]]).toEqual([...b[key]]);
      expect(a.segments).toEqual(b.segments);
      // A worker running: a small file goes to it too (one builder at a time, no event-loop stalls while it works).
      const [again] = (await buildAll(there, [{ paths: [small], sizeBytes: 16 << 10 }])).replies;
      expect(again).toMatchObject({ type: 'built', result: { kind: 'table' } });
      expect([there.started, there.builtOnMainThread]).toEqual([1, 0]);
    } finally {
      here.close();
      there.close();
    }
  }, 60_000);
});
