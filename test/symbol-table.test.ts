import { describe, expect, it } from 'vitest';
import {
  candidateMeta,
  emptyBounds,
  NUL_TERMINATED,
  ORDER_BIAS,
  RANK_GLOBAL,
  RANK_LOCAL,
  RANK_WEAK,
  SymbolTable,
  SymbolTableBuilder,
} from '../src/symbolize/symbol-table.js';
import { referenceSymbolRows } from './helpers/symbolize-fixtures.js';

describe('SymbolTable', () => {
  it('finds the containing sized symbol and reports the offset from its start', () => {
    const t = SymbolTable.fromSymbols([
      { name: 'b', address: 0x2000n, sizeBytes: 0x10 },
      { name: 'a', address: 0x1000n, sizeBytes: 0x100 },
    ]);
    expect(t.lookup(0x1000n)).toMatchObject({ name: 'a', offset: 0n });
    expect(t.lookup(0x10ffn)).toMatchObject({ name: 'a', offset: 0xffn });
    expect(t.lookup(0x1100n)).toBeNull(); // gap between sized symbols
    expect(t.lookup(0x200fn)).toMatchObject({ name: 'b', offset: 0xfn });
    expect(t.lookup(0x2010n)).toBeNull();
    expect(t.lookup(0xfffn)).toBeNull();
  });

  it('extends zero-size symbols to the next symbol, but not past their section end', () => {
    const t = SymbolTable.fromSymbols([
      { name: 'asm_entry', address: 0x1000n, sizeBytes: 0, limit: 0x3000n },
      { name: 'next', address: 0x1800n, sizeBytes: 0x10 },
      { name: 'last_in_text', address: 0x2000n, sizeBytes: 0, limit: 0x2400n },
    ]);
    expect(t.lookup(0x17ffn)).toMatchObject({ name: 'asm_entry', offset: 0x7ffn });
    expect(t.lookup(0x23ffn)).toMatchObject({ name: 'last_in_text' });
    expect(t.lookup(0x2400n)).toBeNull();
  });

  it('keeps one row per address and picks aliases deterministically: global > weak > local, then the public name', () => {
    const syms = [
      { name: '__libc_malloc', address: 0x100n, sizeBytes: 0x40, binding: 'local' as const },
      { name: 'malloc', address: 0x100n, sizeBytes: 0x40, binding: 'global' as const },
      { name: '__malloc', address: 0x100n, sizeBytes: 0x40, binding: 'global' as const },
      { name: 'memalign', address: 0x200n, sizeBytes: 0x10, binding: 'weak' as const },
      { name: '__libc_memalign', address: 0x200n, sizeBytes: 0x10, binding: 'local' as const },
    ];
    const t = SymbolTable.fromSymbols(syms);
    expect(t.length).toBe(2);
    expect(t.lookup(0x120n)?.name).toBe('malloc');
    expect(t.lookup(0x200n)?.name).toBe('memalign');
    // Same answer whatever the input order.
    expect(SymbolTable.fromSymbols(syms.slice().reverse()).lookup(0x120n)?.name).toBe('malloc');
  });

  it('an alias with a size gives the row its size', () => {
    const t = SymbolTable.fromSymbols([
      { name: 'sized_local', address: 0x100n, sizeBytes: 0x20, binding: 'local' },
      { name: 'label', address: 0x100n, sizeBytes: 0, binding: 'global' },
      { name: 'far', address: 0x1000n, sizeBytes: 4 },
    ]);
    expect(t.lookup(0x110n)?.name).toBe('label');
    expect(t.lookup(0x130n)).toBeNull();
  });

  it('finds the enclosing function when a smaller symbol nested inside it ends before the address', () => {
    const t = SymbolTable.fromSymbols([
      { name: 'outer', address: 0x100n, sizeBytes: 0x100 },
      { name: 'inner_label', address: 0x120n, sizeBytes: 0x8 },
    ]);
    expect(t.lookup(0x124n)?.name).toBe('inner_label');
    expect(t.lookup(0x180n)).toMatchObject({ name: 'outer', offset: 0x80n });
  });

  it('handles 64-bit kernel addresses exactly', () => {
    const t = SymbolTable.fromSymbols([
      { name: 'k1', address: 0xffffffff81000000n, sizeBytes: 0 },
      { name: 'k2', address: 0xffffffff81000001n, sizeBytes: 0 },
    ]);
    expect(t.lookup(0xffffffff81000000n)?.name).toBe('k1');
    expect(t.lookup(0xffffffff81000001n)?.name).toBe('k2');
    expect(t.lookup(0xffffffffffffff00n)?.name).toBe('k2');
  });

  it('empty table resolves nothing', () => {
    expect(SymbolTable.fromSymbols([]).lookup(5n)).toBeNull();
    expect(SymbolTable.empty.lookup(0n)).toBeNull();
  });
});

describe('SymbolTable columns', () => {
  type Sym = Parameters<typeof referenceSymbolRows>[0][number];

  function rowsOf(t: SymbolTable): { start: bigint; end: bigint; name: string; payload: number }[] {
    return Array.from({ length: t.length }, (_, i) => ({ start: t.startAt(i), end: t.endAt(i), name: t.nameAt(i), payload: t.payload[i]! }));
  }

  /** Same symbols through the builder with names as NUL-terminated bytes in one Buffer (as an ELF string table). */
  function viaBytes(symbols: readonly Sym[]): SymbolTable {
    const b = new SymbolTableBuilder();
    const parts: Buffer[] = [Buffer.from([0])];
    const offsets: number[] = [];
    let pos = 1;
    for (const s of symbols) {
      const bytes = Buffer.from(s.name + '\0', 'utf8');
      offsets.push(pos);
      parts.push(bytes);
      pos += bytes.length;
    }
    const src = b.addNameSource(Buffer.concat(parts));
    symbols.forEach((s, i) => {
      const hi = Number(s.address >> 32n);
      const lo = Number(s.address & 0xffff_ffffn);
      const lim = s.limit === undefined ? [-1, 0] : [Number(s.limit >> 32n), Number(s.limit & 0xffff_ffffn)];
      const rank = { global: RANK_GLOBAL, weak: RANK_WEAK, local: RANK_LOCAL }[s.binding ?? 'global'];
      b.add(hi, lo, Number(s.sizeBytes), rank, src, offsets[i]!, NUL_TERMINATED, s.payload ?? -1, lim[0]!, lim[1]!);
    });
    return b.build();
  }

  function randomSymbols(seed: number, count: number, base: bigint, spread: number): Sym[] {
    let x = seed;
    const rnd = (n: number): number => {
      x = (x * 1103515245 + 12345) & 0x7fffffff;
      return x % n;
    };
    const names = ['a', 'b', '_a', '__libc_a', 'zz', 'ab', 'é', 'ü1', '_', 'x_y', 'a\u{1f600}'];
    const bindings = ['global', 'weak', 'local'] as const;
    return Array.from({ length: count }, (_, i) => {
      const address = base + BigInt(rnd(spread));
      const sized = rnd(3) > 0;
      return {
        name: names[rnd(names.length)]! + (rnd(4) === 0 ? String(i) : ''),
        address,
        sizeBytes: sized ? rnd(64) + 1 : 0,
        binding: bindings[rnd(3)],
        ...(rnd(2) === 0 ? { limit: address + BigInt(rnd(200)) } : {}),
        payload: rnd(5) - 1,
      };
    });
  }

  it('matches the BigInt reference on random tables (aliases, limits, non-ASCII ties), from strings and from bytes', () => {
    for (let seed = 1; seed <= 40; seed++) {
      for (const base of [0x1000n, 0x5555_5555_0000n, 0xffff_ffff_8100_0000n]) {
        const syms = randomSymbols(seed, 5 + seed * 7, base, 400);
        const expected = referenceSymbolRows(syms);
        expect(rowsOf(SymbolTable.fromSymbols(syms)), `seed ${seed} base ${base.toString(16)}`).toEqual(expected);
        expect(rowsOf(viaBytes(syms)), `bytes: seed ${seed} base ${base.toString(16)}`).toEqual(expected);
      }
    }
  });

  it('orders names exactly as strings do, not as UTF-8 bytes', () => {
    // "é" is one UTF-16 unit but two bytes: as strings it is the shorter name.
    const syms: Sym[] = [
      { name: 'ab', address: 0x100n, sizeBytes: 8 },
      { name: 'é', address: 0x100n, sizeBytes: 8 },
    ];
    expect(SymbolTable.fromSymbols(syms).lookup(0x100n)?.name).toBe('é');
    expect(viaBytes(syms).lookup(0x100n)?.name).toBe('é');
  });

  it('keeps exact 64-bit rows when the addresses span more than 2^53', () => {
    const syms: Sym[] = [
      { name: 'user', address: 0x1000n, sizeBytes: 0x10 },
      { name: 'k1', address: 0xffffffff81000000n, sizeBytes: 0 },
      { name: 'k2', address: 0xffffffff81000001n, sizeBytes: 0 },
      { name: 'top', address: 0xffff_ffff_ffff_fff0n, sizeBytes: 0x100 },
    ];
    const t = SymbolTable.fromSymbols(syms);
    expect(t.isNarrow).toBe(false);
    expect(rowsOf(t)).toEqual(referenceSymbolRows(syms));
    expect(t.lookup(0x100fn)).toMatchObject({ name: 'user', offset: 0xfn });
    expect(t.lookup(0x1010n)).toBeNull();
    expect(t.lookup(0xffffffff81000000n)?.name).toBe('k1');
    expect(t.lookup(0xffffffff81000001n)?.name).toBe('k2');
    expect(t.lookup(0xffff_ffff_ffff_fff5n)).toMatchObject({ name: 'top', offset: 5n });
    expect(t.endAt(t.length - 1)).toBe(0xffff_ffff_ffff_ffffn);
  });

  it('sorts exactly when offset-and-index keys would not fit a double', () => {
    // Span just under 2^53: narrow rows, but the packed sort keys overflow, so the comparator sort runs.
    const syms: Sym[] = [];
    for (let i = 0; i < 40; i++) syms.push({ name: `f${i}`, address: BigInt(((i * 7919) % 40) + 1) * 0x1000_0000_0000n + 0x1000n, sizeBytes: i % 3 === 0 ? 0 : 0x10 });
    const t = SymbolTable.fromSymbols(syms);
    expect(t.isNarrow).toBe(true);
    expect(rowsOf(t)).toEqual(referenceSymbolRows(syms));
  });

  it('sorts exactly when offset-and-index keys would not fit 64 bits', () => {
    // 3000 candidates need 12 index bits; a span of 2^52.5 leaves the offset too few: the comparator sort runs.
    const syms: Sym[] = [];
    for (let i = 0; i < 3000; i++) {
      const address = 0x1000n + BigInt((i * 7919) % 3000) * 2_124_000_000_000n;
      syms.push({ name: `f${i % 700}`, address, sizeBytes: i % 3 === 0 ? 0 : 0x10, binding: (['global', 'weak', 'local'] as const)[i % 3] });
      if (i % 10 === 0) syms.push({ name: `alias${i}`, address, sizeBytes: 0x10, binding: 'weak' });
    }
    const t = SymbolTable.fromSymbols(syms);
    expect(t.startAt(t.length - 1) - t.startAt(0)).toBeGreaterThan(2n ** 52n);
    expect(t.isNarrow).toBe(true);
    expect(rowsOf(t)).toEqual(referenceSymbolRows(syms));
  });

  it('picks between aliases tied on rank and size by name, whichever are looked up first', () => {
    const b = new SymbolTableBuilder();
    const src = b.addNameSource(Buffer.from('\0_ZN1AC2Ev\0_ZN1AC1Ev\0__x\0y\0zz\0'));
    // 0x100: two constructor aliases, the C1 one added second; 0x200: y beats zz (shorter) and __x (underscores).
    b.add(0, 0x100, 8, RANK_GLOBAL, src, 1, NUL_TERMINATED);
    b.add(0, 0x100, 8, RANK_GLOBAL, src, 11, NUL_TERMINATED);
    b.add(0, 0x200, 8, RANK_WEAK, src, 27, NUL_TERMINATED);
    b.add(0, 0x200, 8, RANK_WEAK, src, 21, NUL_TERMINATED);
    b.add(0, 0x200, 8, RANK_WEAK, src, 25, NUL_TERMINATED);
    b.add(0, 0x200, 8, RANK_LOCAL, src, 0, NUL_TERMINATED); // a local alias (with an empty name) loses on rank
    const t = b.build();
    expect(t.length).toBe(2);
    expect(t.lookup(0x204n)).toMatchObject({ name: 'y', offset: 4n });
    expect(t.nameAt(0)).toBe('_ZN1AC1Ev');
    expect(t.payload[0]).toBe(-1);
    // Aliases that differ in payload are decided when the table is built (the payload is the winner's).
    const strings = SymbolTable.fromSymbols([
      { name: 'long_name', address: 0x100n, sizeBytes: 8, payload: 1 },
      { name: 'short', address: 0x100n, sizeBytes: 8, payload: 2 },
    ]);
    expect(strings.lookup(0x100n)?.name).toBe('short');
    expect(strings.payload[0]).toBe(2);
  });

  it('measures offsets from each row\'s own origin, also for rows added after a fragment', () => {
    const t = SymbolTable.fromSymbols([
      { name: 'whole', address: 0x1000n, sizeBytes: 0x10 },
      { name: 'fragment', address: 0x2040n, sizeBytes: 0x10, origin: 0x2000n },
      { name: 'after', address: 0x3000n, sizeBytes: 0x10 },
    ]);
    expect(t.lookup(0x1004n)).toMatchObject({ name: 'whole', offset: 4n });
    expect(t.lookup(0x2044n)).toMatchObject({ name: 'fragment', offset: 0x44n });
    expect(t.lookup(0x3004n)).toMatchObject({ name: 'after', offset: 4n });
    expect(t.originAt(2)).toBe(0x3000n);
  });

  it('takes bulk appends: NUL-terminated names, no payload, the range given', () => {
    const b = new SymbolTableBuilder(16);
    const src = b.addNameSource(Buffer.from('\0kfunc\0ufunc\0kfunc2\0'));
    b.add(0, 0x5000, 0x10, RANK_GLOBAL, src, 7, 5, 3);
    const cols = b.columnsFor(100); // grows the columns
    const limit = b.addLimit(0xffff_ffff, 0x8100_1000);
    const bounds = emptyBounds();
    const rows: [number, number, number][] = [
      [0xffff_ffff, 0x8100_0000, 1],
      [0xffff_ffff, 0x8100_0800, 13],
    ];
    let n = b.count;
    for (const [hi, lo, name] of rows) {
      cols.addrHi[n] = hi;
      cols.addrLo[n] = lo;
      cols.size[n] = 0;
      cols.meta[n] = candidateMeta(RANK_GLOBAL, src);
      cols.nameOff[n] = name;
      cols.limit[n] = limit;
      if ((hi ^ ORDER_BIAS) < bounds[0]! || ((hi ^ ORDER_BIAS) === bounds[0] && (lo ^ ORDER_BIAS) < bounds[1]!)) [bounds[0], bounds[1]] = [hi ^ ORDER_BIAS, lo ^ ORDER_BIAS];
      if ((hi ^ ORDER_BIAS) > bounds[2]! || ((hi ^ ORDER_BIAS) === bounds[2] && (lo ^ ORDER_BIAS) > bounds[3]!)) [bounds[2], bounds[3]] = [hi ^ ORDER_BIAS, lo ^ ORDER_BIAS];
      n++;
    }
    b.appended(n, bounds);
    const t = b.build();
    expect(t.isNarrow).toBe(false); // user and kernel addresses: more than 2^53 apart
    expect(t.lookup(0x5004n)).toMatchObject({ name: 'ufunc', offset: 4n });
    expect(t.payload[0]).toBe(3);
    expect(t.lookup(0xffff_ffff_8100_0004n)).toMatchObject({ name: 'kfunc', offset: 4n });
    expect(t.payload[1]).toBe(-1);
    expect(t.lookup(0xffff_ffff_8100_07ffn)).toMatchObject({ name: 'kfunc', offset: 0x7ffn }); // up to the next row
    expect(t.lookup(0xffff_ffff_8100_0fffn)?.name).toBe('kfunc2');
    expect(t.lookup(0xffff_ffff_8100_1000n)).toBeNull(); // the limit
  });

  it('decodes a name only when a lookup needs it, and keeps only the name bytes some row uses', () => {
    const b = new SymbolTableBuilder();
    const used = b.addNameSource(Buffer.from('\0hot\0'));
    const loser = b.addNameSource(Buffer.alloc(1 << 20, 0x61));
    b.add(0, 0x1000, 0x10, RANK_GLOBAL, used, 1, NUL_TERMINATED);
    b.add(0, 0x1000, 0x10, RANK_LOCAL, loser, 0, 5); // a local alias: loses to the global one
    b.add(0, 0x2000, 0, RANK_GLOBAL, used, 1, 2, 7, 0, 0x2400); // explicit length: "ho"
    const t = b.build();
    expect(t.length).toBe(2);
    expect(t.estimateBytes()).toBeLessThan(1 << 16);
    expect(t.lookup(0x1004n)).toMatchObject({ name: 'hot', offset: 4n, index: 0 });
    expect(t.lookup(0x23ffn)).toMatchObject({ name: 'ho', index: 1 });
    expect(t.payload[1]).toBe(7);
    expect(t.lookup(0x2400n)).toBeNull();
  });
});
