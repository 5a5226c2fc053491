import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ElfError, ElfReader, ET_DYN, ET_EXEC, PT_LOAD, toElfAddress, type ElfSymbol } from '../src/symbolize/elf.js';
import { SymbolTableBuilder } from '../src/symbolize/symbol-table.js';
import { buildSymbolizeFixtures, referenceSymbolRows, removeSymbolizeFixtures, type SymbolizeFixtures } from './helpers/symbolize-fixtures.js';
import { readelf } from './helpers/readelf.js';

const LIBC = '/lib/x86_64-linux-gnu/libc.so.6';

interface ReadelfSymbol {
  table: string;
  name: string;
  value: bigint;
  size: number;
  type: string;
  bind: string;
}

/** Defined FUNC/IFUNC symbols as readelf -sW lists them, names without @VERSION. */
function readelfFunctions(path: string): ReadelfSymbol[] {
  const out: ReadelfSymbol[] = [];
  let table = '';
  for (const line of readelf(['-sW', path]).split('\n')) {
    const t = /^Symbol table '([^']+)'/.exec(line);
    if (t !== null) {
      table = t[1]!;
      continue;
    }
    const m = /^\s*\d+:\s+([0-9a-f]+)\s+(0x[0-9a-f]+|\d+)\s+(\w+)\s+(\w+)\s+\w+\s+(\w+)\s+(.*)$/.exec(line);
    if (m === null) continue;
    const [, value, size, type, bind, ndx, rawName] = m;
    if (type !== 'FUNC' && type !== 'IFUNC') continue;
    if (ndx === 'UND' || ndx === 'ABS') continue;
    const name = rawName!.replace(/ \(\d+\)$/, '').replace(/@.*$/, '');
    if (name === '' || BigInt('0x' + value!) === 0n) continue;
    out.push({ table, name, value: BigInt('0x' + value!), size: Number(size), type: type!, bind: bind! });
  }
  return out;
}

function key(table: string, name: string, value: bigint, size: number): string {
  return `${table} ${name} ${value.toString(16)} ${size}`;
}

/** @param expectFunctions false for stripped executables, whose .dynsym defines no functions. */
function checkAgainstReadelf(path: string, expectFunctions = true): void {
  const elf = ElfReader.open(path);
  try {
    // Build ID vs readelf -n
    const expectedId = /Build ID: ([0-9a-f]+)/.exec(readelf(['-n', path]))?.[1] ?? null;
    expect(elf.buildId()).toBe(expectedId);

    // Program headers vs readelf -lW (LOAD lines)
    const loads = readelf(['-lW', path])
      .split('\n')
      .map((l) => /^\s*LOAD\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+0x[0-9a-f]+\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+([RWE ]+?)\s+0x([0-9a-f]+)/.exec(l))
      .filter((m) => m !== null)
      .map((m) => ({
        offset: parseInt(m[1]!, 16),
        vaddr: BigInt('0x' + m[2]!),
        fileSizeBytes: parseInt(m[3]!, 16),
        memSizeBytes: parseInt(m[4]!, 16),
        flags: (m[5]!.includes('R') ? 4 : 0) | (m[5]!.includes('W') ? 2 : 0) | (m[5]!.includes('E') ? 1 : 0),
        align: parseInt(m[6]!, 16),
      }));
    expect(loads.length).toBeGreaterThan(0);
    expect(elf.loadSegments.map(({ offset, vaddr, fileSizeBytes, memSizeBytes, flags, align }) => ({ offset, vaddr, fileSizeBytes, memSizeBytes, flags, align }))).toEqual(loads);

    // Function symbols vs readelf -sW
    const ours = elf.functionSymbols().filter((s: ElfSymbol) => s.type !== 0);
    const theirs = readelfFunctions(path);
    if (expectFunctions) expect(theirs.length).toBeGreaterThan(0);
    expect(new Set(ours.map((s) => key(s.table, s.name, s.address, s.sizeBytes)))).toEqual(new Set(theirs.map((s) => key(s.table, s.name, s.value, s.size))));
    const bindOf = (b: string): string => b.toLowerCase();
    const ourBinds = new Map(ours.map((s) => [key(s.table, s.name, s.address, s.sizeBytes), s.binding]));
    for (const s of theirs) expect(ourBinds.get(key(s.table, s.name, s.value, s.size))).toBe(bindOf(s.bind));

    // Section names vs readelf -SW
    const sectionNames = [...readelf(['-SW', path]).matchAll(/^\s*\[\s*\d+\]\s+(\S+)/gm)].map((m) => m[1]!).filter((n) => n !== 'NULL');
    expect(elf.sections.map((s) => s.name).filter((n) => n !== '')).toEqual(sectionNames);
  } finally {
    elf.close();
  }
}

describe('ELF reader against readelf', () => {
  let fx: SymbolizeFixtures;
  beforeAll(() => {
    fx = buildSymbolizeFixtures();
  });
  afterAll(() => removeSymbolizeFixtures(fx));

  it('reads the PIE fixture (ET_DYN) like readelf does', () => {
    checkAgainstReadelf(fx.pie);
    const elf = ElfReader.open(fx.pie);
    expect(elf.header.type).toBe(ET_DYN);
    expect(elf.hasSymtab()).toBe(true);
    const names = elf.functionSymbols().map((s) => s.name);
    expect(names).toContain('hot_loop');
    expect(names).toContain('_ZN5fleet6Widget4spinEl');
    elf.close();
  });

  it('reads the non-PIE fixture (ET_EXEC) like readelf does', () => {
    checkAgainstReadelf(fx.noPie);
    const elf = ElfReader.open(fx.noPie);
    expect(elf.header.type).toBe(ET_EXEC);
    elf.close();
  });

  it('reads the shared library, including its local (static) function', () => {
    checkAgainstReadelf(fx.lib);
    const elf = ElfReader.open(fx.lib);
    const inner = elf.functionSymbols(['.symtab']).find((s) => s.name === 'lib_inner');
    expect(inner?.binding).toBe('local');
    elf.close();
  });

  it('reads a stripped binary: no .symtab, .dynsym only, and its .gnu_debuglink', () => {
    checkAgainstReadelf(fx.strippedDebuglink, false);
    const elf = ElfReader.open(fx.strippedDebuglink);
    expect(elf.hasSymtab()).toBe(false);
    const link = elf.debugLink();
    expect(link?.fileName).toBe('pie.debug');
    // readelf --debug-dump=links prints the CRC as hex
    const crc = /CRC value: 0x([0-9a-f]+)/i.exec(readelf(['--debug-dump=links', fx.strippedDebuglink]))?.[1];
    expect(crc).toBeDefined();
    expect(link?.crc32).toBe(parseInt(crc!, 16));
    elf.close();
  });

  it('reads the only-keep-debug file (NOBITS text, but .symtab and build ID kept)', () => {
    const dbg = join(fx.dir, 'pie.debug');
    const elf = ElfReader.open(dbg);
    expect(elf.buildId()).toBe(ElfReader.open(fx.pie).buildId());
    expect(elf.functionSymbols(['.symtab']).map((s) => s.name)).toContain('hot_loop');
    elf.close();
  });

  it.runIf(existsSync(LIBC))('reads the system libc like readelf does', () => {
    checkAgainstReadelf(LIBC);
  });
});

/**
 * The column-wise table (numbers straight from the section bytes, names left
 * in the string table and decoded on lookup) must have exactly the rows the
 * straightforward BigInt algorithm gives for functionSymbols(), and every
 * row's name must be one readelf lists at that address.
 */
function checkColumnTable(path: string, which: ('.symtab' | '.dynsym')[]): number {
  const elf = ElfReader.open(path);
  try {
    const builder = new SymbolTableBuilder();
    elf.addFunctionSymbols(builder, which);
    const table = builder.build();
    expect(table.isNarrow).toBe(true);
    const expected = referenceSymbolRows(elf.functionSymbols(which).map((s) => ({ name: s.name, address: s.address, sizeBytes: s.sizeBytes, binding: s.binding, limit: s.sectionEnd })));
    const namesAt = new Map<bigint, Set<string>>();
    for (const s of readelfFunctions(path)) {
      if (!which.includes(s.table as '.symtab' | '.dynsym')) continue;
      let set = namesAt.get(s.value);
      if (set === undefined) namesAt.set(s.value, (set = new Set()));
      set.add(s.name);
    }
    expect(table.length).toBe(expected.length);
    const mismatches: string[] = [];
    for (let i = 0; i < table.length; i++) {
      const e = expected[i]!;
      const got = { start: table.startAt(i), end: table.endAt(i), name: table.nameAt(i) };
      if (got.start !== e.start || got.end !== e.end || got.name !== e.name) mismatches.push(`row ${i}: ${JSON.stringify(got, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString(16) : v))} vs ${e.name}`);
      // readelf lists FUNC/IFUNC symbols; an untyped assembly symbol may be the only one at its address.
      const names = namesAt.get(got.start);
      if (names !== undefined && !names.has(got.name)) mismatches.push(`row ${i}: ${got.name} is not a readelf name at ${got.start.toString(16)}`);
      if (mismatches.length > 10) break;
    }
    expect(mismatches).toEqual([]);
    // Lookups land on the same rows.
    for (let i = 0; i < table.length; i += Math.max(1, Math.floor(table.length / 500))) {
      const e = expected[i]!;
      expect(table.lookup(e.start)).toMatchObject({ name: e.name, offset: 0n, index: i });
    }
    return table.length;
  } finally {
    elf.close();
  }
}

describe('column-wise symbol tables with lazily decoded names', () => {
  let fx: SymbolizeFixtures;
  beforeAll(() => {
    fx = buildSymbolizeFixtures();
  });
  afterAll(() => removeSymbolizeFixtures(fx));

  it('match the eager symbols and readelf for the fixtures', () => {
    expect(checkColumnTable(fx.pie, ['.symtab'])).toBeGreaterThan(3);
    expect(checkColumnTable(fx.noPie, ['.symtab'])).toBeGreaterThan(3);
    expect(checkColumnTable(fx.lib, ['.symtab'])).toBeGreaterThan(3);
    expect(checkColumnTable(fx.lib, ['.dynsym'])).toBeGreaterThan(1);
    checkColumnTable(fx.strippedDebuglink, ['.dynsym']);
  });

  it.runIf(existsSync(LIBC))('match the eager symbols and readelf for the system libc (.dynsym, many aliases)', () => {
    expect(checkColumnTable(LIBC, ['.dynsym'])).toBeGreaterThan(1000);
  });

  it.runIf(existsSync('/usr/bin/node'))('match the eager symbols and readelf for /usr/bin/node (large .symtab, folded aliases)', () => {
    const elf = ElfReader.open('/usr/bin/node');
    const hasSymtab = elf.hasSymtab();
    elf.close();
    expect(checkColumnTable('/usr/bin/node', [hasSymtab ? '.symtab' : '.dynsym'])).toBeGreaterThan(1000);
  }, 60_000);
});

describe('load bias', () => {
  it('maps runtime addresses to ELF addresses through the PT_LOAD holding the mapping offset', () => {
    const segs = [
      { offset: 0, vaddr: 0n, fileSizeBytes: 0x1000, memSizeBytes: 0x1000 },
      { offset: 0x1000, vaddr: 0x1000n, fileSizeBytes: 0x5000, memSizeBytes: 0x5000 },
      { offset: 0x6000, vaddr: 0x7000n, fileSizeBytes: 0x800, memSizeBytes: 0x900 },
    ];
    // PIE text mapped at 0x5555_5555_5000 with file offset 0x1000.
    expect(toElfAddress(segs, 0x5555_5555_5000n, 0x1000n, 0x5555_5555_5123n)).toBe(0x1123n);
    // Segment whose vaddr differs from its offset.
    expect(toElfAddress(segs, 0x7f00_0000_0000n, 0x6000n, 0x7f00_0000_0010n)).toBe(0x7010n);
    // ET_EXEC: mapping at the vaddr itself.
    const exec = [{ offset: 0x1000, vaddr: 0x401000n, fileSizeBytes: 0x2000, memSizeBytes: 0x2000 }];
    expect(toElfAddress(exec, 0x401000n, 0x1000n, 0x401234n)).toBe(0x401234n);
    expect(toElfAddress(exec, 0x401000n, 0x9000n, 0x401234n)).toBeNull();
  });
});

describe('malformed ELF input', () => {
  let dir: string;
  let fx: SymbolizeFixtures;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'fleetprof-badelf-'));
    fx = buildSymbolizeFixtures();
  });
  afterAll(() => {
    removeSymbolizeFixtures(fx);
    rmSync(dir, { recursive: true, force: true });
  });

  function codeOf(path: string): string {
    try {
      const elf = ElfReader.open(path);
      // Everything that reads tables must fail cleanly too.
      elf.buildId();
      elf.functionSymbols();
      const builder = new SymbolTableBuilder();
      elf.addFunctionSymbols(builder, ['.symtab', '.dynsym']);
      builder.build();
      elf.debugLink();
      elf.close();
      return 'OK';
    } catch (err) {
      expect(err).toBeInstanceOf(ElfError);
      return (err as ElfError).code;
    }
  }

  it('rejects a non-ELF file with ELF_BAD_MAGIC', () => {
    const p = join(dir, 'text');
    writeFileSync(p, '#!/bin/sh\necho not an elf\n');
    expect(codeOf(p)).toBe('ELF_BAD_MAGIC');
    const empty = join(dir, 'empty');
    writeFileSync(empty, '');
    expect(codeOf(empty)).toBe('ELF_BAD_MAGIC');
  });

  it('rejects truncated files with ELF_TRUNCATED', () => {
    const full = readFileSync(fx.pie);
    for (const len of [8, 40, 63, 200, 1000]) {
      const p = join(dir, `trunc-${len}`);
      writeFileSync(p, full.subarray(0, len));
      expect(codeOf(p), `truncated to ${len} bytes`).toBe('ELF_TRUNCATED');
    }
    // Cut in the middle: headers read, tables at the end are missing.
    const p = join(dir, 'trunc-half');
    writeFileSync(p, full.subarray(0, full.length >> 1));
    expect(codeOf(p)).toBe('ELF_TRUNCATED');
  });

  it('rejects 32-bit and big-endian files with their own codes', () => {
    const full = readFileSync(fx.pie);
    const c32 = Buffer.from(full);
    c32[4] = 1;
    writeFileSync(join(dir, 'elf32'), c32);
    expect(codeOf(join(dir, 'elf32'))).toBe('ELF_UNSUPPORTED_CLASS');
    const be = Buffer.from(full);
    be[5] = 2;
    writeFileSync(join(dir, 'elfbe'), be);
    expect(codeOf(join(dir, 'elfbe'))).toBe('ELF_UNSUPPORTED_ENDIANNESS');
  });

  it('reports a missing file as ELF_IO', () => {
    expect(codeOf(join(dir, 'does-not-exist'))).toBe('ELF_IO');
  });

  it('survives random corruption of headers without throwing anything but ElfError', () => {
    const full = readFileSync(fx.pie);
    let seed = 12345;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
    for (let i = 0; i < 200; i++) {
      const b = Buffer.from(full);
      for (let k = 0; k < 8; k++) b[16 + (rnd() % 48)] = rnd() & 0xff; // ELF header fields
      const sh = Number(b.readBigUInt64LE(40));
      if (sh > 0 && sh < b.length - 64) for (let k = 0; k < 8; k++) b[sh + (rnd() % Math.min(2048, b.length - sh))] = rnd() & 0xff;
      const p = join(dir, 'fuzz');
      writeFileSync(p, b);
      codeOf(p); // asserts any throw is an ElfError
    }
    copyFileSync(fx.pie, join(dir, 'fine'));
    expect(codeOf(join(dir, 'fine'))).toBe('OK');
  });

  it('has PT_LOAD constants matching the fixtures', () => {
    const elf = ElfReader.open(fx.pie);
    expect(elf.programHeaders.filter((p) => p.type === PT_LOAD).length).toBe(elf.loadSegments.length);
    elf.close();
  });
});
