import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { KernelSymbols, parseProcModules } from '../src/symbolize/kallsyms.js';
import { Symbolizer } from '../src/symbolize/symbolizer.js';

const kallsyms = readFileSync('/proc/kallsyms', 'utf8');
const visible = !/^0+ /.test(kallsyms);

/** All text symbol names at an address: aliases (e.g. __x64_sys_getpid and __ia32_sys_getpid) share one. */
function namesAt(addr: bigint): string[] {
  const hex = addr.toString(16).padStart(16, '0');
  return [...kallsyms.matchAll(new RegExp(`^${hex} [tTwW] (\\S+)$`, 'gm'))].map((m) => m[1]!);
}

function addressOf(name: string): bigint | null {
  const m = new RegExp(`^([0-9a-f]+) [tT] ${name}$`, 'm').exec(kallsyms);
  return m === null ? null : BigInt('0x' + m[1]!);
}

describe('kallsyms parsing', () => {
  it('keeps only text symbols, with modules, sorted', () => {
    const ks = KernelSymbols.parse(
      [
        'ffffffff81000000 T _stext',
        'ffffffff81000100 t helper',
        'ffffffff81000200 D some_data',
        'ffffffff81000300 W weak_fn',
        'ffffffffc0001000 t mod_fn\t[mymod]',
        'ffffffffc0001100 T mod_fn2\t[mymod]',
        'ffffffffc0002000 t other\t[othermod]',
        'garbage line',
      ].join('\n'),
      'mymod 8192 0 - Live 0xffffffffc0001000\nothermod 4096 0 - Live 0xffffffffc0002000\n',
    );
    expect(ks.addressesHidden).toBe(false);
    expect(ks.malformedLines).toBe(1);
    expect(ks.symbolCount).toBe(6);
    expect(ks.lookup(0xffffffff81000105n)).toEqual({ name: 'helper', offset: 5n, module: null });
    // data symbols do not cut a text symbol short; the next text symbol does
    expect(ks.lookup(0xffffffff81000250n)?.name).toBe('helper');
    expect(ks.lookup(0xffffffffc0001104n)).toEqual({ name: 'mod_fn2', offset: 4n, module: 'mymod' });
    // /proc/modules bounds the module's last symbol
    expect(ks.lookup(0xffffffffc0002fffn)?.module).toBe('othermod');
    expect(ks.lookup(0xffffffffc0003000n)).toBeNull();
    expect(ks.lookup(0xffffffff80000000n)).toBeNull();
    expect(ks.rangeOf('mymod')).toEqual({ start: 0xffffffffc0001000n, end: 0xffffffffc0003000n });
  });

  it('flags addresses hidden by kptr_restrict instead of resolving against zeros', () => {
    const ks = KernelSymbols.parse('0000000000000000 T _stext\n0000000000000000 t helper\n0000000000000000 t mod_fn\t[mymod]\n');
    expect(ks.addressesHidden).toBe(true);
    expect(ks.lookup(0n)).toBeNull();
    expect(ks.lookup(0xffffffff81000000n)).toBeNull();
  });

  it('parses /proc/modules lines', () => {
    expect(parseProcModules('nf_tables 331776 0 - Live 0xffffffffc0a00000\nhidden 100 0 - Live 0x0000000000000000\nshort line\n')).toEqual([
      { name: 'nf_tables', start: 0xffffffffc0a00000n, sizeBytes: 331776 },
    ]);
  });
});

describe.runIf(visible)('kernel symbolization on this machine', () => {
  it('resolves a known syscall handler from the live kallsyms', () => {
    const name = addressOf('__x64_sys_getpid') !== null ? '__x64_sys_getpid' : 'do_sys_openat2';
    const addr = addressOf(name);
    expect(addr).not.toBeNull();
    const s = new Symbolizer();
    const [leaf, caller] = s.symbolizeKernel([addr! + 3n, addr! + 1n]);
    const aliases = namesAt(addr!);
    expect(aliases).toContain(name);
    expect(leaf).toMatchObject({ kind: 'kernel', mappingFile: '[kernel.kallsyms]', address: addr! + 3n });
    expect(aliases).toContain(leaf?.functionName);
    // Global (T) aliases are preferred over local (t) ones like __do_sys_getpid.
    if (name === '__x64_sys_getpid') expect(leaf?.functionName).toMatch(/^__(x64|ia32)_sys_getpid$/);
    // Non-leaf frames are return addresses: addr+1 - 1 is still inside.
    expect(caller?.functionName).toBe(leaf?.functionName);
    expect(s.stats().kernelAddressesHidden).toBe(false);
    expect(s.stats().kernelSymbols).toBeGreaterThan(1000);
  });

  const moduleLine = /^([0-9a-f]+) [tT] (\S+)\t\[([^\]]+)\]$/m.exec(kallsyms);
  it.runIf(moduleLine !== null)('resolves a module (or BPF/ftrace) symbol with its module name', () => {
    const addr = BigInt('0x' + moduleLine![1]!);
    const [f] = new Symbolizer().symbolizeKernel([addr]);
    // Several names can share one address; whichever is picked must be a symbol of that module.
    expect(f?.mappingFile).toBe(`[kernel.kallsyms]/${moduleLine![3]}`);
    expect(f?.functionName).not.toBeNull();
    expect(kallsyms).toContain(`${moduleLine![1]} `);
  });

  it('refreshKernelSymbols re-reads', () => {
    const s = new Symbolizer();
    const n = s.refreshKernelSymbols().symbolCount;
    expect(s.refreshKernelSymbols().symbolCount).toBeGreaterThan(n / 2);
  });
});
