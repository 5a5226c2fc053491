// Benchmark for `fleetprof record` against its peers on a busy machine, run
// side by side in one invocation so they share the same noise:
//   fleetprof record -F hz           (start, sampling, symbolization, pprof)
//   fleetprof record -F hz --unwind dwarf (the same, walking .eh_frame tables in BPF), twice:
//     cold (an empty table cache: every table built) and warm (the tables the cold run cached)
//   perf record -F hz -a -g, then perf script (the same job: symbolized stacks)
//   perf record -F hz -a --call-graph dwarf, then perf script (stack copies unwound in user space)
//   BCC profile-bpfcc -F hz -f       (folded, symbolized stacks)
// Each tool runs under /usr/bin/time for its CPU time and peak RSS. A fourth
// run loads bench/bpf/walk-only.bpf.c, which only walks the two stacks, so the
// BPF time per sample splits into the kernel's stack walks and our own logic.
// Usage: node dist/bench/record-overhead.js [--duration 20] [--frequencies 19,99] [--rounds 2] [--no-bcc] [--write docs/benchmarks.md [--section name]]
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { BpfObject, loadAddon } from '../src/native/addon.js';
import { onlineCpus } from '../src/sampler/cpus.js';
import { startBusyMachine } from './busy-machine.js';
import { packageRoot } from '../src/util/package-root.js';

interface Measurement {
  tool: string;
  frequencyHz: number;
  cpuSeconds: number;
  peakRssMb: number;
  samples?: number;
  bpfNsPerSample?: number;
  /** --unwind dwarf: what the unwind maps lock, and the time to build every table (cold host). */
  lockedMapMb?: number;
  tableBuildMs?: number;
}

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '20' },
    frequencies: { type: 'string', default: '19,99' },
    rounds: { type: 'string', default: '2' },
    write: { type: 'string' },
    // Which marked section of the --write file the table replaces (<!-- NAME:begin --> ... <!-- NAME:end -->).
    section: { type: 'string', default: 'record-overhead' },
    // Leave BCC out (its compile against kernel headers is slow, and it walks frame pointers like `perf -g`).
    'no-bcc': { type: 'boolean', default: false },
  },
});
const durationSeconds = Number(args.duration);
const frequencies = args.frequencies.split(',').map(Number);
const rounds = Number(args.rounds);
const work = mkdtempSync(join(tmpdir(), 'fleetprof-bench-'));
const root = packageRoot();

/** Runs a command under GNU time; returns user+system CPU seconds and peak RSS. */
function timed(command: string, argv: string[], env: NodeJS.ProcessEnv = process.env): { cpuSeconds: number; peakRssMb: number; stdout: string } {
  const timeFile = join(work, 'time.txt');
  const stdout = execFileSync('/usr/bin/time', ['-o', timeFile, '-f', '%U %S %M', command, ...argv], {
    env,
    encoding: 'utf8',
    maxBuffer: 1 << 30,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const [user, system, rssKb] = readFileSync(timeFile, 'utf8').trim().split('\n').pop()!.split(' ').map(Number) as [number, number, number];
  return { cpuSeconds: user + system, peakRssMb: rssKb / 1024, stdout };
}

/** timed(), without blocking the event loop (so BCC's counters can be polled meanwhile). */
async function timedAsync(command: string, argv: string[], env: NodeJS.ProcessEnv): Promise<{ cpuSeconds: number; peakRssMb: number; stdout: string }> {
  const timeFile = join(work, 'time-async.txt');
  const child = spawn('/usr/bin/time', ['-o', timeFile, '-f', '%U %S %M', command, ...argv], { env, stdio: ['ignore', 'pipe', 'ignore'] });
  const chunks: Buffer[] = [];
  child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`${command} exited with ${code}`);
  const [user, system, rssKb] = readFileSync(timeFile, 'utf8').trim().split('\n').pop()!.split(' ').map(Number) as [number, number, number];
  return { cpuSeconds: user + system, peakRssMb: rssKb / 1024, stdout: Buffer.concat(chunks).toString('utf8') };
}

interface UnwindStatsJson {
  unwind?: {
    outcomes: Record<string, number>;
    tables?: { lockedMapBytes: number; buildMs: number; tableBytes: number; files: number; cache?: { hits: number; misses: number; corrupt: number } };
  };
}

function runFleetprof(frequencyHz: number): Measurement {
  return runFleetprofWith(frequencyHz, 'fp');
}

/** The table cache the last cold --unwind dwarf run filled, for the warm run after it. */
let coldCacheDir: string | undefined;

/** A host the agent has never seen: an empty table cache, so every table is built (and cached). */
function runFleetprofDwarfCold(frequencyHz: number): Measurement {
  coldCacheDir = mkdtempSync(join(work, 'unwind-cache-'));
  return runFleetprofWith(frequencyHz, 'dwarf', coldCacheDir, 'fleetprof record --unwind dwarf (cold: no cached tables)');
}

/** The same host right after: the tables the cold run built are read from its cache (files built since are built). */
function runFleetprofDwarfWarm(frequencyHz: number): Measurement {
  return runFleetprofWith(frequencyHz, 'dwarf', coldCacheDir ?? mkdtempSync(join(work, 'unwind-cache-')), 'fleetprof record --unwind dwarf (warm: tables cached)');
}

function runFleetprofWith(frequencyHz: number, unwind: 'fp' | 'dwarf', cacheDir?: string, label?: string): Measurement {
  const output = join(work, 'fleetprof.pb.gz');
  const statsPath = join(work, 'fleetprof-stats.json');
  const run = timed(process.execPath, [
    join(root, 'dist', 'src', 'cli.js'),
    'record',
    '--duration',
    String(durationSeconds),
    '--frequency',
    String(frequencyHz),
    '--output',
    output,
    '--stats-json',
    statsPath,
    '--bpf-stats',
    '--unwind',
    unwind,
    ...(cacheDir === undefined ? [] : ['--unwind-cache-dir', cacheDir]),
  ]);
  const stats = JSON.parse(readFileSync(statsPath, 'utf8')) as { samples: number; bpfRunTime?: { runTimeNs: number; runCount: number } } & UnwindStatsJson;
  const bpf = stats.bpfRunTime;
  const tables = stats.unwind?.tables;
  if (tables !== undefined) {
    const outcomes = stats.unwind!.outcomes;
    const walked = Object.values(outcomes).reduce((a, b) => a + b, 0);
    process.stderr.write(
      `  unwind tables: ${tables.files} files, ${(tables.tableBytes / 1048576).toFixed(1)} MiB, locked ${(tables.lockedMapBytes / 1048576).toFixed(1)} MiB, ` +
        `built in ${tables.buildMs} ms (cache: ${tables.cache?.hits ?? '-'} read, ${tables.cache?.misses ?? '-'} built, ${tables.cache?.corrupt ?? '-'} corrupt); complete ${((100 * (outcomes.unwindComplete ?? 0)) / Math.max(1, walked)).toFixed(1)}% of ${walked} walks\n`,
    );
  }
  return {
    tool: label ?? (unwind === 'dwarf' ? 'fleetprof record --unwind dwarf' : 'fleetprof record'),
    lockedMapMb: tables === undefined ? undefined : tables.lockedMapBytes / 1048576,
    tableBuildMs: tables?.buildMs,
    frequencyHz,
    cpuSeconds: run.cpuSeconds,
    peakRssMb: run.peakRssMb,
    samples: stats.samples,
    bpfNsPerSample: bpf && bpf.runCount > 0 ? bpf.runTimeNs / bpf.runCount : undefined,
  };
}

/**
 * `perf record -a` then `perf script`, the whole job as a user would run it. callGraph picks frame pointers (-g)
 * or perf's DWARF mode (8 KiB of user stack copied per sample, unwound by perf script with libdw/libunwind).
 */
function runPerfWith(frequencyHz: number, callGraph: 'fp' | 'dwarf'): Measurement {
  const data = join(work, callGraph === 'dwarf' ? 'perf-dwarf.data' : 'perf.data');
  const graphArgs = callGraph === 'dwarf' ? ['--call-graph', 'dwarf'] : ['-g'];
  const recorded = timed('perf', ['record', '-q', '-F', String(frequencyHz), '-a', ...graphArgs, '-o', data, '--', 'sleep', String(durationSeconds)]);
  // --no-inline: no addr2line children (slow, and one failing on a container's file killed the run).
  const script = timed('perf', ['script', '--no-inline', '-i', data]);
  return {
    tool: `perf record -a ${graphArgs.join(' ')} + perf script`,
    frequencyHz,
    cpuSeconds: recorded.cpuSeconds + script.cpuSeconds,
    peakRssMb: Math.max(recorded.peakRssMb, script.peakRssMb),
    samples: script.stdout.split('\n\n').filter((block) => block.trim() !== '').length,
  };
}

const runPerf = (frequencyHz: number): Measurement => runPerfWith(frequencyHz, 'fp');
const runPerfDwarf = (frequencyHz: number): Measurement => runPerfWith(frequencyHz, 'dwarf');

/**
 * BCC compiles its program against kernel headers at start; this kernel ships
 * none, so BCC gets Debian's linux-headers-amd64 (another kernel's, which is
 * enough for profile.py's perf_event program): Debian splits them into an
 * -amd64 and a -common tree, and BCC wants one, so merge them with symlinks.
 */
function bccKernelSource(): string | undefined {
  const dirs = existsSync('/usr/src') ? readdirSync('/usr/src').sort() : [];
  const arch = dirs.filter((d) => /^linux-headers-.*-amd64$/.test(d)).pop();
  if (arch === undefined) return undefined;
  const common = arch.replace(/-amd64$/, '-common');
  const merged = join(work, 'bcc-kernel-headers');
  if (!existsSync(merged)) {
    execFileSync('cp', ['-as', join('/usr/src', common) + '/.', merged + '/']);
    execFileSync('cp', ['-asf', join('/usr/src', arch) + '/.', merged + '/']);
  }
  return merged;
}

/** Total run time and runs of BCC's perf_event program, read from bpftool while it is loaded. */
function bccProgramStats(): { runTimeNs: number; runCount: number } | undefined {
  try {
    const progs = JSON.parse(execFileSync('bpftool', ['prog', 'show', '--json'], { encoding: 'utf8' })) as {
      name?: string;
      type?: string;
      run_time_ns?: number;
      run_cnt?: number;
    }[];
    const bcc = progs.find((p) => p.type === 'perf_event' && p.name === 'do_perf_event');
    return bcc ? { runTimeNs: bcc.run_time_ns ?? 0, runCount: bcc.run_cnt ?? 0 } : undefined;
  } catch {
    return undefined;
  }
}

async function runBcc(frequencyHz: number): Promise<Measurement | undefined> {
  const source = bccKernelSource();
  if (!existsSync('/usr/sbin/profile-bpfcc') || source === undefined) return undefined;
  // BCC has no switch of its own for run-time stats: turn them on system-wide
  // for its run and read its program's counters just before it exits.
  execFileSync('sysctl', ['-q', '-w', 'kernel.bpf_stats_enabled=1']);
  let lastStats: { runTimeNs: number; runCount: number } | undefined;
  const poller = setInterval(() => {
    lastStats = bccProgramStats() ?? lastStats;
  }, 500);
  let run: { cpuSeconds: number; peakRssMb: number; stdout: string };
  try {
    run = await timedAsync('profile-bpfcc', ['-F', String(frequencyHz), '-f', String(durationSeconds)], { ...process.env, BCC_KERNEL_SOURCE: source });
  } finally {
    clearInterval(poller);
    execFileSync('sysctl', ['-q', '-w', 'kernel.bpf_stats_enabled=0']);
  }
  const bpfNsPerSample = lastStats && lastStats.runCount > 0 ? lastStats.runTimeNs / lastStats.runCount : undefined;
  const samples = run.stdout
    .split('\n')
    .map((line) => Number(line.slice(line.lastIndexOf(' ') + 1)))
    .filter((n) => Number.isFinite(n))
    .reduce((a, b) => a + b, 0);
  return { tool: 'BCC profile-bpfcc -f', frequencyHz, cpuSeconds: run.cpuSeconds, peakRssMb: run.peakRssMb, samples, bpfNsPerSample };
}

/** The reference program that only walks the stacks: the kernel's share of the BPF time per sample. */
async function runWalkOnly(frequencyHz: number): Promise<Measurement> {
  const statsFd = loadAddon().enableBpfStats();
  const object = new BpfObject(join(root, 'bench', 'bpf', 'build', 'walk-only.bpf.o'), {});
  try {
    for (const cpu of onlineCpus()) object.attachPerfEvent('walk_only', cpu, frequencyHz);
    await sleep(durationSeconds * 1000);
    const { runTimeNs, runCount } = object.programStats('walk_only');
    return { tool: 'stack walks only (reference)', frequencyHz, cpuSeconds: NaN, peakRssMb: NaN, samples: runCount, bpfNsPerSample: runCount > 0 ? runTimeNs / runCount : undefined };
  } finally {
    object.destroy();
    loadAddon().closeFd(statsFd);
  }
}


function optionalMedian(values: (number | undefined)[], digits: number): string {
  const known = values.filter((v): v is number => v !== undefined);
  return known.length === 0 ? '-' : median(known).toFixed(digits);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function main(): Promise<void> {
  execFileSync('make', ['-s', '-C', join(root, 'bench', 'bpf')]); // the walk-only reference program
  const load = startBusyMachine({ processChurn: true });
  const results: Measurement[] = [];
  try {
    for (let round = 0; round < rounds; round++) {
      for (const frequencyHz of frequencies) {
        for (const run of [runFleetprof, runFleetprofDwarfCold, runFleetprofDwarfWarm, runPerf, runPerfDwarf, ...(args['no-bcc'] ? [] : [runBcc]), runWalkOnly]) {
          const m = await run(frequencyHz);
          if (m) {
            results.push(m);
            process.stderr.write(
              `round ${round + 1} ${m.tool} @${frequencyHz} Hz: cpu ${m.cpuSeconds.toFixed(2)} s, rss ${m.peakRssMb.toFixed(0)} MB, bpf ${m.bpfNsPerSample?.toFixed(0) ?? '-'} ns\n`,
            );
          }
        }
      }
    }
  } finally {
    for (const child of load) child.kill('SIGKILL');
  }
  const command = `node dist/bench/record-overhead.js --duration ${durationSeconds} --frequencies ${frequencies.join(',')} --rounds ${rounds}${args['no-bcc'] ? ' --no-bcc' : ''}`;
  const lines = [
    `Command: \`${command}\` (after \`npm run build\`, as root). ${durationSeconds} s per run, ${rounds} rounds, tools interleaved; medians.`,
    '',
    '| Hz | tool | CPU s (whole job) | CPU vs fleetprof | peak RSS MB | samples | BPF ns/sample | locked unwind maps MB | table build ms |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const frequencyHz of frequencies) {
    const ours = median(results.filter((r) => r.frequencyHz === frequencyHz && r.tool === 'fleetprof record').map((r) => r.cpuSeconds));
    for (const tool of [...new Set(results.map((r) => r.tool))]) {
      const mine = results.filter((r) => r.frequencyHz === frequencyHz && r.tool === tool);
      if (mine.length === 0) continue;
      const cpu = median(mine.map((r) => r.cpuSeconds));
      const bpf = mine.map((r) => r.bpfNsPerSample).filter((v): v is number => v !== undefined);
      const rss = median(mine.map((r) => r.peakRssMb));
      lines.push(
        `| ${frequencyHz} | ${tool} | ${Number.isNaN(cpu) ? '-' : cpu.toFixed(2)} | ${Number.isNaN(cpu) ? '-' : (cpu / ours).toFixed(2) + 'x'} | ${Number.isNaN(rss) ? '-' : rss.toFixed(0)} | ` +
          `${median(mine.map((r) => r.samples ?? 0)).toFixed(0)} | ${bpf.length > 0 ? median(bpf).toFixed(0) : '-'} | ` +
          `${optionalMedian(mine.map((r) => r.lockedMapMb), 1)} | ${optionalMedian(mine.map((r) => r.tableBuildMs), 0)} |`,
      );
    }
  }
  // What an always-on agent pays per sample, apart from its fixed cost (start, BPF load, JIT warm-up, tables):
  // the CPU difference between the lowest and the highest frequency over the difference in samples.
  if (frequencies.length >= 2) {
    const low = Math.min(...frequencies);
    const high = Math.max(...frequencies);
    lines.push('', `Marginal CPU per sample, ${low} Hz to ${high} Hz: (median CPU at ${high} Hz - median CPU at ${low} Hz) / (median samples at ${high} Hz - at ${low} Hz).`, '');
    lines.push('| tool | µs CPU per extra sample | vs fleetprof record |', '| --- | --- | --- |');
    const marginal = (tool: string): number | undefined => {
      const at = (hz: number) => results.filter((r) => r.frequencyHz === hz && r.tool === tool);
      const lo = at(low);
      const hi = at(high);
      if (lo.length === 0 || hi.length === 0) return undefined;
      const extraSamples = median(hi.map((r) => r.samples ?? 0)) - median(lo.map((r) => r.samples ?? 0));
      if (extraSamples <= 0) return undefined;
      return ((median(hi.map((r) => r.cpuSeconds)) - median(lo.map((r) => r.cpuSeconds))) / extraSamples) * 1e6;
    };
    const ours = marginal('fleetprof record');
    for (const tool of [...new Set(results.map((r) => r.tool))]) {
      const us = marginal(tool);
      if (us === undefined || Number.isNaN(us)) continue;
      lines.push(`| ${tool} | ${us.toFixed(1)} | ${ours === undefined || ours <= 0 ? '-' : (us / ours).toFixed(2) + 'x'} |`);
    }
  }
  const table = lines.join('\n');
  process.stdout.write(table + '\n');
  if (args.write) {
    const begin = `<!-- ${args.section}:begin -->`;
    const end = `<!-- ${args.section}:end -->`;
    const doc = existsSync(args.write) ? readFileSync(args.write, 'utf8') : '';
    const section = `${begin}\n${table}\n${end}`;
    writeFileSync(args.write, doc.includes(begin) ? doc.replace(new RegExp(`${begin}[\\s\\S]*${end}`), section) : `${doc}\n${section}\n`);
  }
}

await main();
