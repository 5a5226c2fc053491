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
// The oracle guards a rewrite that must not change the output: when a later
// change means to change the tables, delete this test and the reference
// rather than edit the frozen copy.
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ElfReader } from '../src/symbolize/elf.js';
import { readElfCfi } from '../src/unwind/elf-cfi.js';
import { buildTable, type BuildResult } from '../src/unwind/table-builder.js';
import { TableCache } from '../src/unwind/table-cache.js';
import { parseCfiSection as referenceParseCfiSection } from './helpers/unwind-reference/cfi-entries.js';
import { readElfCfi as referenceReadElfCfi } from './helpers/unwind-reference/elf-cfi.js';
import { buildTable as referenceBuildTable, type BuildResult as ReferenceBuildResult } from './helpers/unwind-reference/table-builder.js';
import { buildOmitFramePointerProgram, buildOmitFramePointerSplit } from './helpers/unwind-fixtures.js';

const LIBC = '/lib/x86_64-linux-gnu/libc.so.6';
/** node's 76k FDEs: the big runtime the builder is tuned for (the running node where it is elsewhere). */
const NODE = existsSync('/usr/bin/node') ? '/usr/bin/node' : process.execPath;

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

/**
 * Builds `path` with both builders; a throw is an outcome too (it must be the
 * same one). One known difference: the old parser crashed with a RangeError on
 * an FDE whose CIE pointer points before the section; the new one counts it as
 * an FDE of an unreadable CIE, so there the new build only has to not throw.
 */
function expectSameEntry(path: string): 'table' | 'other' | 'old crashed' {
  const outcome = (build: () => BuildResult | ReferenceBuildResult): Buffer | string => {
    try {
      return cacheEntry(build());
    } catch (error) {
      return `threw ${(error as Error).name}: ${(error as Error).message}`;
    }
  };
  const expected = outcome(() => referenceBuildTable([path]));
  const actual = outcome(() => buildTable([path]));
  if (typeof expected === 'string' && expected.startsWith('threw RangeError')) {
    expect(typeof actual === 'string' && actual.startsWith('threw')).toBe(false);
    return 'old crashed';
  }
  if (typeof expected === 'string' || typeof actual === 'string') {
    expect(actual).toEqual(expected);
    return 'other';
  }
  expect(actual.length).toBe(expected.length);
  const firstDifference = actual.findIndex((byte, i) => byte !== expected[i]);
  expect(firstDifference, `${path}: entries differ from byte ${firstDifference} of ${expected.length}`).toBe(-1);
  return 'table';
}

/** Changes bytes of a call-frame section (given the whole file's bytes, the section's offset in them, its bytes, its name and address). */
type Damage = (file: Buffer, sectionOffset: number, section: Buffer, kind: '.eh_frame' | '.debug_frame', sectionAddress: number) => void;

/** A copy of `path` with its .eh_frame and .debug_frame damaged. */
function damagedCopy(path: string, damage: Damage): string {
  const out = join(mkdtempSync(join(tmpdir(), 'fleetprof-identity-damaged-')), 'damaged');
  copyFileSync(path, out);
  const elf = ElfReader.open(path);
  const bytes = readFileSync(out);
  try {
    for (const name of ['.eh_frame', '.debug_frame'] as const) {
      const section = elf.section(name);
      if (section === undefined) continue;
      damage(bytes, section.offset, bytes.subarray(section.offset, section.offset + section.sizeBytes), name, name === '.eh_frame' ? Number(section.address) : 0);
    }
  } finally {
    elf.close();
  }
  writeFileSync(out, bytes);
  return out;
}

/** Every `stride`-th byte of the sections changed: lengths, CIE pointers and encodings too, so whole runs of entries go. */
const everyNthByte =
  (stride: number, xor: number): Damage =>
  (file, sectionOffset, section) => {
    for (let at = stride >> 1; at < section.length; at += stride) file[sectionOffset + at]! ^= xor;
  };

/**
 * One instruction byte changed in every `every`-th FDE (found by the
 * reference parser): unknown opcodes, truncated operands, other registers
 * and offsets, so FDE programs fail or give other rules while the entries
 * around them stay readable.
 */
const everyNthProgram =
  (every: number, xor: number): Damage =>
  (file, sectionOffset, section, kind, sectionAddress) => {
    const { fdes } = referenceParseCfiSection(Buffer.from(section), kind, sectionAddress);
    fdes.forEach((fde, i) => {
      if (i % every !== 0 || fde.instructions.length === 0) return;
      const start = fde.instructionsAddress - sectionAddress;
      file[sectionOffset + start + ((i >> 3) % fde.instructions.length)]! ^= xor;
    });
  };

/**
 * A copy of `path` whose first .debug_frame FDE starts near 2^53: the FDEs
 * are then out of address order over a span too wide for the packed-key
 * sort, so the builder takes its comparator sort.
 */
function farDebugFrameFde(path: string): string {
  return damagedCopy(path, (file, sectionOffset, section, kind) => {
    if (kind !== '.debug_frame') return;
    const fde = referenceParseCfiSection(Buffer.from(section), kind, 0).fdes[0]!;
    // length (4), CIE pointer (4), then initial_location as an 8-byte address
    file.writeBigUInt64LE(2n ** 53n - 2n ** 20n, sectionOffset + fde.offset + 8);
  });
}

/** A copy of `path` whose first .eh_frame FDE's CIE pointer points before the section. */
function cieBeforeSection(path: string): string {
  return damagedCopy(path, (file, sectionOffset, section, kind, sectionAddress) => {
    if (kind !== '.eh_frame') return;
    const fde = referenceParseCfiSection(Buffer.from(section), kind, sectionAddress).fdes[0]!;
    file.writeUInt32LE(fde.offset + 0x1000, sectionOffset + fde.offset + 4);
  });
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
    const clang = buildOmitFramePointerSplit('clang').cpuSplit;
    let tables = 0;
    let failedPrograms = 0;
    for (const path of [LIBC, gcc, clang]) {
      for (const damage of [everyNthProgram(7, 0x01), everyNthProgram(5, 0x80), everyNthProgram(3, 0x3c), everyNthProgram(11, 0xff), everyNthByte(4093, 0x01), everyNthByte(997, 0x01)]) {
        const copy = damagedCopy(path, damage);
        if (expectSameEntry(copy) === 'table') tables++;
        try {
          if ([...referenceReadElfCfi(copy).skipped.keys()].some((reason) => reason.includes('FDE program'))) failedPrograms++;
        } catch {
          // unreadable as a whole (both builders failed the same way above)
        }
      }
    }
    expect(expectSameEntry(farDebugFrameFde(gcc))).toBe('table');
    // The damage must reach the error paths while leaving tables to compare (not only two identical failures).
    expect(tables).toBeGreaterThanOrEqual(12);
    expect(failedPrograms).toBeGreaterThanOrEqual(4);
  });

  it('counts an FDE whose CIE pointer points before the section as unreadable, where the old parser crashed', () => {
    const damaged = cieBeforeSection(buildOmitFramePointerSplit('gcc').cpuSplit);
    expect(() => referenceBuildTable([damaged])).toThrow(RangeError);
    expect(buildTable([damaged]).kind).toBe('table');
    expect(readElfCfi(damaged).skipped.get('.eh_frame: FDE of an unreadable CIE')).toBe(1);
  });
});
