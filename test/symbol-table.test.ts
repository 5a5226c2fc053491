import { describe, expect, it } from 'vitest';
import { NUL_TERMINATED, RANK_GLOBAL, RANK_LOCAL, RANK_WEAK, SymbolTable, SymbolTableBuilder } from '../src/symbolize/symbol-table.js';
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
