// The CFI parser and CFA-program interpreter against binutils' readelf
// --debug-dump=frames-interp, which runs the same programs independently: for
// every FDE, the rules for the CFA, rbp and the return address must be the
// same at every address.
import { existsSync } from 'node:fs';
import { ElfReader } from '../src/symbolize/elf.js';
import { describe, expect, it } from 'vitest';
import { readElfCfi, type FdeRows } from '../src/unwind/elf-cfi.js';
import type { CfaRule, RegisterRule } from '../src/unwind/cfa-program.js';
import { compileTable, lookupRule, tableBytes, type CompiledTable } from '../src/unwind/row-compiler.js';
import { CfaKind, FpKind, INVALID_RULE, sameRule, type UnwindRule } from '../src/unwind/rules.js';
import { spawnSync } from 'node:child_process';
import { buildOmitFramePointerProgram, buildOmitFramePointerSplit } from './helpers/unwind-fixtures.js';

const LIBC = '/lib/x86_64-linux-gnu/libc.so.6';
const NODE = '/usr/bin/node';
const REGISTER_NAMES = ['rax', 'rdx', 'rcx', 'rbx', 'rsi', 'rdi', 'rbp', 'rsp'];

/** One row as readelf prints it: "rsp+8", "c-16", "u", "exp". */
type Cells = [cfa: string, rbp: string, ra: string];
interface ReadelfFde {
  section: string;
  pcBegin: number;
  pcEnd: number;
  rows: { address: number; cells: Cells }[];
}

/** readelf's frame dump. It exits 1 on some system libraries while printing every entry and no diagnostic, so the status is not trusted. */
function readelfFrames(path: string): string {
  const result = spawnSync('readelf', ['--debug-dump=frames-interp', path], { encoding: 'utf8', maxBuffer: 512 << 20 });
  if (result.error) throw result.error;
  if (!result.stdout.includes('Contents of the')) throw new Error(`readelf printed no frames for ${path}: ${result.stderr}`);
  return result.stdout;
}

function parseReadelf(text: string): ReadelfFde[] {
  const fdes: ReadelfFde[] = [];
  const cieRows = new Map<string, Cells>();
  let section = '';
  let current: ReadelfFde | undefined;
  let currentCie: string | undefined;
  let columns: string[] = [];
  for (const line of text.split('\n')) {
    const sectionMatch = /^Contents of the (\.\w+) section/.exec(line);
    if (sectionMatch) {
      section = sectionMatch[1]!;
      continue;
    }
    const entry = /^([0-9a-f]{8,16}) [0-9a-f]{8,16} ([0-9a-f]{8,16}) (CIE|FDE)(?: cie=([0-9a-f]+) pc=([0-9a-f]+)\.\.([0-9a-f]+))?/.exec(line);
    if (entry) {
      columns = [];
      if (entry[3] === 'CIE') {
        current = undefined;
        currentCie = `${section}:${parseInt(entry[1]!, 16)}`;
      } else {
        currentCie = undefined;
        current = { section, pcBegin: parseInt(entry[5]!, 16), pcEnd: parseInt(entry[6]!, 16), rows: [] };
        fdes.push(current);
        // An FDE that changes nothing prints no table: the CIE's row holds throughout.
        const cie = cieRows.get(`${section}:${parseInt(entry[4]!, 16)}`);
        if (cie) current.rows.push({ address: current.pcBegin, cells: cie });
      }
      continue;
    }
    if (/^\s+LOC\s+CFA/.test(line)) {
      columns = line.trim().split(/\s+/);
      if (current) current.rows = [];
      continue;
    }
    const row = /^([0-9a-f]{16}) (.*)$/.exec(line);
    if (row && columns.length > 0) {
      // A register rule prints as "r8 (r8)": glue the parenthesised name to its cell.
      const values: string[] = [];
      for (const token of row[2]!.trim().split(/\s+/)) {
        if (token.startsWith('(') && values.length > 0) values[values.length - 1] += ` ${token}`;
        else values.push(token);
      }
      const cell = (name: string): string => {
        const at = columns.indexOf(name);
        return at < 0 ? 'u' : (values[at - 1] ?? 'u');
      };
      const cells: Cells = [values[0]!, cell('rbp'), cell('ra')];
      if (currentCie !== undefined) cieRows.set(currentCie, cells);
      else if (current) current.rows.push({ address: parseInt(row[1]!, 16), cells });
    }
  }
  return fdes;
}

function cfaCell(rule: CfaRule): string {
  if (rule.type === 'expression') return 'exp';
  if (rule.type === 'undefined') return 'u';
  const name = REGISTER_NAMES[rule.register] ?? `r${rule.register}`;
  return `${name}${rule.offset >= 0 ? '+' : ''}${rule.offset}`;
}

function registerCell(rule: RegisterRule): string {
  switch (rule.type) {
    case 'unset':
    case 'undefined':
      return 'u';
    case 'same':
      return 's';
    case 'offset':
      return `c${rule.offset >= 0 ? '+' : ''}${rule.offset}`;
    case 'valOffset':
      return `v${rule.offset >= 0 ? '+' : ''}${rule.offset}`;
    case 'register': {
      const name = REGISTER_NAMES[rule.register] ?? `r${rule.register}`;
      return `r${rule.register} (${name})`;
    }
    case 'expression':
      return 'exp';
    case 'valExpression':
      return 'vexp';
  }
}

/** Rows as (address, cells), with rows that repeat the one before dropped. */
function collapse(rows: { address: number; cells: Cells }[], pcEnd: number): string[] {
  const out: string[] = [];
  let last = '';
  const byAddress = new Map<number, Cells>();
  for (const row of rows) if (row.address < pcEnd) byAddress.set(row.address, row.cells);
  for (const [address, cells] of [...byAddress].sort((a, b) => a[0] - b[0])) {
    const text = cells.join(' ');
    if (text === last) continue;
    last = text;
    out.push(`${address.toString(16)} ${text}`);
  }
  return out;
}

function ours(fde: FdeRows): string[] {
  return collapse(
    fde.rows.map((row) => ({ address: row.address, cells: [cfaCell(row.cfa), registerCell(row.fp), registerCell(row.ra)] as Cells })),
    fde.fde.pcEnd,
  );
}

/** The rule readelf's cells mean, in the walker's terms (undefined: an expression, checked elsewhere). */
function ruleFromCells(cells: Cells): UnwindRule | undefined {
  const [cfa, rbp, ra] = cells;
  if (ra === 'u') return { cfa: CfaKind.end, cfaOffset: 0, fp: FpKind.unchanged, fpOffset: 0 };
  if (ra === 'exp') return undefined; // signal frames: checked by symbol below
  if (ra !== 'c-8') return INVALID_RULE;
  const base = /^(rsp|rbp)([+-]\d+)$/.exec(cfa);
  if (base === null) return cfa === 'exp' ? undefined : INVALID_RULE;
  const fpSaved = /^c([+-]\d+)$/.exec(rbp);
  if (rbp !== 'u' && rbp !== 's' && fpSaved === null) return undefined;
  return {
    cfa: base[1] === 'rsp' ? CfaKind.sp : CfaKind.fp,
    cfaOffset: Number(base[2]),
    fp: fpSaved === null ? FpKind.unchanged : FpKind.atCfa,
    fpOffset: fpSaved === null ? 0 : Number(fpSaved[1]),
  };
}

/**
 * The compiled table gives, at the first and last byte of every readelf row,
 * the rule readelf's row means. Returns the number of addresses checked.
 */
function compareTableWithReadelf(path: string, expected: ReadelfFde[], table: CompiledTable): number {
  let checked = 0;
  const wrong: string[] = [];
  for (const fde of expected) {
    if (fde.pcEnd <= fde.pcBegin || fde.pcBegin === 0) continue;
    const rows = [...new Map(fde.rows.filter((r) => r.address < fde.pcEnd).map((r) => [r.address, r.cells] as const))].sort((a, b) => a[0] - b[0]);
    rows.forEach(([address, cells], k) => {
      const want = ruleFromCells(cells);
      if (want === undefined) return;
      const last = (rows[k + 1]?.[0] ?? fde.pcEnd) - 1;
      for (const at of new Set([address, last])) {
        const got = lookupRule(table, at);
        checked++;
        const same = want.cfa === CfaKind.invalid ? got.cfa === CfaKind.invalid : sameRule(got, want);
        if (!same) wrong.push(`${path} ${at.toString(16)}: got ${JSON.stringify(got)}, readelf says ${cells.join(' ')}`);
      }
    });
  }
  expect(wrong.slice(0, 5)).toEqual([]);
  return checked;
}

/** Compares every FDE; returns the number compared. */
function compareWithReadelf(path: string): number {
  const cfi = readElfCfi(path);
  const expected = parseReadelf(readelfFrames(path));
  const table = compileTable(cfi.fdes);
  expect(compareTableWithReadelf(path, expected, table)).toBeGreaterThan(0);
  const theirs = new Map<string, ReadelfFde>();
  for (const fde of expected) if (fde.pcEnd > fde.pcBegin && fde.pcBegin !== 0) theirs.set(`${fde.section}:${fde.pcBegin}`, fde);
  let compared = 0;
  const mismatches: string[] = [];
  for (const fde of cfi.fdes) {
    const reference = theirs.get(`${fde.source}:${fde.fde.pcBegin}`);
    if (reference === undefined) {
      mismatches.push(`${fde.fde.pcBegin.toString(16)}: readelf has no FDE there`);
      continue;
    }
    expect(fde.fde.pcEnd).toBe(reference.pcEnd);
    const mine = ours(fde);
    const want = collapse(reference.rows, reference.pcEnd);
    if (mine.join('\n') !== want.join('\n')) mismatches.push(`FDE ${fde.fde.pcBegin.toString(16)}:\n ours ${mine.join('\n      ')}\n want ${want.join('\n      ')}`);
    compared++;
  }
  expect(mismatches.slice(0, 5)).toEqual([]);
  // Every FDE readelf read, we read too (none silently skipped).
  expect(cfi.skipped).toEqual(new Map());
  expect(compared).toBe(theirs.size);
  return compared;
}

describe('CFI parser, interpreter and row compiler match readelf --debug-dump=frames-interp', () => {
  it('on cpu-split and libsplit.so built by clang -O2 -fomit-frame-pointer', () => {
    const build = buildOmitFramePointerSplit('clang');
    expect(compareWithReadelf(build.cpuSplit)).toBeGreaterThan(3);
    expect(compareWithReadelf(build.library)).toBeGreaterThan(0);
  });

  it('on cpu-split built by gcc -O2 -fomit-frame-pointer, with .debug_frame instead of .eh_frame', () => {
    const build = buildOmitFramePointerSplit('gcc', ['-fno-asynchronous-unwind-tables', '-fno-unwind-tables']);
    const cfi = readElfCfi(build.cpuSplit);
    expect(cfi.fdes.some((fde) => fde.source === '.debug_frame')).toBe(true);
    expect(compareWithReadelf(build.cpuSplit)).toBeGreaterThan(3);
  });

  it('on a gcc program that realigns its stack (CFA and rbp as DWARF expressions)', () => {
    const program = buildOmitFramePointerProgram('gcc', 'unwind-callbacks.c', ['-mavx2', '-mstackrealign']);
    expect(compareWithReadelf(program)).toBeGreaterThan(3);
  });

  it("on the system's libc", () => {
    expect(compareWithReadelf(LIBC)).toBeGreaterThan(2000);
  });

  it.runIf(existsSync(NODE))('on /usr/bin/node', { timeout: 120_000 }, () => {
    const compared = compareWithReadelf(NODE);
    expect(compared).toBeGreaterThan(10_000);
  });

  it('agrees with .eh_frame_hdr on how many FDEs .eh_frame has', () => {
    const cfi = readElfCfi(LIBC);
    const fromEhFrame = cfi.fdes.filter((fde) => fde.source === '.eh_frame').length;
    expect(cfi.headerFdeCount).toBeDefined();
    // The header lists every FDE; we keep those that describe code (non-empty, non-zero address).
    expect(fromEhFrame).toBeLessThanOrEqual(cfi.headerFdeCount!);
    expect(fromEhFrame).toBeGreaterThan(cfi.headerFdeCount! * 0.99);
  });
});

describe('rules the walker follows, at the functions that need them', () => {
  /** The compiled rule at a named function's first byte (+ `delta`). */
  function ruleAt(path: string, name: string, delta = 0): UnwindRule {
    const elf = ElfReader.open(path);
    try {
      const symbol = elf.functionSymbols().find((s) => s.name === name);
      if (symbol === undefined) throw new Error(`${path} has no symbol ${name}`);
      return lookupRule(compileTable(readElfCfi(path).fdes), Number(symbol.address) + delta);
    } finally {
      elf.close();
    }
  }

  it("libc's __restore_rt is a signal frame; clone's child and the program's _start end the stack", () => {
    // libc has no .symtab: __restore_rt is the one FDE of the 'S' (signal frame) CIE.
    const cfi = readElfCfi(LIBC);
    const signalFdes = cfi.fdes.filter((f) => f.fde.cie.isSignalFrame);
    expect(signalFdes).toHaveLength(1);
    expect(lookupRule(compileTable(cfi.fdes), signalFdes[0]!.fde.pcBegin + 1).cfa).toBe(CfaKind.signal);
    const program = buildOmitFramePointerSplit('gcc').cpuSplit;
    expect(ruleAt(program, '_start').cfa).toBe(CfaKind.end);
    // clone and clone3 mark the child's side (after the syscall) with an undefined return address.
    const table = compileTable(cfi.fdes);
    expect(table.rules.some((rule) => rule.cfa === CfaKind.end)).toBe(true);
  });

  it('a lazy-binding PLT is described by the PLT expression', () => {
    const program = buildOmitFramePointerSplit('gcc', ['-Wl,-z,lazy', '-fno-plt', '-fplt']).cpuSplit;
    const elf = ElfReader.open(program);
    const plt = elf.section('.plt')!;
    elf.close();
    const table = compileTable(readElfCfi(program).fdes);
    expect(lookupRule(table, Number(plt.address) + 16)).toEqual({ cfa: CfaKind.plt, cfaOffset: 11, fp: FpKind.unchanged, fpOffset: 0 });
  });

  it("gcc's realigned frame (DRAP) uses CFA = *(rbp - 8) and rbp saved at rbp", () => {
    const program = buildOmitFramePointerProgram('gcc', 'unwind-callbacks.c');
    const table = compileTable(readElfCfi(program).fdes);
    const kinds = new Set(table.rules.map((rule) => `${rule.cfa}:${rule.fp}`));
    expect(kinds).toContain(`${CfaKind.derefFp}:${FpKind.atFp}`);
    // Only the DRAP prologue and epilogue (CFA = r10 for two or three instructions) stay unsupported, and are counted.
    expect([...table.stats.unsupported.keys()]).toEqual(['cfa: register r10']);
  });

  it('compacts libc and node, and reports the sizes', () => {
    for (const path of [LIBC, ...(existsSync(NODE) ? [NODE] : [])]) {
      const table = compileTable(readElfCfi(path).fdes);
      const { fdes, inputRows, compactRows, tableRows } = table.stats;
      // Compaction must actually remove rows, and the page index must stay small next to them.
      expect(compactRows).toBeLessThan(inputRows);
      expect(table.pages.length).toBeLessThan(tableRows / 4);
      console.log(
        `${path}: ${fdes} FDEs, ${inputRows} rows -> ${compactRows} compact -> ${tableRows} in ${table.pages.length} pages, ` +
          `${table.rules.length} rules, ${(tableBytes(table) / 1024).toFixed(0)} KiB; unsupported ${JSON.stringify([...table.stats.unsupported])}`,
      );
    }
  });
});
