// A/B of BPF run time per sample for builds of the unwinding program, run at
// the same time so they share the machine's noise: each variant is a whole
// `fleetprof record --unwind dwarf` (FLEETPROF_BPF_OBJECT picks the object),
// and bench/bpf/walk-only.bpf.o is attached alongside as the reference. On a
// shared, loaded machine only the ratios to the reference mean much.
// Usage: node dist/bench/unwind-bpf-ab.js [--duration 10] [--frequency 99] [--rounds 3] [--no-load] [ROOT:]OBJECT.bpf.o ...
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

async function recordWith(variant: string, index: number): Promise<StatsJson> {
  const [checkout, object] = variant.includes(':') ? (variant.split(':') as [string, string]) : [root, variant];
  const statsPath = join(work, `stats-${index}.json`);
  const child = spawn(
    process.execPath,
    [join(checkout, 'dist', 'src', 'cli.js'), 'record', '--duration', args.duration, '--frequency', args.frequency, '--output', join(work, `out-${index}.pb.gz`), '--stats-json', statsPath, '--bpf-stats', '--unwind', 'dwarf', ...(checkout === root ? args['this-args'].split(' ').filter((a) => a !== '') : [])],
    { env: { ...process.env, FLEETPROF_BPF_OBJECT: object }, stdio: ['ignore', 'ignore', 'ignore'] },
  );
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`record with ${object} exited with ${code}`);
  return JSON.parse(readFileSync(statsPath, 'utf8')) as StatsJson;
}


async function main(): Promise<void> {
  execFileSync('make', ['-s', '-C', join(root, 'bench', 'bpf')]);
  const load = args['no-load'] ? [] : startBusyMachine({ processChurn: false });
  try {
    for (let round = 0; round < Number(args.rounds); round++) {
      const statsFd = loadAddon().enableBpfStats();
      const reference = new BpfObject(join(root, 'bench', 'bpf', 'build', 'walk-only.bpf.o'), {});
      const loadBefore = loadavg()[0]!;
      let results: StatsJson[];
      let ref: { runTimeNs: number; runCount: number };
      try {
        for (const cpu of onlineCpus()) reference.attachPerfEvent('walk_only', cpu, Number(args.frequency));
        results = await Promise.all(objects.map((object, i) => recordWith(object, i)));
        ref = reference.programStats('walk_only');
      } finally {
        reference.destroy();
        loadAddon().closeFd(statsFd);
      }
      const refNs = ref.runTimeNs / Math.max(1, ref.runCount);
      const parts = results.map((r, i) => {
        const ns = r.bpfRunTime ? r.bpfRunTime.runTimeNs / Math.max(1, r.bpfRunTime.runCount) : NaN;
        const o = r.unwind?.outcomes ?? {};
        const walked = Object.values(o).reduce((a, b) => a + b, 0);
        return `${objects[i]!.split('/').pop()}: ${ns.toFixed(0)} ns (${(ns / refNs).toFixed(2)}x), complete ${((100 * (o.unwindComplete ?? 0)) / Math.max(1, walked)).toFixed(0)}%`;
      });
      process.stdout.write(`round ${round + 1} load ${loadBefore.toFixed(1)}-${loadavg()[0]!.toFixed(1)}: reference ${refNs.toFixed(0)} ns; ${parts.join('; ')}\n`);
    }
  } finally {
    for (const child of load) child.kill('SIGKILL');
  }
}

await main();
