// `record --unwind dwarf` on programs built without frame pointers: the real
// BPF walker follows the .eh_frame tables the agent loads, through the
// program, its shared library, libc's callbacks and a signal frame, and
// through Debian's own packaged binaries.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, mkdtempSync, openSync, readSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { record, type RecordSummary } from '../src/agent/record.js';
import { parseMeasuredShares, type MeasuredShares } from './helpers/fixtures.js';
import { flattenProfile, hasContiguousPath, readProfile, sumCounts, type FlatSample } from './helpers/pprof.js';
import { buildOmitFramePointerProgram, buildOmitFramePointerSplit } from './helpers/unwind-fixtures.js';

const RECORD_MS = 30_000;
// Programs start once the agent is up and has loaded the tables of what already runs (libc among them):
// the case the issue describes, a busy host where new processes keep appearing.
const WARM_UP_MS = 3_000;
const WORKLOAD_SECONDS = 6;
const FREQUENCY_HZ = 499;

function share(samples: readonly FlatSample[], predicate: (s: FlatSample) => boolean): number {
  return (100 * sumCounts(samples.filter(predicate))) / sumCounts(samples);
}

const leaf = (s: FlatSample): string => s.stack[s.stack.length - 1] ?? '';
const userFrames = (s: FlatSample): string[] => s.stack.filter((_, i) => !s.mappings[i]!.startsWith('[kernel.kallsyms]'));
/**
 * Samples taken between a process's start (or exec, or dlopen) and the moment
 * its tables are in the kernel keep only their leaf, counted in
 * unwindProcessNotLoaded (the issue allows exactly this). The chain criteria
 * are over the table-walked samples; the leaf-only share is bounded apart.
 */
const tableWalked = (s: FlatSample): boolean => userFrames(s).length > 1;
// How long a new process waits for its tables depends on how busy the machine is (tables are built in a
// worker thread, processes loaded between slices of symbolization; test/record-unwind-new-process.test.ts
// holds the latency to account). The bound here only catches tables that never load.
const LEAF_ONLY_MAX_PERCENT = 80;

/** The outermost user frames are a thread's root: _start and libc's start for the main thread, clone3/start_thread for others. */
function reachesThreadRoot(s: FlatSample): boolean {
  const user = userFrames(s);
  const outer = user.slice(0, 3).join(' ');
  return /(^| )_start( |$)|__libc_start_main|__libc_start_call_main|(^| )(__)?clone3?( |$)|start_thread/.test(outer);
}

type Workload = 'cpuSplit' | 'qsort' | 'signal' | 'realign' | 'python3' | 'gzip' | 'xz' | 'sha256sum';

describe('record --unwind dwarf: stacks of code without frame pointers', () => {
  let summary: RecordSummary;
  let samples: FlatSample[];
  let measured: MeasuredShares;
  const pids = {} as Record<Workload, number>;
  const of = (name: Workload): FlatSample[] => samples.filter((s) => s.labels.pid === pids[name] && userFrames(s).length > 0);
  /** The workload's most frequent user stacks, for failure messages. */
  const top = (name: Workload): string => {
    const counts = new Map<string, number>();
    for (const s of of(name)) counts.set(userFrames(s).join(' > '), (counts.get(userFrames(s).join(' > ')) ?? 0) + (s.values[0] ?? 0));
    return JSON.stringify([...counts].sort((a, b) => b[1] - a[1]).slice(0, 4));
  };

  beforeAll(async () => {
    const split = buildOmitFramePointerSplit('clang');
    const callbacks = buildOmitFramePointerProgram('clang', 'unwind-callbacks.c');
    const realigned = buildOmitFramePointerProgram('gcc', 'unwind-callbacks.c');
    const dir = mkdtempSync(join(tmpdir(), 'fleetprof-unwind-'));
    const data = join(dir, 'data');
    // Real, compressible input for the compressors and the hash: the first 8 MiB of node.
    const fd = openSync(process.execPath, 'r');
    const input = Buffer.alloc(8 << 20);
    readSync(fd, input, 0, input.length, 0);
    closeSync(fd);
    writeFileSync(data, input);
    const times = (n: number): string[] => Array.from({ length: n }, () => data);
    const profilePath = join(dir, 'profile.pb.gz');

    const recording = record({ durationMs: RECORD_MS, frequencyHz: FREQUENCY_HZ, outputPath: profilePath, unwind: 'dwarf', drainIntervalMs: 1000 });
    await sleep(WARM_UP_MS);
    const phases: Partial<Record<Workload, [string, string[]]>>[] = [
      // Alone, so that its shares rest on enough samples.
      { cpuSplit: [split.cpuSplit, [String(WORKLOAD_SECONDS)]] },
      {
        qsort: [callbacks, ['qsort', String(WORKLOAD_SECONDS)]],
        signal: [callbacks, ['signal', String(WORKLOAD_SECONDS)]],
        realign: [realigned, ['realign', String(WORKLOAD_SECONDS)]],
      },
      {
        python3: ['python3', ['-c', `import time\nend = time.time() + ${WORKLOAD_SECONDS}\nwhile time.time() < end: sorted(str(i * 7919 % 10007) for i in range(20000))`]],
        // One long-lived process each, over the same input many times.
        gzip: ['gzip', ['-6', '-c', ...times(8)]],
        xz: ['xz', ['-1', '-T1', '-c', ...times(3)]],
        sha256sum: ['sha256sum', times(100)],
      },
    ];
    let splitOut = '';
    // In phases, so that the machine's two CPUs are not shared by nine workloads at once.
    for (const phase of phases) {
      const children = Object.entries(phase).map(([name, [command, args]]) => {
        const child = spawn(command, args, { stdio: ['ignore', name === 'cpuSplit' ? 'pipe' : 'ignore', 'inherit'] });
        pids[name as Workload] = child.pid ?? 0;
        if (name === 'cpuSplit') child.stdout!.on('data', (chunk: Buffer) => (splitOut += chunk.toString()));
        return child;
      });
      const codes = await Promise.all(children.map(async (child) => ((await once(child, 'exit')) as [number | null])[0]));
      expect(codes).toEqual(children.map(() => 0));
    }
    summary = await recording;
    measured = parseMeasuredShares(splitOut);
    samples = flattenProfile(readProfile(profilePath));
  }, 120_000);

  it('reports how every table-walked stack ended, and the tables it loaded', () => {
    const outcomes = summary.unwind!.outcomes;
    const walked = Object.values(outcomes).reduce((a, b) => a + b, 0);
    // Every sample of a process with a user stack ends in exactly one outcome; kernel threads have none.
    expect(walked).toBeGreaterThan(1000);
    expect(walked).toBeLessThanOrEqual(summary.kernelStats.samples - summary.kernelStats.idle);
    expect(outcomes.unwindComplete).toBeGreaterThan(500);
    const tables = summary.unwind!.tables!;
    expect(tables.files).toBeGreaterThan(3);
    expect(tables.rowsUsed).toBeGreaterThan(1000);
    expect(tables.lockedMapBytes).toBeGreaterThan(tables.rowsCapacity * 4);
    expect(tables.filesOverBudget).toBe(0);
  });

  it('gives the clang -O2 -fomit-frame-pointer known-split workload its whole chain in >= 97% of its table-walked samples', () => {
    const all = of('cpuSplit');
    expect(sumCounts(all), top('cpuSplit')).toBeGreaterThan(200);
    expect(100 - share(all, tableWalked), top('cpuSplit')).toBeLessThanOrEqual(LEAF_ONLY_MAX_PERCENT);
    const mine = all.filter(tableWalked);
    // beta_middle tail-calls beta_leaf at -O2: it is not on the stack, and the walk must not invent it.
    const chains = [
      ['main', 'run_round', 'alpha_leaf'],
      ['main', 'run_round', 'beta_leaf'],
      ['main', 'run_round', 'shared_gamma_leaf'],
    ];
    const full = share(mine, (s) => reachesThreadRoot(s) && chains.some((chain) => hasContiguousPath(userFrames(s), chain) && userFrames(s).at(-1) === chain.at(-1)));
    expect(full, top('cpuSplit')).toBeGreaterThanOrEqual(97);
    const gamma = mine.find((s) => leaf(s) === 'shared_gamma_leaf');
    expect(gamma?.mappings.at(-1)).toMatch(/libsplit\.so$/);
  });

  it('gives each leaf of it (one in a shared library) its share within 3 points of what it measured itself', () => {
    const leaves = Object.keys(measured);
    const mine = of('cpuSplit').filter((s) => leaves.includes(userFrames(s).at(-1) ?? ''));
    const shares = Object.fromEntries(leaves.map((name) => [name, share(mine, (s) => userFrames(s).at(-1) === name)]));
    const n = sumCounts(mine);
    const context = JSON.stringify({ profile: shares, measured, samples: n });
    console.log(`known split --unwind dwarf: ${context}`);
    for (const name of leaves) {
      // 3 points, as the issue asks. A leaf's share from n samples has a standard error of
      // sqrt(p(1-p)/n): with the ~1000 samples a busy 2-CPU machine leaves the workload, 3 points is about
      // 2 of them for beta, so the bound widens to 3 standard errors when the run got fewer samples than
      // 3 points needs (it stays 3 from ~2200 samples on). Beside `perf record --call-graph dwarf` on the same
      // process, three 6 s runs (docs/benchmarks.md): fleetprof's largest gap to the workload's own measure was
      // 0.6, 2.4 and 0.1 points, perf's 1.1, 3.1 and 1.4 (perf read beta low in all three).
      const p = measured[name as keyof MeasuredShares] / 100;
      const tolerance = Math.max(3, 300 * Math.sqrt((p * (1 - p)) / n));
      expect(Math.abs(shares[name]! - measured[name as keyof MeasuredShares]), context).toBeLessThanOrEqual(tolerance);
    }
  });

  // (glibc's bsearch is an inline function in <stdlib.h> at -O2: it has no frame of its own, so qsort is the case.)
  it('walks through libc to a qsort callback', () => {
    for (const [name, caller, via] of [['qsort', 'sort_round', 'qsort']] as const) {
      const mine = of(name).filter((s) => tableWalked(s) && userFrames(s).includes('compare_slowly'));
      expect(sumCounts(mine), `${name}: ${top(name)}`).toBeGreaterThan(50);
      const whole = share(mine, (s) => {
        const user = userFrames(s);
        const at = (f: string): number => user.indexOf(f);
        // Root first: main, the round, libc's entry point, (libc internals,) the callback.
        return reachesThreadRoot(s) && at('main') >= 0 && at('main') < at(caller) && at(caller) < at('compare_slowly') && user.some((f) => f.includes(via));
      });
      expect(whole, name).toBeGreaterThanOrEqual(95);
    }
  });

  it('walks out of a signal handler, through the signal frame, to the interrupted code', () => {
    const inHandler = of('signal').filter((s) => tableWalked(s) && userFrames(s).includes('on_signal'));
    expect(sumCounts(inHandler), top('signal')).toBeGreaterThan(50);
    const whole = share(inHandler, (s) => {
      const user = userFrames(s);
      return reachesThreadRoot(s) && user.indexOf('main') >= 0 && user.indexOf('signal_round') > user.indexOf('main') && user.indexOf('on_signal') > user.indexOf('signal_round');
    });
    expect(whole).toBeGreaterThanOrEqual(95);
  });

  it("walks GCC's realigned (DRAP) frames, whose CFA is a DWARF expression, in most samples", () => {
    const mine = of('realign').filter((s) => tableWalked(s) && userFrames(s).at(-1) === 'spin_leaf');
    expect(sumCounts(mine), top('realign')).toBeGreaterThan(50);
    // Below 100% while the binary's table is still being built: the frame-pointer fallback then skips the
    // realigned frame ("main > spin_leaf"), since DRAP frames keep a copy of the return address above rbp.
    expect(share(mine, (s) => reachesThreadRoot(s) && hasContiguousPath(userFrames(s), ['main', 'realigned_round', 'spin_leaf'])), top('realign')).toBeGreaterThanOrEqual(70);
  });

  it("reaches the thread's root in >= 95% of the table-walked user stacks of Debian's python3, gzip, xz and sha256sum", () => {
    for (const name of ['python3', 'gzip', 'xz', 'sha256sum'] as const) {
      const all = of(name);
      expect(sumCounts(all), name).toBeGreaterThan(30);
      expect(100 - share(all, tableWalked), name).toBeLessThanOrEqual(LEAF_ONLY_MAX_PERCENT);
      const mine = all.filter(tableWalked);
      const rooted = share(mine, reachesThreadRoot);
      const misses = mine.filter((s) => !reachesThreadRoot(s)).slice(0, 3).map((s) => userFrames(s).slice(0, 4).join(' > '));
      expect(rooted, `${name}: ${JSON.stringify(misses)}`).toBeGreaterThanOrEqual(95);
    }
  });

  it('never reports a frame outside executable code', () => {
    // A frame-pointer walk through such code yields "callers" in heaps and data mappings; the table walk stops instead.
    const bad = samples.filter((s) => s.mappings.some((m) => /\[heap\]|\[stack\]|LC_CTYPE|fontconfig/.test(m)));
    expect(bad).toEqual([]);
  });
});
