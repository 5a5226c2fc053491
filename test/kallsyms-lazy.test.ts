// KernelSymbols.parse reads the core kernel's part of /proc/kallsyms in place
// instead of parsing it; these tests hold it to exactly what parsing every
// line (KernelSymbols.parseFull, the former behaviour) answers.
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { KernelSymbols } from '../src/symbolize/kallsyms.js';
// A deterministic PRNG, so a failure reproduces.
import { mulberry32 } from '../web/src/profile-logic/synthetic.js';

const hex = (a: bigint): string => a.toString(16).padStart(16, '0');
const show = (v: unknown): string => JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString(16) : x));


/** Every address written in the text, and its neighbours. */
function addressesIn(text: string): bigint[] {
  const out: bigint[] = [];
  for (const m of text.matchAll(/^([0-9a-fA-F]+)\s/gm)) {
    const a = BigInt('0x' + m[1]!);
    out.push(a, a + 1n, a > 0n ? a - 1n : 0n);
  }
  return out;
}

/** Random addresses in [low, high). */
function randomAddresses(next: () => number, low: bigint, high: bigint, n: number): bigint[] {
  const span = Number(high - low);
  const out: bigint[] = [];
  for (let i = 0; i < n; i++) out.push(low + BigInt(Math.floor(next() * span)));
  return out;
}

/** Lookups (and everything else observable) of the lazy parse that differ from the full parse. */
function differences(lazy: KernelSymbols, full: KernelSymbols, addresses: readonly bigint[]): string[] {
  const out: string[] = [];
  const same = (what: string, a: unknown, b: unknown): void => {
    if (show(a) !== show(b)) out.push(`${what}: lazy ${show(a)}, full ${show(b)}`);
  };
  for (const a of addresses) {
    same(`lookup ${hex(a)}`, lazy.lookup(a), full.lookup(a));
    if (out.length > 10) return out;
  }
  same('addressesHidden', lazy.addressesHidden, full.addressesHidden);
  same('modules', lazy.modules, full.modules);
  same('rangeOf(null)', lazy.rangeOf(null), full.rangeOf(null));
  same('coreStart', lazy.coreStart, full.coreStart);
  same('coreEnd', lazy.coreEnd, full.coreEnd);
  for (const m of full.modules) same(`rangeOf(${m})`, lazy.rangeOf(m), full.rangeOf(m));
  return out;
}

function expectEquivalent(text: string, modulesText: string | undefined, extra: readonly bigint[] = []): KernelSymbols {
  const lazy = KernelSymbols.parse(Buffer.from(text), modulesText);
  const full = KernelSymbols.parseFull(Buffer.from(text), modulesText);
  expect(full.fullyParsed).toBe(true);
  expect(differences(lazy, full, [...addressesIn(text), ...extra])).toEqual([]);
  expect(lazy.malformedLines).toBe(full.malformedLines);
  return lazy;
}

const TYPES = ['T', 'T', 't', 't', 't', 'W', 'w', 'D', 'd', 'R', 'r', 'b', 'A'];

/** A random name from a small alphabet: equal lengths, equal names and leading underscores are common. */
function randomName(next: () => number): string {
  const under = ['', '', '', '_', '__', '___'][Math.floor(next() * 6)]!;
  let s = '';
  const n = 1 + Math.floor(next() * 6);
  for (let i = 0; i < n; i++) s += 'abcz'[Math.floor(next() * 4)];
  return under + s;
}

/** A sorted core part in the kernel's layout: aliases (gap 0), interleaved data symbols. */
function syntheticCore(next: () => number, lines: number, start = 0xffffffff81000000n): string[] {
  const out: string[] = [];
  let addr = start;
  for (let i = 0; i < lines; i++) {
    if (i > 0 && next() >= 0.25) addr += BigInt(1 + Math.floor(next() * 200));
    out.push(`${hex(addr)} ${TYPES[Math.floor(next() * TYPES.length)]!} ${randomName(next)}`);
  }
  return out;
}

describe('lazy kallsyms: synthetic input', () => {
  it('names an address by the alias the table picks: rank, then underscores, length, name, line', () => {
    const text = [
      'ffffffff81000000 t __local_a',
      'ffffffff81000000 D data_same_addr',
      'ffffffff81000000 W weak_b',
      'ffffffff81000000 T _glob_long_name',
      'ffffffff81000000 T _glob_x',
      'ffffffff81000000 T __glob',
      'ffffffff81000010 d data',
      'ffffffff81000020 t next_local',
      'ffffffff81000020 t next_alias',
      'ffffffff81000020 t next_alias',
      'ffffffff81000040 r rodata',
      'ffffffff81000050 w weak_only',
      'ffffffff81000050 W aaaa_weak',
      'ffffffff81000050 t a',
      'ffffffff81000060 D last_data',
      '',
    ].join('\n');
    const ks = expectEquivalent(text, undefined);
    expect(ks.fullyParsed).toBe(false);
    expect(ks.lookup(0xffffffff81000000n)).toEqual({ name: '_glob_x', offset: 0n, module: null });
    // data symbols do not end a text symbol's extent
    expect(ks.lookup(0xffffffff8100001fn)).toEqual({ name: '_glob_x', offset: 0x1fn, module: null });
    expect(ks.lookup(0xffffffff81000045n)).toEqual({ name: 'next_alias', offset: 0x25n, module: null });
    expect(ks.lookup(0xffffffff81000050n)?.name).toBe('aaaa_weak');
    // the last text symbol extends to the end of the address space, as in the table
    expect(ks.lookup(0xffffffffffff0000n)?.name).toBe('aaaa_weak');
    expect(ks.lookup(0xffffffff80ffffffn)).toBeNull();
    expect(ks.symbolCount).toBe(3);
    expect(ks.rangeOf(null)).toEqual({ start: 0xffffffff81000000n, end: 0xffffffff81000051n });
  });

  it('agrees with the full parse on a big random core, sampled rather than checked line by line', () => {
    const next = mulberry32(1);
    const core = syntheticCore(next, 30_000);
    const text = core.join('\n') + '\n';
    const full = KernelSymbols.parseFull(text);
    const ks = expectEquivalent(text, undefined, randomAddresses(next, 0xffffffff80fff000n, full.coreEnd + 4096n, 5000));
    expect(ks.fullyParsed).toBe(false);
    // Estimated from 256 sampled lines: with half the lines data symbols and a quarter aliases (the
    // kernel has ~0.1% and ~0.2%) it varies by some 5%; on the live kernel it must be within 5%.
    expect(Math.abs(ks.symbolCount - full.symbolCount)).toBeLessThan(full.symbolCount * 0.15);
  });

  it('combines the core part with module, bpf and ftrace lines, also where their addresses interleave', () => {
    const next = mulberry32(2);
    const core = syntheticCore(next, 4000);
    const coreAddrs = core.map((l) => BigInt('0x' + l.slice(0, 16)));
    const tail: string[] = [];
    // A module inside the core's range (bounded by /proc/modules), one above it, one without an extent.
    const inside = coreAddrs[1000]! + 3n;
    for (let i = 0; i < 40; i++) tail.push(`${hex(inside + BigInt(i * 16))} ${i % 3 === 0 ? 'T' : 't'} in_${randomName(next)}\t[inmod]`);
    for (let i = 0; i < 40; i++) tail.push(`${hex(0xffffffffc0100000n + BigInt(i * 32))} t up_${randomName(next)}\t[upmod]`);
    // Tail symbols at the very addresses of core text lines: aliases across both parts, of every rank.
    for (let i = 0; i < 300; i++) {
      const k = Math.floor(next() * core.length);
      tail.push(`${hex(coreAddrs[k]!)} ${['T', 't', 'W', 'w', 'd'][i % 5]!} ${randomName(next)}\t[${i % 2 === 0 ? 'noext' : 'inmod'}]`);
    }
    for (let i = 0; i < 20; i++) tail.push(`${hex(0xffffffffa0000000n + BigInt(Math.floor(next() * 1e6)))} t bpf_prog_${i}_x\t[bpf]`);
    tail.push(`${hex(coreAddrs[2000]! + 1n)} t bpf_in_core\t[bpf]`);
    tail.push('ffffffffc0201000 t ftrace_trampoline\t[__builtin__ftrace]');
    // Lines after the first bracket that the full parser reads as core kernel ones, and a malformed one.
    tail.push(`${hex(coreAddrs[3000]! + 5n)} T no_close [mod`);
    tail.push('ffffffff70000000 T below_everything [oops');
    tail.push('not a symbol line');
    // Shuffled: no order after the core part.
    for (let i = tail.length - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1));
      [tail[i], tail[j]] = [tail[j]!, tail[i]!];
    }
    const text = [...core, ...tail].join('\n') + '\n';
    const modulesText = `inmod 1024 0 - Live 0x${hex(inside)}\nupmod 4096 1 - Live 0xffffffffc0100000\n`;
    const full = KernelSymbols.parseFull(text, modulesText);
    const ks = expectEquivalent(text, modulesText, [
      ...randomAddresses(next, 0xffffffff6fff0000n, 0xffffffffc0300000n, 5000),
      ...randomAddresses(next, coreAddrs[0]! - 4096n, coreAddrs[coreAddrs.length - 1]! + 4096n, 10_000),
      ...randomAddresses(next, inside - 64n, inside + 2048n, 2000),
    ]);
    expect(ks.fullyParsed).toBe(false);
    expect(ks.malformedLines).toBe(1);
    expect(ks.lookup(0xffffffffc0201004n)).toEqual({ name: 'ftrace_trampoline', offset: 4n, module: '__builtin__ftrace' });
    expect(ks.lookup(inside + 1n)?.module).toBe('inmod');
    expect(ks.rangeOf(null).start).toBe(0xffffffff70000000n);
    // the cross-part aliases really were contested both ways
    const names = new Set(coreAddrs.map((a) => ks.lookup(a)?.module ?? 'core'));
    expect(names.has('core') && names.has('noext') && names.has('inmod')).toBe(true);
    expect(Math.abs(ks.symbolCount - full.symbolCount)).toBeLessThan(full.symbolCount * 0.15);
  });

  it('ends the core part at a module suffix after any whitespace; core lines win ties with later lines', () => {
    const text = [
      'ffffffff81000000 T a_fn',
      'ffffffff81000100 t b_fn',
      'ffffffff81000200 t last_fn',
      'ffffffff81000300 d data',
      'ffffffffc0000000 t m_fn [m]', // a space, not the kernel's tab: still a module suffix
      'ffffffff81000100 t b_fn\t[dup]', // same address, rank and name as a core line: the earlier line names it
      'ffffffff81000200 t last_fn_x\t[bpf]', // at the core's last text symbol, and loses to it
      'ffffffff81000000 T a\t[win]', // same rank, shorter name: wins over the core line
      'ffffffffd0000000 T above_all [unclosed', // no module: a core kernel symbol, above the core part
      '',
    ].join('\n');
    const ks = expectEquivalent(text, undefined, [0xffffffffc0000004n, 0xffffffff81000104n, 0xffffffff81000204n, 0xffffffffd0000010n]);
    expect(ks.fullyParsed).toBe(false);
    expect(ks.lookup(0xffffffffc0000004n)).toEqual({ name: 'm_fn', offset: 4n, module: 'm' });
    expect(ks.lookup(0xffffffff81000104n)).toEqual({ name: 'b_fn', offset: 4n, module: null });
    expect(ks.lookup(0xffffffff81000204n)).toEqual({ name: 'last_fn', offset: 4n, module: null });
    expect(ks.lookup(0xffffffff81000000n)).toEqual({ name: 'a', offset: 0n, module: 'win' });
    expect(ks.lookup(0xffffffffd0000010n)).toEqual({ name: 'above_all', offset: 0x10n, module: null });
    expect(ks.rangeOf(null)).toEqual({ start: 0xffffffff81000000n, end: 0xffffffffd0000001n });
  });

  it('treats all-zero addresses as hidden without parsing the core part', () => {
    const text = ['0000000000000000 T _stext', '0000000000000000 t helper', '0000000000000000 D data', '0000000000000000 t mod_fn\t[mymod]', ''].join('\n');
    const ks = expectEquivalent(text, undefined, [0xffffffff81000000n]);
    expect(ks.fullyParsed).toBe(false);
    expect(ks.addressesHidden).toBe(true);
    expect(ks.symbolCount).toBe(0);
    expect(ks.lookup(0n)).toBeNull();
    // some address shown, in the tail only: not hidden
    const shown = expectEquivalent(text.replace('0000000000000000 t mod_fn', 'ffffffffc0000000 t mod_fn'), undefined);
    expect(shown.addressesHidden).toBe(false);
    expect(shown.lookup(0xffffffffc0000001n)).toEqual({ name: 'mod_fn', offset: 1n, module: 'mymod' });
  });

  it('parses everything when a line of a small core part is not in the kernel layout', () => {
    const text = ['ffffffff81000000 T a_fn', 'ffffffff81000100 t b_fn', 'garbage', 'ffffffff81000300  t spaced_fn', 'ffffffff81000400 T d_fn', ''].join('\n');
    const ks = expectEquivalent(text, undefined);
    expect(ks.fullyParsed).toBe(true);
    expect(ks.malformedLines).toBe(1);
    expect(ks.lookup(0xffffffff81000301n)?.name).toBe('spaced_fn');
  });

  it('switches to a full parse when a lookup reaches a line of a big core part not in the kernel layout', () => {
    const core = syntheticCore(mulberry32(3), 20_000);
    const at = 12_345;
    const before = BigInt('0x' + core[at - 1]!.slice(0, 16));
    core[at] = 'this line is garbage';
    core[at + 1] = core[at + 1]!.replace(' ', '  '); // outside the fixed layout, but a symbol to the full parser
    const text = core.join('\n') + '\n';
    const ks = KernelSymbols.parse(text);
    const full = KernelSymbols.parseFull(text);
    // The survey's probes missed these lines; far from them, lookups read the core part in place.
    expect(ks.fullyParsed).toBe(false);
    expect(ks.malformedLines).toBe(0);
    expect(show(ks.lookup(0xffffffff81000000n))).toBe(show(full.lookup(0xffffffff81000000n)));
    expect(ks.fullyParsed).toBe(false);
    // A lookup between its neighbours must read the bad line.
    ks.lookup(before + 1n);
    expect(ks.fullyParsed).toBe(true);
    expect(ks.malformedLines).toBe(1);
    expect(differences(ks, full, addressesIn(text))).toEqual([]);
  });

  it('parses everything when the core part is out of order', () => {
    const small = ['ffffffff81000100 T b_fn', 'ffffffff81000000 T a_fn', 'ffffffff81000200 T c_fn', ''].join('\n');
    const ks = expectEquivalent(small, undefined);
    expect(ks.fullyParsed).toBe(true);
    expect(ks.lookup(0xffffffff81000050n)?.name).toBe('a_fn');
    // A big core whose second half lies below its first: the survey's probes see the drop.
    const next = mulberry32(4);
    const high = syntheticCore(next, 10_000, 0xffffffff82000000n);
    const low = syntheticCore(next, 10_000, 0xffffffff81000000n);
    const big = expectEquivalent([...high, ...low].join('\n') + '\n', undefined, randomAddresses(next, 0xffffffff81000000n, 0xffffffff82100000n, 2000));
    expect(big.fullyParsed).toBe(true);
  });

  it('switches to a full parse when a lookup meets an address out of order', () => {
    const core = syntheticCore(mulberry32(6), 20_000);
    const at = 9_876;
    core[at - 1] = core[at - 1]!.slice(0, 17) + 't before_spike';
    // Above every other line, between lines the survey did not probe.
    core[at] = 'fffffffff0000000 t spike';
    const before = BigInt('0x' + core[at - 1]!.slice(0, 16));
    const text = core.join('\n') + '\n';
    const ks = KernelSymbols.parse(text);
    expect(ks.fullyParsed).toBe(false);
    // The search for an address just above the line before it must read the spike: its neighbour above.
    expect(ks.lookup(before + 1n)).toEqual({ name: 'before_spike', offset: 1n, module: null });
    expect(ks.fullyParsed).toBe(true);
    expect(differences(ks, KernelSymbols.parseFull(text), addressesIn(text))).toEqual([]);
  });

  it('handles empty input, a missing trailing newline and string input', () => {
    const empty = expectEquivalent('', undefined, [0n, 0xffffffff81000000n]);
    expect(empty.fullyParsed).toBe(false);
    expect(empty.symbolCount).toBe(0);
    expect(empty.addressesHidden).toBe(false);
    expect(empty.rangeOf(null)).toEqual({ start: 0n, end: 0n });

    const coreOnly = 'ffffffff81000000 T a_fn\nffffffff81000100 t b_fn\nffffffff81000200 T c_fn';
    const a = expectEquivalent(coreOnly, undefined, [0xffffffff81000250n]);
    expect(a.fullyParsed).toBe(false);
    expect(a.lookup(0xffffffff81000201n)).toEqual({ name: 'c_fn', offset: 1n, module: null });
    expect(a.rangeOf(null)).toEqual({ start: 0xffffffff81000000n, end: 0xffffffff81000201n });

    const withTail = coreOnly + '\nffffffffc0000000 t m_fn\t[m]';
    const b = expectEquivalent(withTail, undefined, [0xffffffffbfffffffn, 0xffffffffc0000010n]);
    expect(b.fullyParsed).toBe(false);
    expect(b.lookup(0xffffffffbfffffffn)?.name).toBe('c_fn');
    expect(b.lookup(0xffffffffc0000010n)).toEqual({ name: 'm_fn', offset: 0x10n, module: 'm' });

    const fromString = KernelSymbols.parse(withTail);
    expect(fromString.lookup(0xffffffff81000104n)).toEqual({ name: 'b_fn', offset: 4n, module: null });
  });
});

const live = existsSync('/proc/kallsyms') ? readFileSync('/proc/kallsyms') : Buffer.alloc(0);
const visible = live.length > 0 && !/^0+ /.test(live.toString('latin1', 0, 32));

describe.runIf(visible)('lazy kallsyms on this machine', () => {
  it('answers every lookup exactly as the full parse of the live /proc/kallsyms', () => {
    const modulesText = existsSync('/proc/modules') ? readFileSync('/proc/modules', 'utf8') : undefined;
    const lazy = KernelSymbols.parse(live, modulesText);
    const full = KernelSymbols.parseFull(live, modulesText);
    expect(lazy.fullyParsed).toBe(false);
    const text = live.toString('latin1');
    const starts: bigint[] = [];
    const tail: bigint[] = [];
    for (const m of text.matchAll(/^([0-9a-f]{16}) ([tTwW]) \S+(\t\[)?/gm)) {
      const a = BigInt('0x' + m[1]!);
      starts.push(a, a - 1n, a + 1n);
      if (m[3] !== undefined) tail.push(a, a - 1n, a + 1n, a + 64n);
    }
    expect(starts.length).toBeGreaterThan(3000);
    const next = mulberry32(5);
    const random = randomAddresses(next, full.coreStart - 4096n, full.coreEnd + 4096n, 20_000);
    for (const m of full.modules) {
      const r = full.rangeOf(m);
      if (r.end > r.start) tail.push(...randomAddresses(next, r.start, r.end + 4096n, 50));
    }
    expect(differences(lazy, full, [...starts, ...random, ...tail])).toEqual([]);
    expect(lazy.fullyParsed).toBe(false);
    expect(lazy.malformedLines).toBe(full.malformedLines);
    expect(lazy.addressesHidden).toBe(false);
    expect(Math.abs(lazy.symbolCount - full.symbolCount)).toBeLessThan(full.symbolCount * 0.05);
  });
});
