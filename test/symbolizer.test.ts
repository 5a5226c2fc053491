import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ElfReader, PF_X } from '../src/symbolize/elf.js';
import { parseProcMaps } from '../src/symbolize/proc-maps.js';
import { Symbolizer, type ResolvedFrame } from '../src/symbolize/symbolizer.js';
import { readOwnVdso } from '../src/symbolize/vdso.js';
import { buildSymbolizeFixtures, removeSymbolizeFixtures, parsePrintedAddresses, type PrintedAddresses, type SymbolizeFixtures } from './helpers/symbolize-fixtures.js';

interface Running {
  child: ChildProcess;
  pid: number;
  stdout: string;
}

const children: ChildProcess[] = [];

/** Starts a program and waits until it prints a line matching `ready`. */
function start(cmd: string, args: string[], ready: RegExp): Promise<Running> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child);
    let stdout = '';
    const timer = setTimeout(() => reject(new Error(`${cmd} did not get ready: ${stdout}`)), 20_000);
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (ready.test(stdout)) {
        clearTimeout(timer);
        resolve({ child, pid: child.pid!, stdout });
      }
    });
    child.on('error', reject);
  });
}

function stop(r: Running): Promise<void> {
  return new Promise((resolve) => {
    if (r.child.exitCode !== null || r.child.signalCode !== null) return resolve();
    r.child.on('exit', () => resolve());
    r.child.kill('SIGKILL');
  });
}

function symbolOf(path: string, name: string): { address: bigint; sizeBytes: number } {
  const elf = ElfReader.open(path);
  try {
    const s = elf.functionSymbols().find((x) => x.name === name);
    if (s === undefined) throw new Error(`${name} not in ${path}`);
    return { address: s.address, sizeBytes: s.sizeBytes };
  } finally {
    elf.close();
  }
}

function buildIdOf(path: string): string | null {
  const elf = ElfReader.open(path);
  try {
    return elf.buildId();
  } finally {
    elf.close();
  }
}

function names(frames: ResolvedFrame[]): (string | null)[] {
  return frames.map((f) => f.functionName);
}

let fx: SymbolizeFixtures;
beforeAll(() => {
  fx = buildSymbolizeFixtures();
});
afterAll(() => removeSymbolizeFixtures(fx));
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

describe('symbolizing a live native process', () => {
  for (const variant of ['pie', 'noPie'] as const) {
    it(`${variant}: names functions in the executable and in a shared library, also after the process exits`, async () => {
      const exe = fx[variant];
      const r = await start(exe, [], /READY/);
      const a: PrintedAddresses = parsePrintedAddresses(r.stdout);
      const s = new Symbolizer();
      expect(s.observeProcess(r.pid)).toBe(true);
      // Leaf first; all but the leaf are treated as return addresses (looked up at address - 1).
      const stack = [a.hot_loop + 4n, a.widget_spin + 2n, a.lib_inner + 1n, a.lib_spin + 1n];
      const expected = ['hot_loop', 'fleet::Widget::spin(long)', 'lib_inner', 'lib_spin'];
      const frames = s.symbolizeUser(r.pid, stack);
      expect(names(frames)).toEqual(expected);
      expect(frames.map((f) => f.kind)).toEqual(['native', 'native', 'native', 'native']);
      expect(frames.map((f) => f.address)).toEqual(stack);
      expect(frames[0]).toMatchObject({ mappingFile: exe, buildId: buildIdOf(exe) });
      expect(frames[2]).toMatchObject({ mappingFile: fx.lib, buildId: buildIdOf(fx.lib) });
      // fileAddress is in the ELF's own address space: symbol value + offset.
      expect(frames[0]!.fileAddress).toBe(symbolOf(exe, 'hot_loop').address + 4n);
      expect(frames[2]!.fileAddress).toBe(symbolOf(fx.lib, 'lib_inner').address + 1n);
      for (const f of frames) {
        expect(f.address >= f.mappingStart && f.address < f.mappingEnd).toBe(true);
      }

      // A return address right after a function's last byte belongs to that function when it is not the leaf.
      const hot = symbolOf(exe, 'hot_loop');
      const end = a.hot_loop + BigInt(hot.sizeBytes);
      expect(s.symbolizeUser(r.pid, [a.widget_spin, end])[1]!.functionName).toBe('hot_loop');
      expect(s.symbolizeUser(r.pid, [end])[0]!.functionName).not.toBe('hot_loop');

      await stop(r);
      expect(names(s.symbolizeUser(r.pid, stack))).toEqual(expected);

      // A symbolizer that never saw the process cannot snapshot it any more.
      const late = new Symbolizer();
      expect(late.observeProcess(r.pid)).toBe(false);
      expect(late.stats().processesVanished).toBe(1);
      const lost = late.symbolizeUser(r.pid, stack);
      expect(lost.every((f) => f.functionName === null && f.kind === 'unknown' && f.mappingFile === '')).toBe(true);
      expect(late.stats().unresolvedFrames).toBe(4);
    });
  }

  it('parses a binary mapped by several processes once, and only when one of its frames needs a name', async () => {
    const r1 = await start(fx.pie, [], /READY/);
    const r2 = await start(fx.pie, [], /READY/);
    const s = new Symbolizer();
    s.observeProcess(r1.pid);
    s.observeProcess(r2.pid);
    // Observing opens the mapped files but parses none: most libraries are never sampled.
    expect(s.stats().binariesParsed).toBe(0);
    expect(s.stats().processesObserved).toBe(2);
    const a1 = parsePrintedAddresses(r1.stdout);
    expect(s.symbolizeUser(r1.pid, [a1.hot_loop])[0]!.functionName).toBe('hot_loop');
    expect(s.stats().binariesParsed).toBe(1); // the executable, not its libraries
    const a2 = parsePrintedAddresses(r2.stdout);
    expect(s.symbolizeUser(r2.pid, [a2.hot_loop])[0]!.functionName).toBe('hot_loop');
    expect(s.stats().binariesParsed).toBe(1);
    await Promise.all([stop(r1), stop(r2)]);
  });

  it('keeps resolved frames within one bound for all processes, dropping the least recently observed first, counted', async () => {
    const r1 = await start(fx.pie, [], /READY/);
    const r2 = await start(fx.pie, [], /READY/);
    const s = new Symbolizer({ maxCachedFrames: 3 });
    s.observeProcess(r1.pid);
    s.observeProcess(r2.pid);
    const a1 = parsePrintedAddresses(r1.stdout);
    const a2 = parsePrintedAddresses(r2.stdout);
    // Leaf first, then return addresses (looked up at the byte before): two distinct cache keys each.
    expect(names(s.symbolizeUser(r1.pid, [a1.hot_loop, a1.widget_spin + 1n]))).toEqual(['hot_loop', 'fleet::Widget::spin(long)']);
    expect(s.stats()).toMatchObject({ cachedFrames: 2, frameCacheEvictions: 0 });
    // The same frames again come from the cache: nothing more is held.
    expect(names(s.symbolizeUser(r1.pid, [a1.hot_loop, a1.widget_spin + 1n]))).toEqual(['hot_loop', 'fleet::Widget::spin(long)']);
    expect(s.stats().cachedFrames).toBe(2);
    expect(names(s.symbolizeUser(r2.pid, [a2.hot_loop, a2.widget_spin + 1n]))).toEqual(['hot_loop', 'fleet::Widget::spin(long)']);
    // The third entry fit; the fourth dropped the least recently observed process's two (r1 was observed first).
    expect(s.stats()).toMatchObject({ cachedFrames: 2, frameCacheEvictions: 2 });
    // Dropped frames are resolved again when asked for.
    expect(names(s.symbolizeUser(r1.pid, [a1.hot_loop]))).toEqual(['hot_loop']);
    expect(s.stats().cachedFrames).toBeLessThanOrEqual(3);
    // A forgotten process takes its frames along (not an eviction).
    const before = s.stats();
    s.forgetProcess(r2.pid);
    expect(s.stats().cachedFrames).toBeLessThan(before.cachedFrames);
    expect(s.stats().frameCacheEvictions).toBe(before.frameCacheEvictions);
    await Promise.all([stop(r1), stop(r2)]);
  });

  it("still names a process's frames after it exited, from the files it held open", async () => {
    const r = await start(fx.pie, [], /READY/);
    const a = parsePrintedAddresses(r.stdout);
    const s = new Symbolizer();
    s.observeProcess(r.pid);
    await stop(r);
    expect(existsSync(`/proc/${r.pid}/maps`)).toBe(false);
    expect(s.symbolizeUser(r.pid, [a.hot_loop])[0]).toMatchObject({ functionName: 'hot_loop', mappingFile: fx.pie });
  });

  it('uses the debug file named by .gnu_debuglink for a stripped executable', async () => {
    const r = await start(fx.strippedDebuglink, [], /READY/);
    const a = parsePrintedAddresses(r.stdout);
    const s = new Symbolizer();
    s.observeProcess(r.pid);
    const [f, g] = s.symbolizeUser(r.pid, [a.hot_loop + 1n, a.widget_spin + 1n]);
    expect(f).toMatchObject({ functionName: 'hot_loop', kind: 'native', mappingFile: fx.strippedDebuglink });
    expect(g?.functionName).toBe('fleet::Widget::spin(long)');
    await stop(r);
  });

  it('uses the debug file found by build ID, and degrades to an unnamed native frame without it', async () => {
    const r = await start(fx.strippedBuildId, [], /READY/);
    const a = parsePrintedAddresses(r.stdout);
    const withRoot = new Symbolizer({ extraDebugRoots: [fx.buildIdRoot] });
    withRoot.observeProcess(r.pid);
    expect(withRoot.symbolizeUser(r.pid, [a.hot_loop + 1n])[0]!.functionName).toBe('hot_loop');
    const without = new Symbolizer();
    without.observeProcess(r.pid);
    const [f] = without.symbolizeUser(r.pid, [a.hot_loop + 1n]);
    expect(f).toMatchObject({ functionName: null, kind: 'native', mappingFile: fx.strippedBuildId, buildId: buildIdOf(fx.strippedBuildId) });
    expect(without.stats().unreadableBinaries).toBe(0);
    await stop(r);
  });

  it('resolves [vdso] frames from the vdso image', async () => {
    const vdso = readOwnVdso();
    expect(vdso).not.toBeNull();
    const sym = vdso!.symbols;
    const names = Array.from({ length: sym.length }, (_, i) => sym.nameAt(i));
    const idx = names.findIndex((n) => /clock_gettime|gettimeofday|time/.test(n));
    expect(idx).toBeGreaterThanOrEqual(0);
    const r = await start(fx.pie, [], /READY/);
    const maps = parseProcMaps(readFileSync(`/proc/${r.pid}/maps`, 'utf8')).mappings;
    const m = maps.find((x) => x.path === '[vdso]')!;
    const s = new Symbolizer();
    s.observeProcess(r.pid);
    const [f] = s.symbolizeUser(r.pid, [m.startAddress + sym.startAt(idx) + 2n]);
    expect(f).toMatchObject({ functionName: names[idx], kind: 'native', mappingFile: '[vdso]' });
    await stop(r);
  });
});

describe('symbolizing a Node.js process with --perf-basic-prof', () => {
  it('names JIT-compiled JavaScript functions from the perf map, with their source location', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fleetprof-jit-'));
    const script = join(dir, 'jit-workload.js');
    writeFileSync(
      script,
      `function hotLoop(n) { let s = 0; for (let i = 0; i < n; i++) s += Math.sqrt(i); return s; }
let t = 0;
for (let k = 0; k < 3000; k++) t += hotLoop(1000);
console.log('READY', t > 0);
setInterval(() => { t += hotLoop(1000); }, 5);
`,
    );
    const r = await start(process.execPath, ['--perf-basic-prof', script], /READY/);
    const mapPath = `/tmp/perf-${r.pid}.map`;
    try {
      const line = readFileSync(mapPath, 'utf8')
        .split('\n')
        .find((l) => / JS:\*hotLoop /.test(l) || / (LazyCompile|JS):[*^~+]?hotLoop /.test(l));
      expect(line).toBeDefined();
      const start16 = BigInt('0x' + line!.split(' ')[0]!);
      const s = new Symbolizer();
      expect(s.observeProcess(r.pid)).toBe(true);
      const [f] = s.symbolizeUser(r.pid, [start16 + 4n]);
      expect(f).toMatchObject({ functionName: 'hotLoop', kind: 'jit', mappingFile: '[jit]', buildId: null, address: start16 + 4n });
      expect(f!.sourceFile).toMatch(/jit-workload\.js:1/);
      expect(s.stats().jitFrames).toBe(1);

      await stop(r);
      // The perf map outlives the process.
      expect(s.symbolizeUser(r.pid, [start16 + 4n])[0]!.functionName).toBe('hotLoop');
    } finally {
      await stop(r);
      rmSync(mapPath, { force: true });
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('symbolizing with bad inputs (fake /proc)', () => {
  let proc: string;
  beforeAll(() => {
    proc = mkdtempSync(join(tmpdir(), 'fleetprof-fakeproc-'));
  });
  afterAll(() => rmSync(proc, { recursive: true, force: true }));

  function fakeProcess(pid: number, maps: string): void {
    mkdirSync(join(proc, String(pid), 'map_files'), { recursive: true });
    writeFileSync(join(proc, String(pid), 'maps'), maps);
    symlinkSync('/', join(proc, String(pid), 'root'));
  }

  it('keeps mapping and address for unreadable or non-ELF binaries, counts them, and skips garbage maps lines', () => {
    const notElf = join(proc, 'not-an-elf');
    writeFileSync(notElf, 'hello, I am text\n'.repeat(100));
    fakeProcess(
      4242,
      [
        `400000-401000 r-xp 00000000 fd:01 1 ${notElf}`,
        'this is garbage',
        `500000-501000 r-xp 00001000 fd:01 2 ${join(proc, 'missing.so')}`,
        '600000-601000 rwxp 00000000 00:00 0 ',
      ].join('\n'),
    );
    const s = new Symbolizer({ procRoot: proc });
    expect(s.observeProcess(4242)).toBe(true);
    const frames = s.symbolizeUser(4242, [0x400010n, 0x500020n, 0x600000n, 0x900000n]);
    expect(frames[0]).toMatchObject({ functionName: null, kind: 'native', mappingFile: notElf, mappingStart: 0x400000n, mappingEnd: 0x401000n, fileAddress: null });
    expect(frames[1]).toMatchObject({ functionName: null, kind: 'native', mappingFile: join(proc, 'missing.so'), mappingFileOffset: 0x1000n });
    expect(frames[2]).toMatchObject({ functionName: null, kind: 'unknown', mappingFile: '' });
    expect(frames[3]).toMatchObject({ functionName: null, kind: 'unknown', mappingFile: '', mappingStart: 0n });
    const st = s.stats();
    expect(st.unreadableBinaries).toBe(2);
    expect(st.binaryParseErrors).toBe(1);
    expect(st.malformedMapsLines).toBe(1);
    expect(st.unresolvedFrames).toBe(4);
  });

  it('ignores a perf map left in /tmp by an earlier process with the same pid, and counts it', () => {
    // A pid beyond any pid_max, so /tmp/perf-<pid>.map is this test's alone.
    const pid = 4_999_001;
    const mapPath = `/tmp/perf-${pid}.map`;
    const bootSeconds = Math.floor(Date.now() / 1000) - 3600;
    writeFileSync(join(proc, 'stat'), `cpu  1 2 3 4\nbtime ${bootSeconds}\nprocesses 10\n`);
    fakeProcess(pid, '7f0000000000-7f0000100000 r-xp 00000000 00:00 0 \n');
    // Started 30 minutes after boot (starttime in USER_HZ ticks), comm with a space and a parenthesis.
    const startTicks = 30 * 60 * 100;
    writeFileSync(join(proc, String(pid), 'stat'), `${pid} (we (ird) S 1 ${pid} ${pid} 0 -1 4194304 ${'0 '.repeat(12)}${startTicks} 0 0\n`);
    writeFileSync(mapPath, '7f0000001000 100 JS:*oldProgramFunction /old/program.js:1\n');
    try {
      // Last written 10 minutes after boot: 20 minutes before this process started.
      const staleSeconds = bootSeconds + 600;
      utimesSync(mapPath, staleSeconds, staleSeconds);
      const stale = new Symbolizer({ procRoot: proc });
      expect(stale.observeProcess(pid)).toBe(true);
      expect(stale.symbolizeUser(pid, [0x7f0000001010n])[0]!.functionName).toBeNull();
      expect(stale.stats()).toMatchObject({ stalePerfMaps: 1, perfMapReaders: 0 });

      // Written after the process started: its own, and used.
      const freshSeconds = bootSeconds + 30 * 60 + 5;
      utimesSync(mapPath, freshSeconds, freshSeconds);
      const fresh = new Symbolizer({ procRoot: proc });
      expect(fresh.observeProcess(pid)).toBe(true);
      expect(fresh.symbolizeUser(pid, [0x7f0000001010n])[0]).toMatchObject({ functionName: 'oldProgramFunction', kind: 'jit' });
      expect(fresh.stats()).toMatchObject({ stalePerfMaps: 0, perfMapReaders: 1 });
    } finally {
      rmSync(mapPath, { force: true });
    }
  });

  it('reads a deleted binary through map_files', () => {
    const elf = ElfReader.open(fx.pie);
    const text = elf.loadSegments.find((p) => (p.flags & PF_X) !== 0)!;
    elf.close();
    const bias = 0x5555_0000_0000n;
    const start = bias + (text.vaddr & ~0xfffn);
    const end = start + BigInt((text.memSizeBytes + 0xfff) & ~0xfff) + 0x1000n;
    const off = BigInt(text.offset) & ~0xfffn;
    fakeProcess(4343, `${start.toString(16)}-${end.toString(16)} r-xp ${off.toString(16).padStart(8, '0')} fd:01 999 /gone/pie (deleted)\n`);
    symlinkSync(fx.pie, join(proc, '4343', 'map_files', `${start.toString(16)}-${end.toString(16)}`));
    const s = new Symbolizer({ procRoot: proc });
    s.observeProcess(4343);
    const hot = symbolOf(fx.pie, 'hot_loop');
    const [f] = s.symbolizeUser(4343, [bias + hot.address + 3n]);
    expect(f).toMatchObject({ functionName: 'hot_loop', mappingFile: '/gone/pie', fileAddress: hot.address + 3n, buildId: buildIdOf(fx.pie) });
  });

  it('re-reads kallsyms when a kernel address misses (a module or BPF program loaded since), at most once per interval', () => {
    const kproc = mkdtempSync(join(tmpdir(), 'fleetprof-kallsyms-'));
    const core = 'ffffffff81000000 T _stext\nffffffff81001000 T do_sys_openat2\nffffffff81002000 T _etext\n';
    writeFileSync(join(kproc, 'kallsyms'), core);
    const bpfAddress = 0xffffffffc0201010n;
    const rarely = new Symbolizer({ procRoot: kproc, sysRoot: kproc, kallsymsRefreshIntervalMs: 3_600_000 });
    const eager = new Symbolizer({ procRoot: kproc, sysRoot: kproc, kallsymsRefreshIntervalMs: 0 });
    expect(rarely.symbolizeKernel([0xffffffff81001004n])[0]!.functionName).toBe('do_sys_openat2');
    expect(eager.symbolizeKernel([bpfAddress])[0]!.functionName).toBeNull();
    writeFileSync(join(kproc, 'kallsyms'), core + 'ffffffffc0201000 t bpf_prog_6deef7357e7b4530_sample_stack\t[bpf]\n');
    expect(rarely.symbolizeKernel([bpfAddress])[0]!.functionName).toBeNull();
    expect(eager.symbolizeKernel([bpfAddress])[0]).toMatchObject({ functionName: 'bpf_prog_6deef7357e7b4530_sample_stack', mappingFile: '[kernel.kallsyms]/bpf' });
    rmSync(kproc, { recursive: true, force: true });
  });

  it('reports kernel frames as unresolved when kallsyms addresses are hidden', () => {
    const kproc = mkdtempSync(join(tmpdir(), 'fleetprof-kptr-'));
    writeFileSync(join(kproc, 'kallsyms'), '0000000000000000 T _stext\n0000000000000000 T do_sys_openat2\n');
    const s = new Symbolizer({ procRoot: kproc, sysRoot: kproc });
    const [f] = s.symbolizeKernel([0xffffffff81234567n]);
    expect(f).toMatchObject({ functionName: null, kind: 'kernel', mappingFile: '[kernel.kallsyms]' });
    expect(s.stats().kernelAddressesHidden).toBe(true);
    rmSync(kproc, { recursive: true, force: true });
  });
});
