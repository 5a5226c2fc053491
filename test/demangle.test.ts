import { describe, expect, it } from 'vitest';
import { demangle, demanglerCallCount, looksMangled } from '../src/symbolize/demangle.js';

describe('demangle', () => {
  it.each([
    ['_ZN5fleet6Widget4spinEl', 'fleet::Widget::spin(long)'],
    ['_ZNKSt6vectorIiSaIiEE4sizeEv', 'std::vector<int, std::allocator<int> >::size() const'],
    ['__Z3addii', 'add(int, int)'],
    ['_Z3addii.cold', 'add(int, int) [clone .cold]'],
    // Rust legacy (hash dropped) and v0
    ['_ZN3std2rt10lang_start17h0123456789abcdefE', 'std::rt::lang_start'],
    ['_RNvCs1234_7mycrate3foo', 'mycrate::foo'],
  ])('%s', (mangled, plain) => {
    expect(demangle(mangled)).toBe(plain);
  });

  it('leaves plain and undemanglable names alone', () => {
    expect(demangle('main')).toBe('main');
    expect(demangle('_start')).toBe('_start');
    expect(demangle('_Zgarbage!!')).toBe('_Zgarbage!!');
    expect(demangle('')).toBe('');
    expect(looksMangled('malloc')).toBe(false);
    expect(looksMangled('_RNvCs1234_7mycrate3foo')).toBe(true);
  });

  it('asks the demangler once per name (cached), also for names it cannot demangle', () => {
    const before = demanglerCallCount();
    for (let i = 0; i < 3; i++) expect(demangle('_ZN5fleet6Widget5twirlEi')).toBe('fleet::Widget::twirl(int)');
    for (let i = 0; i < 3; i++) expect(demangle('_Znot!mangled')).toBe('_Znot!mangled');
    expect(demanglerCallCount() - before).toBe(2);
    // Plain names never reach it.
    demangle('main');
    expect(demanglerCallCount() - before).toBe(2);
  });
});
