// The symbol tables of real binaries against readelf: every function symbol
// readelf lists must resolve to its own row, named by the alias the rule
// prefers (computed here from readelf's columns, independently of how the
// table picks it), and the extents must cover the symbols' bytes.
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BinaryCache } from '../src/symbolize/binary-cache.js';
import { ElfReader } from '../src/symbolize/elf.js';
import { SymbolTableBuilder, type SymbolTable } from '../src/symbolize/symbol-table.js';
import { buildSymbolizeFixtures, removeSymbolizeFixtures, type SymbolizeFixtures } from './helpers/symbolize-fixtures.js';
import { readelf } from './helpers/readelf.js';

const LIB_DIR = '/usr/lib/x86_64-linux-gnu';
const NODE = '/usr/bin/node';
const LIBC = `${LIB_DIR}/libc.so.6`;
const LIBSTDCXX = `${LIB_DIR}/libstdc++.so.6`;

interface Candidate {
  name: string;
  value: bigint;
  size: number;
  type: string;
  bind: string;
  /** Position in the symbol table (ties go to the earlier). */
  order: number;
}

/** Indices of the sections readelf -SW flags executable (X). */
function executableSections(path: string): Set<number> {
  const exec = new Set<number>();
  for (const line of readelf(['-SW', path]).split('\n')) {
    const m = /^\s*\[\s*(\d+)\]\s+\S+\s+\S+\s+[0-9a-f]+\s+[0-9a-f]+\s+[0-9a-f]+\s+[0-9a-f]+\s+([A-Za-z]*)\s+\d+\s+\d+\s+\d+\s*$/.exec(line);
    if (m !== null && m[2]!.includes('X')) exec.add(Number(m[1]));
  }
  return exec;
}

/**
 * The symbols of one table (.symtab, or .dynsym for stripped files) that a
 * profiler treats as code, as readelf -sW lists them: defined FUNC and IFUNC
 * symbols, and sized NOTYPE ones in executable sections; not at address 0,
 * not nameless.
 */
function readelfCandidates(path: string, table: '.symtab' | '.dynsym'): { funcs: Candidate[]; all: Candidate[] } {
  const exec = executableSections(path);
  const all: Candidate[] = [];
  const funcs: Candidate[] = [];
  let current = '';
  let order = 0;
  for (const line of readelf(['-sW', path]).split('\n')) {
    const t = /^Symbol table '([^']+)'/.exec(line);
    if (t !== null) {
      current = t[1]!;
      continue;
    }
    if (current !== table) continue;
    const m = /^\s*\d+:\s+([0-9a-f]+)\s+(0x[0-9a-f]+|\d+)\s+(\w+)\s+(\w+)\s+\w+\s+(\w+)\s?(.*)$/.exec(line);
    if (m === null) continue;
    const [, value, size, type, bind, ndx, rawName] = m;
    order++;
    if (!/^\d+$/.test(ndx!)) continue; // UND, ABS, COM
    const sized = Number(size) > 0;
    if (!(type === 'FUNC' || type === 'IFUNC' || (type === 'NOTYPE' && sized && exec.has(Number(ndx))))) continue;
    // .dynsym names carry their symbol version (name@VER, name@@VER), sometimes an index: not part of the name.
    let name = rawName!.replace(/ \(\d+\)$/, '');
    if (table === '.dynsym') name = name.replace(/@.*$/, '');
    const c = { name, value: BigInt('0x' + value!), size: Number(size), type: type!, bind: bind!, order };
    if (c.name === '' || c.value === 0n) continue;
    all.push(c);
    if (type === 'FUNC') funcs.push(c);
  }
  return { funcs, all };
}

const RANK: Record<string, number> = { GLOBAL: 0, WEAK: 1 };

function underscores(s: string): number {
  return s.length - s.replace(/^_+/, '').length;
}

/** The documented alias rule, on readelf's columns: global < weak < local; sized first; fewer leading underscores; shorter; smaller; earlier. */
function preferredFirst(a: Candidate, b: Candidate): number {
  return (
    (RANK[a.bind] ?? 2) - (RANK[b.bind] ?? 2) ||
    (a.size > 0 ? 0 : 1) - (b.size > 0 ? 0 : 1) ||
    underscores(a.name) - underscores(b.name) ||
    a.name.length - b.name.length ||
    (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) ||
    a.order - b.order
  );
}

function tableOf(path: string, table: '.symtab' | '.dynsym'): SymbolTable {
  const elf = ElfReader.open(path);
  try {
    const builder = new SymbolTableBuilder();
    elf.addFunctionSymbols(builder, [table]);
    return builder.build();
  } finally {
    elf.close();
  }
}

/** Checks `path`'s table (.symtab when it has one, as the binary loader uses) against readelf; returns how many symbols were checked. */
function checkAgainstReadelf(path: string): { checked: number; aliasGroups: number } {
  const table: '.symtab' | '.dynsym' = readelf(['-SW', path]).includes(' .symtab ') ? '.symtab' : '.dynsym';
  const { funcs, all } = readelfCandidates(path, table);
  const t = tableOf(path, table);
  const byAddress = new Map<bigint, Candidate[]>();
  for (const c of all) {
    const group = byAddress.get(c.value);
    if (group === undefined) byAddress.set(c.value, [c]);
    else group.push(c);
  }
  expect(t.isNarrow).toBe(true);
  expect(t.length, 'one row per distinct address').toBe(byAddress.size);
  const problems: string[] = [];
  for (const f of funcs) {
    const group = byAddress.get(f.value)!;
    const preferred = group.slice().sort(preferredFirst)[0]!.name;
    const hit = t.lookup(f.value);
    if (hit === null) {
      problems.push(`${f.name} @${f.value.toString(16)}: no row`);
    } else if (t.startAt(hit.index) !== f.value || hit.offset !== 0n) {
      problems.push(`${f.name} @${f.value.toString(16)}: row starts at ${t.startAt(hit.index).toString(16)}`);
    } else if (!group.some((c) => c.name === hit.name)) {
      problems.push(`${f.name} @${f.value.toString(16)}: ${hit.name} is no alias there`);
    } else if (hit.name !== preferred) {
      problems.push(`${f.name} @${f.value.toString(16)}: ${hit.name}, the rule prefers ${preferred}`);
    }
    if (f.size > 0) {
      const last = f.value + BigInt(f.size - 1);
      const inside = t.lookup(last);
      if (inside === null || !(t.startAt(inside.index) <= last && last < t.endAt(inside.index))) {
        problems.push(`${f.name} @${f.value.toString(16)}+${f.size - 1}: not covered`);
      }
    }
    if (problems.length > 20) break;
  }
  expect(problems).toEqual([]);
  // Nothing below the first symbol or beyond the last row's extent.
  const lowest = all.reduce((m, c) => (c.value < m ? c.value : m), all[0]!.value);
  expect(t.lookup(lowest - 1n)).toBeNull();
  expect(t.lookup(0n)).toBeNull();
  let top = 0n;
  for (let i = 0; i < t.length; i++) if (t.endAt(i) > top) top = t.endAt(i);
  expect(top).toBeLessThan(0x1_0000_0000_0000n);
  expect(t.lookup(top)).toBeNull();
  expect(t.lookup(top + 0x1_0000_0000n)).toBeNull();
  expect(t.lookup(0xffff_ffff_ffff_fff0n)).toBeNull();
  return { checked: funcs.length, aliasGroups: [...byAddress.values()].filter((g) => g.length > 1).length };
}

describe('symbol tables of real binaries match readelf', () => {
  let fx: SymbolizeFixtures;
  beforeAll(() => {
    fx = buildSymbolizeFixtures();
  });
  afterAll(() => removeSymbolizeFixtures(fx));

  it('the test fixtures (PIE, non-PIE, shared library)', () => {
    for (const path of [fx.pie, fx.noPie, fx.lib]) expect(checkAgainstReadelf(path).checked).toBeGreaterThan(3);
  });

  it.runIf(existsSync(NODE))('/usr/bin/node: 78k functions in .symtab, thousands of same-address aliases', () => {
    const { checked, aliasGroups } = checkAgainstReadelf(NODE);
    expect(checked).toBeGreaterThan(50_000);
    expect(aliasGroups).toBeGreaterThan(1000);
    // The binary loader builds the same table.
    const loaded = new BinaryCache().load(NODE, { binaryPath: NODE, debugRoots: ['/'] });
    expect(loaded.ok && loaded.binary.symbolSource).toBe('symtab');
    if (loaded.ok) expect(loaded.binary.symbols.length).toBe(tableOf(NODE, '.symtab').length);
  }, 60_000);

  it.runIf(existsSync(LIBC))('libc.so.6 (.dynsym: versioned names, weak/global aliases, IFUNCs)', () => {
    expect(checkAgainstReadelf(LIBC).checked).toBeGreaterThan(1000);
  }, 30_000);

  it.runIf(existsSync(LIBSTDCXX))('libstdc++.so.6 (C1/C2 constructor aliases)', () => {
    expect(checkAgainstReadelf(LIBSTDCXX).checked).toBeGreaterThan(1000);
  }, 30_000);
});
