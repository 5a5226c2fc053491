// Benchmark: the agent's overhead with --include picking one pod out of
// several, against no filter, on the same busy host in the same run.
// Four "pods" (cgroups shaped like containerd's under kubepods in the unified
// hierarchy, known to a local API server) each run a CPU-bound Node process.
// The agent runs as the CLI does (a child process, pushing to a real server);
// measured per round: its CPU time (user + system, /proc/PID/stat), and the
// BPF program's run time and run count (kernel bpf stats, via bpftool, for
// the program this agent loaded). Rounds alternate the two variants.
// Usage: node dist/bench/filter-overhead.js [--duration 20] [--frequency 99] [--rounds 3] [--write docs/benchmarks.md]
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { startServer } from '../server/index.js';
import { findUnifiedHierarchy } from '../src/attribution/cgroup-tree.js';
import { packageRoot } from '../src/util/package-root.js';
import { FakeKubeApi } from '../test/helpers/kube-api.js';

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '20' },
    frequency: { type: 'string', default: '99' },
    rounds: { type: 'string', default: '3' },
    pods: { type: 'string', default: '4' },
    write: { type: 'string' },
  },
});
const durationSeconds = Number(args.duration);
const frequencyHz = Number(args.frequency);
const rounds = Number(args.rounds);
const podCount = Number(args.pods);
const NODE = 'bench-node';
const work = mkdtempSync(join(tmpdir(), 'fleetprof-filter-bench-'));
const clockTicksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

interface Pod {
  name: string;
  uid: string;
  containerId: string;
  cgroupDir: string;
  process?: ChildProcess;
}

interface Measurement {
  variant: 'no filter' | 'include one pod';
  agentCpuSeconds: number;
  bpfRunTimeMs: number;
  bpfRuns: number;
  bpfNsPerRun: number;
  /** The agent's peak resident set (VmHWM), for the DaemonSet's memory request and limit. */
  peakRssMb: number;
}

function cpuSeconds(pid: number): number {
  // Fields after the ")" of comm: state is field 3; utime and stime are 14 and 15.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / clockTicksPerSecond;
}

/** run_time_ns and run_cnt of the perf-event program this agent process holds (found by its fds: other BPF users may run programs of the same name). */
function bpfStats(agentPid: number): { runTimeNs: number; runs: number } {
  const programIds = new Set<number>();
  for (const fd of readdirSync(`/proc/${agentPid}/fdinfo`)) {
    let info: string;
    try {
      info = readFileSync(`/proc/${agentPid}/fdinfo/${fd}`, 'utf8');
    } catch {
      continue;
    }
    const id = /^prog_id:\s*(\d+)/m.exec(info);
    if (id) programIds.add(Number(id[1]));
  }
  let runTimeNs = 0;
  let runs = 0;
  let found = false;
  for (const id of programIds) {
    const program = JSON.parse(execFileSync('bpftool', ['prog', 'show', 'id', String(id), '--json'], { encoding: 'utf8' })) as { name?: string; run_time_ns?: number; run_cnt?: number };
    if (program.name !== 'sample_stack') continue;
    found = true;
    runTimeNs += program.run_time_ns ?? 0;
    runs += program.run_cnt ?? 0;
  }
  if (!found) throw new Error(`no sample_stack program held by ${agentPid}`);
  return { runTimeNs, runs };
}

async function main(): Promise<void> {
  const hierarchy = findUnifiedHierarchy();
  if (!hierarchy) throw new Error('needs a cgroup v2 (unified) hierarchy');
  const api = new FakeKubeApi();
  await api.start();
  const kubeconfigPath = join(work, 'kubeconfig');
  writeFileSync(kubeconfigPath, api.kubeConfigYaml());
  const server = await startServer({ dataDir: join(work, 'data'), port: 0 });
  const pods: Pod[] = [];
  // A Node service: JIT-less interpreter frames and a big binary to symbolize, like most pods.
  const service = 'function work(n){let s=0;for(let i=0;i<n;i++)s+=Math.sqrt(i);return s}console.log("ready");for(;;)work(1e6)';
  const previousStats = readFileSync('/proc/sys/kernel/bpf_stats_enabled', 'utf8').trim();
  writeFileSync('/proc/sys/kernel/bpf_stats_enabled', '1');
  const results: Measurement[] = [];
  try {
    for (let i = 0; i < podCount; i++) {
      const uid = randomUUID();
      const pod: Pod = {
        name: `svc-${i}`,
        uid,
        containerId: randomBytes(32).toString('hex'),
        cgroupDir: '',
      };
      pod.cgroupDir = join(hierarchy.path, 'kubepods.slice', 'kubepods-burstable.slice', `kubepods-burstable-pod${uid.replaceAll('-', '_')}.slice`, `cri-containerd-${pod.containerId}.scope`);
      mkdirSync(pod.cgroupDir, { recursive: true });
      pod.process = spawn('sh', ['-c', `echo $$ > ${pod.cgroupDir}/cgroup.procs && exec node -e '${service}'`], { stdio: ['ignore', 'pipe', 'inherit'] });
      await once(pod.process.stdout!, 'data');
      api.addPod({ namespace: 'bench', name: pod.name, uid, nodeName: NODE, labels: { app: pod.name }, containers: { app: `containerd://${pod.containerId}` } });
      pods.push(pod);
    }
    await sleep(2000); // let the services settle
    const variants: Measurement['variant'][] = ['no filter', 'include one pod'];
    for (let round = 0; round < rounds; round++) {
      for (const variant of round % 2 === 0 ? variants : [...variants].reverse()) {
        const argv = [
          join(packageRoot(), 'dist', 'src', 'cli.js'),
          'agent',
          '--server', server.url,
          '--frequency', String(frequencyHz),
          '--interval', '5',
          '--spool-dir', join(work, `spool-${round}-${variant.replaceAll(' ', '-')}`),
          '--kubeconfig', kubeconfigPath,
          '--node', NODE,
        ];
        if (variant === 'include one pod') argv.push('--include', `{pod="${pods[0]!.name}"}`);
        const agent = spawn(process.execPath, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        agent.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
        while (!stderr.includes('sampling at')) {
          if (agent.exitCode !== null) throw new Error(`agent exited: ${stderr}`);
          await sleep(50);
        }
        const cpuBefore = cpuSeconds(agent.pid!);
        const bpfBefore = bpfStats(agent.pid!);
        await sleep(durationSeconds * 1000);
        const cpuAfter = cpuSeconds(agent.pid!);
        const bpfAfter = bpfStats(agent.pid!);
        const peakRssMb = Number(/^VmHWM:\s*(\d+) kB/m.exec(readFileSync(`/proc/${agent.pid!}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
        agent.kill('SIGTERM');
        await once(agent, 'exit');
        const runs = bpfAfter.runs - bpfBefore.runs;
        const runTimeNs = bpfAfter.runTimeNs - bpfBefore.runTimeNs;
        const measurement: Measurement = {
          variant,
          agentCpuSeconds: cpuAfter - cpuBefore,
          bpfRunTimeMs: runTimeNs / 1e6,
          bpfRuns: runs,
          bpfNsPerRun: runs > 0 ? runTimeNs / runs : 0,
          peakRssMb,
        };
        results.push(measurement);
        process.stderr.write(`round ${round + 1} ${variant}: agent CPU ${measurement.agentCpuSeconds.toFixed(3)} s, BPF ${measurement.bpfRunTimeMs.toFixed(1)} ms over ${runs} runs (${measurement.bpfNsPerRun.toFixed(0)} ns/run), peak RSS ${peakRssMb.toFixed(0)} MB\n`);
      }
    }
  } finally {
    writeFileSync('/proc/sys/kernel/bpf_stats_enabled', previousStats);
    for (const pod of pods) {
      pod.process?.kill('SIGKILL');
      if (pod.process && pod.process.exitCode === null) await once(pod.process, 'exit');
      let dir = pod.cgroupDir;
      for (let i = 0; i < 4; i++) {
        try {
          rmdirSync(dir);
        } catch {
          break;
        }
        dir = join(dir, '..');
      }
    }
    await server.close();
    await api.stop();
    rmSync(work, { recursive: true, force: true });
  }
  report(results);
}

function report(results: Measurement[]): void {
  const mean = (variant: Measurement['variant'], pick: (m: Measurement) => number): number => {
    const of = results.filter((m) => m.variant === variant);
    return of.reduce((sum, m) => sum + pick(m), 0) / of.length;
  };
  const row = (variant: Measurement['variant']) =>
    `| ${variant} | ${mean(variant, (m) => m.agentCpuSeconds).toFixed(3)} | ${((100 * mean(variant, (m) => m.agentCpuSeconds)) / durationSeconds).toFixed(2)} % | ${mean(variant, (m) => m.bpfRunTimeMs).toFixed(1)} | ${mean(variant, (m) => m.bpfNsPerRun).toFixed(0)} | ${Math.max(...results.filter((m) => m.variant === variant).map((m) => m.peakRssMb)).toFixed(0)} |`;
  const ratio = (pick: (m: Measurement) => number) => (mean('include one pod', pick) / mean('no filter', pick)).toFixed(2);
  const table = [
    `| agent | CPU s per ${durationSeconds} s | of one core | BPF ms per ${durationSeconds} s | BPF ns per run | peak RSS MB (max) |`,
    '| --- | --- | --- | --- | --- | --- |',
    row('no filter'),
    row('include one pod'),
    '',
    `include one pod / no filter: agent CPU x${ratio((m) => m.agentCpuSeconds)}, BPF time x${ratio((m) => m.bpfRunTimeMs)} (${podCount} pods, ${frequencyHz} Hz, ${rounds} rounds each, means).`,
  ].join('\n');
  process.stdout.write(table + '\n');
  if (args.write) {
    const path = args.write;
    const text = readFileSync(path, 'utf8');
    const begin = '<!-- filter-overhead:begin -->';
    const end = '<!-- filter-overhead:end -->';
    const block = `${begin}\n${table}\n${end}`;
    writeFileSync(path, text.includes(begin) ? text.replace(new RegExp(`${begin}[\\s\\S]*?${end}`), block) : `${text}\n${block}\n`);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
