// Soak of `fleetprof agent` on a host with process churn: is its memory
// flat after warm-up, and what does it cost at rest? For each frequency it
// runs a real server and a real agent (both `fleetprof` processes, pushing
// every 10 s) while this process keeps the host churning:
//   - a short-lived process every 100 ms (a shell busy for a few ms),
//   - a JIT process (node --perf-basic-prof, compiling new functions) restarted every 30 s,
//   - a C program that dlopen()s a library, runs in it, and dlclose()s it, over and over.
// Every --sample-every seconds it reads the agent's RSS (/proc/PID/status)
// and CPU time (/proc/PID/stat), and at the end reports per frequency: RSS
// growth from the end of warm-up to the end, the largest RSS, and the mean
// CPU after warm-up (% of one core), next to the targets. The churn
// generator's own CPU is reported beside it as the peer: what the workload
// costs, in the same run.
// Usage: node dist/bench/soak.js [--minutes 30] [--warmup-minutes 10] [--frequencies 19,99] [--sample-every 30]
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { packageRoot } from '../src/util/package-root.js';

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '30' },
    'warmup-minutes': { type: 'string', default: '10' },
    frequencies: { type: 'string', default: '19,99' },
    'sample-every': { type: 'string', default: '30' },
  },
});
const runMs = Number(args.minutes) * 60_000;
const warmupMs = Number(args['warmup-minutes']) * 60_000;
const frequencies = args.frequencies.split(',').map(Number);
const sampleEveryMs = Number(args['sample-every']) * 1000;
if (!(warmupMs < runMs)) throw new Error('--warmup-minutes must be shorter than --minutes');
const CLI = join(packageRoot(), 'dist', 'src', 'cli.js');
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
const work = mkdtempSync(join(tmpdir(), 'fleetprof-soak-'));
/** Every child this bench starts, so an interrupted run leaves none behind (an orphaned JIT process would grow its perf map forever). */
const children = new Set<ChildProcess>();
function ownChild(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    for (const child of children) child.kill('SIGKILL');
    process.exit(130);
  });
}
// And when the bench fails (e.g. the agent cannot start): a churn left running would skew the next run.
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

interface Point {
  atMs: number;
  rssMb: number;
  /** Agent CPU over the last sampling period, % of one core. */
  cpuPercent: number;
}

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)![1]) / 1024;
}

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/** The dlopen/dlclose workload: a library and a loop that loads it, runs in it, unloads it. */
function buildLibraryChurn(): string {
  const lib = join(work, 'libchurn.so');
  const prog = join(work, 'dlchurn');
  writeFileSync(join(work, 'libchurn.c'), 'volatile long sink; void churn_work(long n) { for (long i = 0; i < n; i++) sink += i * i % 7; }\n');
  writeFileSync(
    join(work, 'dlchurn.c'),
    `#include <dlfcn.h>
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
  for (;;) {
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) { fprintf(stderr, "%s\\n", dlerror()); return 1; }
    void (*work)(long) = (void (*)(long))dlsym(h, "churn_work");
    work(3000000);
    dlclose(h);
    usleep(200000);
  }
}
`,
  );
  const fp = ['-O1', '-g', '-fno-omit-frame-pointer'];
  execFileSync('clang', [...fp, '-fPIC', '-shared', '-o', lib, join(work, 'libchurn.c')]);
  execFileSync('clang', [...fp, '-o', prog, join(work, 'dlchurn.c'), '-ldl']);
  return prog;
}

/** Starts the churn; returns a stop function and the churn's CPU seconds so far (this process and its churn children). */
function startChurn(dlchurn: string): { stop(): Promise<void>; cpuSeconds(): number } {
  const live = new Set<ChildProcess>();
  const track = (child: ChildProcess) => {
    live.add(child);
    child.once('exit', () => live.delete(child));
  };
  // Short-lived processes every 100 ms.
  const shortLived = setInterval(() => track(ownChild(spawn('/bin/sh', ['-c', 'i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done'], { stdio: 'ignore' }))), 100);
  // A JIT process restarted every 30 s.
  const jitScript = 'const f = []; setInterval(() => { f.push(new Function("x", "return x * " + f.length)); for (let i = 0; i < 2000; i++) f[f.length - 1](i); }, 20);';
  let jit: ChildProcess | undefined;
  const restartJit = () => {
    jit?.kill('SIGKILL');
    jit = ownChild(spawn(process.execPath, ['--perf-basic-prof', '-e', jitScript], { stdio: 'ignore' }));
    track(jit);
  };
  restartJit();
  const jitTimer = setInterval(restartJit, 30_000);
  // The dlopen/dlclose loop.
  const dl = ownChild(spawn(dlchurn, [join(work, 'libchurn.so')], { stdio: 'ignore' }));
  track(dl);
  const started = process.cpuUsage();
  return {
    async stop() {
      clearInterval(shortLived);
      clearInterval(jitTimer);
      for (const child of live) child.kill('SIGKILL');
      await sleep(200);
    },
    cpuSeconds() {
      // This process, its reaped children (the kernel adds them to cutime/cstime), and the live ones.
      const self = process.cpuUsage(started);
      let liveSeconds = 0;
      for (const child of live) {
        try {
          liveSeconds += cpuSeconds(child.pid!);
        } catch {
          // exited between the exit event and now: counted as reaped
        }
      }
      return (self.user + self.system) / 1e6 + readChildrenCpuSeconds() + liveSeconds;
    },
  };
}

/** CPU seconds of this process's reaped children (cutime + cstime in /proc/self/stat). */
function readChildrenCpuSeconds(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[13]) + Number(fields[14])) / CLK_TCK;
}

async function waitForLine(child: ChildProcess, pattern: RegExp): Promise<RegExpExecArray> {
  let text = '';
  for (;;) {
    const m = pattern.exec(text);
    if (m) return m;
    const [chunk] = (await Promise.race([once(child.stderr!, 'data'), once(child, 'exit').then(() => [null])])) as [Buffer | null];
    if (chunk === null) throw new Error(`process exited: ${text}`);
    text += chunk.toString();
  }
}

// Extra node flags for the agent (e.g. --trace-gc) and where its stdout goes; both for looking inside a run, not for the figures.
const agentNodeArgs = (process.env.FLEETPROF_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
const agentStdoutFd = process.env.FLEETPROF_BENCH_AGENT_STDOUT ? openSync(process.env.FLEETPROF_BENCH_AGENT_STDOUT, 'a') : 'ignore';

async function soak(frequencyHz: number, dlchurn: string): Promise<{ points: Point[]; churnCpuPercent: number }> {
  const server = ownChild(spawn(process.execPath, [CLI, 'server', '--port', '0', '--data-dir', join(work, `data-${frequencyHz}`), '--retention', '1h'], { stdio: ['ignore', 'ignore', 'pipe'] }));
  const url = (await waitForLine(server, /listening on (\S+)/))[1]!;
  const churn = startChurn(dlchurn);
  const agent = ownChild(
    spawn(process.execPath, [...agentNodeArgs, CLI, 'agent', '--server', url, '--frequency', String(frequencyHz), '--interval', '10', '--spool-dir', join(work, `spool-${frequencyHz}`), '--metrics-port', 'off'], {
      // The agent's stdout (e.g. --trace-gc) goes to a file when asked, to see the live heap without an inspector.
      stdio: ['ignore', agentStdoutFd, 'pipe'],
    }),
  );
  await waitForLine(agent, /sampling at/);
  const pid = agent.pid!;
  const points: Point[] = [];
  const t0 = performance.now();
  let lastCpu = cpuSeconds(pid);
  let lastAt = t0;
  const churnCpu0 = churn.cpuSeconds();
  let churnCpuAtWarmup = churnCpu0;
  let warmupAt = t0;
  // A last period shorter than a second would make a meaningless CPU figure.
  while (runMs - (performance.now() - t0) >= 1000) {
    await sleep(Math.min(sampleEveryMs, runMs - (performance.now() - t0)));
    const now = performance.now();
    const cpu = cpuSeconds(pid);
    const point = { atMs: now - t0, rssMb: rssMb(pid), cpuPercent: (100 * (cpu - lastCpu)) / ((now - lastAt) / 1000) };
    points.push(point);
    if (point.atMs <= warmupMs) {
      churnCpuAtWarmup = churn.cpuSeconds();
      warmupAt = now;
    }
    console.log(`  ${frequencyHz} Hz  t=${(point.atMs / 1000).toFixed(0).padStart(5)} s  RSS ${point.rssMb.toFixed(1).padStart(6)} MB  CPU ${point.cpuPercent.toFixed(2).padStart(5)} %`);
    lastCpu = cpu;
    lastAt = now;
  }
  const churnCpuPercent = (100 * (churn.cpuSeconds() - churnCpuAtWarmup)) / ((performance.now() - warmupAt) / 1000);
  agent.kill('SIGTERM');
  await once(agent, 'exit');
  await churn.stop();
  server.kill('SIGTERM');
  await once(server, 'exit');
  return { points, churnCpuPercent };
}

const dlchurn = buildLibraryChurn();
const rows: string[] = [];
console.log(`soak: ${args.minutes} min per frequency, warm-up ${args['warmup-minutes']} min, a sample every ${args['sample-every']} s`);
for (const hz of frequencies) {
  const { points, churnCpuPercent } = await soak(hz, dlchurn);
  const after = points.filter((p) => p.atMs > warmupMs);
  const atWarmupEnd = points.filter((p) => p.atMs <= warmupMs).pop() ?? points[0]!;
  const last = points[points.length - 1]!;
  const growthPercent = (100 * (last.rssMb - atWarmupEnd.rssMb)) / atWarmupEnd.rssMb;
  const maxRss = Math.max(...points.map((p) => p.rssMb));
  const meanCpu = after.reduce((sum, p) => sum + p.cpuPercent, 0) / Math.max(1, after.length);
  rows.push(
    `| ${hz} Hz | ${atWarmupEnd.rssMb.toFixed(1)} MB | ${last.rssMb.toFixed(1)} MB | ${growthPercent >= 0 ? '+' : ''}${growthPercent.toFixed(1)} % | ${maxRss.toFixed(1)} MB | ${meanCpu.toFixed(2)} % | ${churnCpuPercent.toFixed(1)} % |`,
  );
  console.log(
    `${hz} Hz: RSS ${atWarmupEnd.rssMb.toFixed(1)} MB at the end of warm-up -> ${last.rssMb.toFixed(1)} MB at the end (${growthPercent.toFixed(1)} %; target < 5 %), ` +
      `max ${maxRss.toFixed(1)} MB${hz === 19 ? ' (target < 150 MB)' : ''}, agent CPU after warm-up ${meanCpu.toFixed(2)} % of one core${hz === 19 ? ' (target < 1 %)' : ''}; the churn itself: ${churnCpuPercent.toFixed(1)} %`,
  );
}
console.log('\n| frequency | RSS after warm-up | RSS at end | growth | max RSS | agent CPU (one core) | churn CPU (peer) |');
console.log('|---|---|---|---|---|---|---|');
for (const row of rows) console.log(row);
