import { describe, expect, it } from 'vitest';
import { SymbolTable } from '../src/symbolize/symbol-table.js';

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
