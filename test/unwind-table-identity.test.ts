// The columnar table builder (src/unwind/) writes byte-for-byte the same
// cache entry as the object-per-row builder it replaced, for node, libc,
// binaries built here with clang and gcc (.eh_frame, .debug_frame, stack
// realignment, lazy PLT) and damaged copies of them.
//
// Why a frozen copy: the old builder is kept, unchanged, under
// test/helpers/unwind-reference/ (git show of the files at 7accc28). A stored
// digest of the expected tables would depend on this machine's node and libc;
// readelf checks rules at addresses, not the compaction, paging and rule
// numbering the maps receive; the old code at a git revision is not there in a
// shallow clone. So both builders run here, on the same files, and each table
// goes through the real cache writer (TableCache.store): the bytes on disk
// are exactly what a later run would read back and load into the maps. Only
// rules.ts (the rule kinds, shared with the BPF program) and the ELF reader
// are shared by both: they define the output rather than build it.
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ElfReader } from '../src/symbolize/elf.js';
import { buildTable, type BuildResult } from '../src/unwind/table-builder.js';
import { TableCache } from '../src/unwind/table-cache.js';
import { buildTable as referenceBuildTable, type BuildResult as ReferenceBuildResult } from './helpers/unwind-reference/table-builder.js';
import { buildOmitFramePointerProgram, buildOmitFramePointerSplit } from './helpers/unwind-fixtures.js';

const LIBC = '/lib/x86_64-linux-gnu/libc.so.6';
const NODE = '/usr/bin/node';

/** The cache entry a build result would be stored as (undefined: no table, with why). */
function cacheEntry(result: BuildResult | ReferenceBuildResult): Buffer | string {
  if (result.kind !== 'table') return `no table: ${result.reason}`;
  const dir = mkdtempSync(join(tmpdir(), 'fleetprof-identity-'));
  const cache = new TableCache({ dir, maxBytes: 1 << 30 });
  cache.store('identity', result);
  const [entry, ...others] = readdirSync(dir);
  expect(others).toEqual([]);
  return readFileSync(join(dir, entry!));
}

/** Builds `path` with both builders; a throw is an outcome too (it must be the same one). */
function expectSameEntry(path: string): void {
  const outcome = (build: () => BuildResult | ReferenceBuildResult): Buffer | string => {
    try {
      return cacheEntry(build());
    } catch (error) {
      return `threw ${(error as Error).name}: ${(error as Error).message}`;
    }
  };
  const expected = outcome(() => referenceBuildTable([path]));
  const actual = outcome(() => buildTable([path]));
  if (typeof expected === 'string' || typeof actual === 'string') {
    expect(actual).toEqual(expected);
    return;
  }
  expect(actual.length).toBe(expected.length);
  const firstDifference = actual.findIndex((byte, i) => byte !== expected[i]);
  expect(firstDifference, `${path}: entries differ from byte ${firstDifference} of ${expected.length}`).toBe(-1);
}

/**
 * A copy of `path` with every `stride`-th byte of .eh_frame (and .debug_frame)
 * changed: bad lengths, CIE pointers, encodings and opcodes, so both builders
 * walk their error paths (skipped entries, failed programs, overlaps).
 */
function damagedCopy(path: string, stride: number, xor: number): string {
  const out = join(mkdtempSync(join(tmpdir(), 'fleetprof-identity-damaged-')), 'damaged');
  copyFileSync(path, out);
  const elf = ElfReader.open(path);
  const bytes = readFileSync(out);
  try {
    for (const name of ['.eh_frame', '.debug_frame']) {
      const section = elf.section(name);
      if (section === undefined) continue;
      for (let at = section.offset + (stride >> 1); at < section.offset + section.sizeBytes; at += stride) bytes[at]! ^= xor;
    }
  } finally {
    elf.close();
  }
  writeFileSync(out, bytes);
  return out;
}

describe('columnar unwind table builder against the object-per-row one it replaced', () => {
  it("writes the same cache entry for the system's libc and node", { timeout: 120_000 }, () => {
    expectSameEntry(LIBC);
    expectSameEntry(NODE);
  });

  it('writes the same cache entry for programs built here with clang and gcc', { timeout: 120_000 }, () => {
    const clang = buildOmitFramePointerSplit('clang');
    expectSameEntry(clang.cpuSplit);
    expectSameEntry(clang.library);
    // .debug_frame instead of .eh_frame for the program's own code (the C runtime's objects keep .eh_frame: both sections are read).
    expectSameEntry(buildOmitFramePointerSplit('gcc', ['-fno-asynchronous-unwind-tables', '-fno-unwind-tables']).cpuSplit);
    // Stack realignment: CFA and rbp as DWARF expressions.
    expectSameEntry(buildOmitFramePointerProgram('gcc', 'unwind-callbacks.c', ['-mavx2', '-mstackrealign']));
    // The lazy-binding PLT's expression.
    expectSameEntry(buildOmitFramePointerSplit('gcc', ['-Wl,-z,lazy', '-fno-plt', '-fplt']).cpuSplit);
  });

  it('writes the same cache entry (or the same failure) for damaged call-frame sections', { timeout: 120_000 }, () => {
    const gcc = buildOmitFramePointerSplit('gcc', ['-fno-asynchronous-unwind-tables', '-fno-unwind-tables']).cpuSplit;
    for (const [stride, xor] of [
      [997, 0x01],
      [211, 0x80],
      [61, 0x2f],
    ] as const) {
      expectSameEntry(damagedCopy(LIBC, stride, xor));
      expectSameEntry(damagedCopy(gcc, stride, xor));
    }
  });
});
