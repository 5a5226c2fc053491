// A/B of BPF run time per sample for builds of the unwinding program, run at
// the same time so they share the machine's noise: each variant is a whole
// `fleetprof record --unwind dwarf` (FLEETPROF_BPF_OBJECT picks the object),
// and bench/bpf/walk-only.bpf.o is attached alongside as the reference. On a
// shared, loaded machine only the ratios to the reference mean much.
// Usage: node dist/bench/unwind-bpf-ab.js [--duration 10] [--frequency 99] [--rounds 3] [--warmup 3] [--no-load] [fp=][ROOT:]OBJECT.bpf.o ...
// (fp=: a frame-pointer build, run without --unwind dwarf)
// (ROOT: another checkout whose dist/src/cli.js runs that object, for a build whose user space differs too;
// an object from before the walker asked for deferred tables (FP_PROCESS_TABLE_WANTED) needs its own checkout,
// or this user space leaves every library but the programs' own binaries unbuilt).
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BpfObject, loadAddon } from '../src/native/addon.js';
import { onlineCpus } from '../src/sampler/cpus.js';
import { startBusyMachine } from './busy-machine.js';
import { packageRoot } from '../src/util/package-root.js';

const { values: args, positionals: objects } = parseArgs({
  allowPositionals: true,
  options: {
    duration: { type: 'string', default: '10' },
    frequency: { type: 'string', default: '99' },
    rounds: { type: 'string', default: '3' },
    'no-load': { type: 'boolean', default: false },
    // Seconds of each run left out of the figures: the variants start one after another and load their
    // tables, and samples taken before a process is loaded keep only the leaf, so a whole-run average
    // mixes cheap leaf-only samples in differing shares. 0: the whole run (the recorders' own figures).
    warmup: { type: 'string', default: '3' },
    // Extra arguments for the variants run by this checkout (e.g. "--unwind-cache-mb 0" to compare cold with an older build).
    'this-args': { type: 'string', default: '' },
  },
});
const root = packageRoot();
const work = mkdtempSync(join(tmpdir(), 'fleetprof-ab-'));

interface StatsJson {
  bpfRunTime?: { runTimeNs: number; runCount: number };
  unwind?: { outcomes: Record<string, number> };
}

interface ProgramStats {
  runTimeNs: number;
  runCount: number;
}

/** The run time of every loaded sample_stack program, by program id (bpftool; the stats are on meanwhile). */
function sampleStackPrograms(): Map<number, ProgramStats> {
  const programs = JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'show'], { encoding: 'utf8', maxBuffer: 64 << 20 })) as { id: number; name?: string; run_time_ns?: number; run_cnt?: number }[];
  const found = new Map<number, ProgramStats>();
  for (const p of programs) if (p.name === 'sample_stack') found.set(p.id, { runTimeNs: p.run_time_ns ?? 0, runCount: p.run_cnt ?? 0 });
  return found;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface Variant {
  label: string;
  done: Promise<StatsJson>;
  programId: number | undefined;
}

/** Starts one variant and waits until its program is attached (a new sample_stack program appears), so the next starts after it. */
async function startVariant(variantArg: string, index: number, durationS: number): Promise<Variant> {
  // fp=OBJECT: a frame-pointer build (profile.bpf.o), run without --unwind dwarf, to compare the part common to both programs.
  const framePointers = variantArg.startsWith('fp=');
  const variant = framePointers ? variantArg.slice(3) : variantArg;
  const [checkout, object] = variant.includes(':') ? (variant.split(':') as [string, string]) : [root, variant];
  const statsPath = join(work, `stats-${index}.json`);
  const before = new Set(sampleStackPrograms().keys());
  const child = spawn(
    process.execPath,
    [join(checkout, 'dist', 'src', 'cli.js'), 'record', '--duration', String(durationS), '--frequency', args.frequency, '--output', join(work, `out-${index}.pb.gz`), '--stats-json', statsPath, '--bpf-stats', ...(framePointers ? [] : ['--unwind', 'dwarf']), ...(checkout === root ? args['this-args'].split(' ').filter((a) => a !== '') : [])],
    { env: { ...process.env, FLEETPROF_BPF_OBJECT: object }, stdio: ['ignore', 'ignore', 'ignore'] },
  );
  const done = once(child, 'exit').then(([code]) => {
    if (code !== 0) throw new Error(`record with ${object} exited with ${String(code)}`);
    return JSON.parse(readFileSync(statsPath, 'utf8')) as StatsJson;
  });
  done.catch(() => undefined); // awaited by the caller; this only keeps an early failure from being unhandled meanwhile
  let programId: number | undefined;
  for (let waitedMs = 0; programId === undefined && waitedMs < 30_000 && child.exitCode === null; waitedMs += 100) {
    await sleep(100);
    programId = [...sampleStackPrograms().keys()].find((id) => !before.has(id));
  }
  return { label: variantArg.split('/').pop()!, done, programId };
}

async function main(): Promise<void> {
  execFileSync('make', ['-s', '-C', join(root, 'bench', 'bpf')]);
  const load = args['no-load'] ? [] : startBusyMachine({ processChurn: false });
  const durationS = Number(args.duration);
  const warmupS = Number(args.warmup);
  try {
    for (let round = 0; round < Number(args.rounds); round++) {
      const statsFd = loadAddon().enableBpfStats();
      const reference = new BpfObject(join(root, 'bench', 'bpf', 'build', 'walk-only.bpf.o'), {});
      const loadBefore = loadavg()[0]!;
      let results: StatsJson[];
      let variants: Variant[] = [];
      let ref: ProgramStats;
      const window: { reference: ProgramStats; programs: Map<number, ProgramStats> }[] = [];
      try {
        for (const cpu of onlineCpus()) reference.attachPerfEvent('walk_only', cpu, Number(args.frequency));
        if (warmupS > 0) {
          // Each recorder runs long enough for the others to start, its warm-up and the measured window.
          const runS = durationS + warmupS + 5 * objects.length;
          for (const [i, object] of objects.entries()) variants.push(await startVariant(object, i, runS));
          await sleep(warmupS * 1000);
          window.push({ reference: reference.programStats('walk_only'), programs: sampleStackPrograms() });
          await sleep(durationS * 1000);
          window.push({ reference: reference.programStats('walk_only'), programs: sampleStackPrograms() });
        } else {
          variants = await Promise.all(objects.map((object, i) => startVariant(object, i, durationS)));
        }
        results = await Promise.all(variants.map((v) => v.done));
        ref = reference.programStats('walk_only');
      } finally {
        reference.destroy();
        loadAddon().closeFd(statsFd);
      }
      const delta = (a: ProgramStats | undefined, b: ProgramStats | undefined): ProgramStats => ({ runTimeNs: (b?.runTimeNs ?? NaN) - (a?.runTimeNs ?? NaN), runCount: (b?.runCount ?? NaN) - (a?.runCount ?? NaN) });
      const refWindow = window.length === 2 ? delta(window[0]!.reference, window[1]!.reference) : ref;
      const refNs = refWindow.runTimeNs / Math.max(1, refWindow.runCount);
      const parts = results.map((r, i) => {
        const id = variants[i]!.programId;
        const measured = window.length === 2 && id !== undefined ? delta(window[0]!.programs.get(id), window[1]!.programs.get(id)) : r.bpfRunTime;
        const ns = measured ? measured.runTimeNs / Math.max(1, measured.runCount) : NaN;
        const o = r.unwind?.outcomes ?? {};
        const walked = Object.values(o).reduce((a, b) => a + b, 0);
        return `${variants[i]!.label}: ${ns.toFixed(0)} ns (${(ns / refNs).toFixed(2)}x), complete ${((100 * (o.unwindComplete ?? 0)) / Math.max(1, walked)).toFixed(0)}%`;
      });
      const span = window.length === 2 ? `${durationS} s after ${warmupS} s of warm-up` : 'whole runs';
      process.stdout.write(`round ${round + 1} load ${loadBefore.toFixed(1)}-${loadavg()[0]!.toFixed(1)} (${span}): reference ${refNs.toFixed(0)} ns; ${parts.join('; ')}\n`);
    }
  } finally {
    for (const child of load) child.kill('SIGKILL');
  }
}

await main();
