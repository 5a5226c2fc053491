import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { KernelSymbols, parseProcModules } from '../src/symbolize/kallsyms.js';
import { Symbolizer } from '../src/symbolize/symbolizer.js';
import { referenceSymbolRows } from './helpers/symbolize-fixtures.js';
import { packageRoot } from '../src/util/package-root.js';

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

  it('reads lines outside the kernel\'s fixed layout the way the line regex does', () => {
    const ks = KernelSymbols.parse(
      [
        'ffffffff81000000  T  spaced_out', // extra spaces
        'FFFFFFFF81000100 t upper_hex',
        '81000200 t short_addr', // fewer than 16 digits
        'ffffffff81000300 T with_mod [  my mod ]', // spaces around the module
        'ffffffff81000400 T no_close [mod',
        'ffffffff81000500 T\ttabbed\t[tabmod]',
        'ffffffff81000600 TT bad_type',
        'ffffffff8100070g T bad_hex',
        'ffffffff81000800 T',
        '',
        'ffffffff81000900 d data_after',
      ].join('\n'),
    );
    expect(ks.malformedLines).toBe(3);
    expect(ks.symbolCount).toBe(6);
    expect(ks.lookup(0xffffffff81000001n)).toEqual({ name: 'spaced_out', offset: 1n, module: null });
    expect(ks.lookup(0xffffffff81000100n)?.name).toBe('upper_hex');
    expect(ks.lookup(0x81000200n)).toEqual({ name: 'short_addr', offset: 0n, module: null });
    expect(ks.lookup(0xffffffff81000300n)).toEqual({ name: 'with_mod', offset: 0n, module: '  my mod ' });
    expect(ks.lookup(0xffffffff81000400n)).toEqual({ name: 'no_close', offset: 0n, module: null });
    expect(ks.lookup(0xffffffff81000500n)).toEqual({ name: 'tabbed', offset: 0n, module: 'tabmod' });
    expect(ks.lookup(0xffffffff81000950n)?.name).toBe('tabbed');
    expect(ks.rangeOf(null)).toEqual({ start: 0x81000200n, end: 0xffffffff81000401n });
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

  it('resolves every live text symbol exactly as the line-regex parse and the BigInt table did', () => {
    // The former parser, as an oracle: regex per line, BigInt addresses, eager names.
    const re = /^([0-9a-f]+)\s+([a-zA-Z])\s+(\S+)(?:\s+\[([^\]]+)\])?/i;
    const binding = { T: 'global', t: 'local', W: 'weak', w: 'weak' } as const;
    const modules: string[] = [];
    const raw: Parameters<typeof referenceSymbolRows>[0][number][] = [];
    for (const line of kallsyms.split('\n')) {
      const m = re.exec(line);
      if (m === null) continue;
      const address = BigInt('0x' + m[1]!);
      const b = binding[m[2] as keyof typeof binding];
      if (b === undefined || address === 0n) continue;
      let payload = -1;
      if (m[4] !== undefined) {
        payload = modules.indexOf(m[4]);
        if (payload < 0) payload = modules.push(m[4]) - 1;
      }
      raw.push({ name: m[3]!, address, sizeBytes: 0, binding: b, payload });
    }
    const expected = referenceSymbolRows(raw);
    const ks = KernelSymbols.parse(Buffer.from(kallsyms));
    expect(ks.fullyParsed).toBe(false);
    expect(KernelSymbols.parseFull(Buffer.from(kallsyms)).symbolCount).toBe(expected.length);
    // Without a full parse the core kernel's symbols are counted from sampled lines.
    expect(Math.abs(ks.symbolCount - expected.length)).toBeLessThan(expected.length * 0.05);
    const mismatches: string[] = [];
    for (const row of expected) {
      const module = row.payload < 0 ? null : modules[row.payload]!;
      const got = ks.lookup(row.start);
      if (got?.name !== row.name || got.offset !== 0n || got.module !== module) mismatches.push(`${row.start.toString(16)} ${row.name}: ${JSON.stringify(got, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}`);
      if (row.end - row.start > 1n && row.end !== 0xffff_ffff_ffff_ffffn && ks.lookup(row.end - 1n)?.name !== row.name) mismatches.push(`${row.name} does not extend to ${row.end.toString(16)}`);
      if (mismatches.length > 10) break;
    }
    expect(mismatches).toEqual([]);
  });

  it('refreshKernelSymbols re-reads', () => {
    const s = new Symbolizer();
    const n = s.refreshKernelSymbols().symbolCount;
    expect(s.refreshKernelSymbols().symbolCount).toBeGreaterThan(n / 2);
  });
});

// The restricted view: what the kernel shows a process without CAP_SYSLOG
// when kptr_restrict or perf_event_paranoid > 1 hides addresses (zeros). The
// tests above need real addresses and so run where they are visible; these
// run on the restricted view itself: the live file when this process gets
// it, else the same file read as user nobody (setpriv). They skip only on a
// kernel that shows addresses to every user, where no restricted view exists.
const NOBODY = ['--reuid=65534', '--regid=65534', '--clear-groups'];
const restrictedView: string | null = visible
  ? (() => {
      const text = execFileSync('setpriv', [...NOBODY, 'cat', '/proc/kallsyms'], { encoding: 'utf8', maxBuffer: 512 << 20 });
      return /^0+ /.test(text) ? text : null;
    })()
  : kallsyms;

describe.runIf(restrictedView !== null)('kernel symbols under kptr_restrict (restricted view of this kernel)', () => {
  /** A real kernel function address when we can see one, else a typical one. */
  const realAddress = visible ? (addressOf('_stext') ?? 0xffffffff81000000n) + 0x100n : 0xffffffff81000100n;

  it('flags the addresses as hidden and names no frame', () => {
    const ks = KernelSymbols.parse(restrictedView!);
    expect(ks.addressesHidden).toBe(true);
    expect(ks.lookup(realAddress)).toBeNull();
    expect(ks.lookup(0n)).toBeNull();
    const full = KernelSymbols.parseFull(restrictedView!);
    expect(full.addressesHidden).toBe(true);
    expect(full.lookup(realAddress)).toBeNull();
  });

  it('the symbolizer, run as a user that gets the restricted view, leaves kernel frames unnamed and says why', () => {
    const symbolizer = join(packageRoot(), 'dist', 'src', 'symbolize', 'symbolizer.js');
    const script = [
      `const { Symbolizer } = await import(${JSON.stringify(symbolizer)});`,
      'const s = new Symbolizer();',
      `const frames = s.symbolizeKernel([${realAddress}n, ${realAddress + 8n}n]);`,
      'process.stdout.write(JSON.stringify({ names: frames.map((f) => f.functionName ?? null), kinds: frames.map((f) => f.kind), hidden: s.stats().kernelAddressesHidden }));',
    ].join('\n');
    const run = visible ? (args: string[]) => execFileSync('setpriv', [...NOBODY, ...args], { encoding: 'utf8' }) : (args: string[]) => execFileSync(args[0]!, args.slice(1), { encoding: 'utf8' });
    const out = JSON.parse(run([process.execPath, '--input-type=module', '-e', script])) as { names: (string | null)[]; kinds: string[]; hidden: boolean };
    expect(out.hidden).toBe(true);
    expect(out.names).toEqual([null, null]);
    expect(out.kinds).toEqual(['kernel', 'kernel']);
  });
});
