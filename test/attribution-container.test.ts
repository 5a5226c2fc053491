// A real containerised process: started by the test in its own cgroup, shaped
// like containerd's under kubepods in the unified hierarchy, and in its own
// mount namespace with its binary on a tmpfs only that namespace sees. It must
// be sampled, symbolized through /proc/PID/root, labelled with its container
// id and (from a local API server) its pod and namespace; --exclude on it must
// leave no sample of it while the kernel's filtered counter rises and its
// neighbour is still sampled; --include on its namespace must leave only it.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, rmdirSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { startServer } from '../server/index.js';
import { Agent } from '../src/agent/agent.js';
import { record } from '../src/agent/record.js';
import { findUnifiedHierarchy } from '../src/attribution/cgroup-tree.js';
import { Selection } from '../src/attribution/selection.js';
import { FIXTURES_DIR } from './helpers/fixtures.js';
import { flattenProfile, readProfile, type FlatSample } from './helpers/pprof.js';
import { FakeKubeApi } from './helpers/kube-api.js';

const NODE = 'test-node';
const podUid = randomUUID();
const containerId = randomBytes(32).toString('hex');
const cgroupComponents = ['kubepods.slice', 'kubepods-besteffort.slice', `kubepods-besteffort-pod${podUid.replaceAll('-', '_')}.slice`, `cri-containerd-${containerId}.scope`];

let workDir: string;
let containerRoot: string;
let cgroupDir: string;
let container: ChildProcess;
let neighbour: ChildProcess;
let api: FakeKubeApi;

async function startAndWaitReady(child: ChildProcess): Promise<void> {
  const [chunk] = (await once(child.stdout!, 'data')) as [Buffer];
  if (!chunk.toString().includes('ready')) throw new Error(`unexpected output: ${chunk.toString()}`);
}

beforeAll(async () => {
  const hierarchy = findUnifiedHierarchy();
  if (!hierarchy) throw new Error('this test needs a cgroup v2 (unified) hierarchy');
  workDir = mkdtempSync(join(tmpdir(), 'fleetprof-container-'));
  const app = join(workDir, 'container-app');
  execFileSync('clang', ['-O1', '-g', '-fno-omit-frame-pointer', '-mno-omit-leaf-frame-pointer', '-o', app, join(FIXTURES_DIR, 'container-app.c')]);
  // The container's root: an empty directory here, a tmpfs holding the binary in its mount namespace.
  containerRoot = join(workDir, 'rootfs');
  mkdirSync(containerRoot);
  cgroupDir = join(hierarchy.path, ...cgroupComponents);
  mkdirSync(cgroupDir, { recursive: true });
  const script = `echo $$ > ${cgroupDir}/cgroup.procs && mount -t tmpfs tmpfs ${containerRoot} && cp ${app} ${containerRoot}/app && exec ${containerRoot}/app`;
  container = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  neighbour = spawn(app, ['neighbour'], { stdio: ['ignore', 'pipe', 'inherit'] });
  await Promise.all([startAndWaitReady(container), startAndWaitReady(neighbour)]);

  api = new FakeKubeApi();
  await api.start();
  api.addPod({ namespace: 'shop', name: 'web-0', uid: podUid, nodeName: NODE, labels: { app: 'web' }, containers: { app: `containerd://${containerId}` } });
  api.addPod({ namespace: 'other', name: 'elsewhere', uid: randomUUID(), nodeName: 'another-node', containers: { app: `containerd://${'f'.repeat(64)}` } });
});

afterAll(async () => {
  for (const child of [container, neighbour]) {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  }
  await api?.stop();
  // Leaf first; the shared kubepods slices go only if nothing else uses them.
  if (cgroupDir) {
    let dir = cgroupDir;
    for (let i = 0; i < cgroupComponents.length; i++) {
      try {
        rmdirSync(dir);
      } catch {
        break;
      }
      dir = join(dir, '..');
    }
  }
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

async function recordWith(selection: Selection | undefined, name: string) {
  const outputPath = join(workDir, `${name}.pb.gz`);
  const warnings: string[] = [];
  const summary = await record({
    durationMs: 3000,
    frequencyHz: 99,
    outputPath,
    attribution: { selection, kubernetes: { nodeName: NODE, kubeConfig: api.kubeConfig() } },
    onWarning: (message) => warnings.push(message),
  });
  return { summary, samples: flattenProfile(readProfile(outputPath)), warnings };
}

const total = (samples: FlatSample[]): number => samples.reduce((sum, sample) => sum + (sample.values[0] ?? 0), 0);
const ofContainer = (samples: FlatSample[]): FlatSample[] => samples.filter((sample) => sample.labels.container_id === containerId);
const withFrame = (samples: FlatSample[], name: string): FlatSample[] => samples.filter((sample) => sample.stack.includes(name));

describe('a containerised process', () => {
  it('is sampled, symbolized through /proc/PID/root, and labelled with its container, pod and namespace', async () => {
    const binaryInContainer = join(containerRoot, 'app');
    expect(existsSync(binaryInContainer)).toBe(false); // only its mount namespace sees it
    const { samples } = await recordWith(undefined, 'all');
    const mine = ofContainer(samples);
    expect(total(mine)).toBeGreaterThan(0);
    for (const sample of mine) {
      expect(sample.labels).toMatchObject({ pod: 'web-0', namespace: 'shop', container: 'app', service_name: 'web', pid: container.pid });
    }
    const work = withFrame(mine, 'containerised_work');
    expect(total(work)).toBeGreaterThan(total(mine) / 2);
    expect(work[0]!.mappings[work[0]!.stack.indexOf('containerised_work')]).toBe(binaryInContainer);
    // Never anyone else's: every sample of its code carries its container id.
    expect(withFrame(samples, 'containerised_work').every((sample) => sample.labels.container_id === containerId)).toBe(true);
    // Its neighbour (same binary, host cgroup) is sampled and has no container.
    const theirs = withFrame(samples, 'neighbour_work');
    expect(total(theirs)).toBeGreaterThan(0);
    expect(theirs.every((sample) => sample.labels.container_id === undefined && sample.labels.pod === undefined)).toBe(true);
  });

  it('--exclude on its pod: no sample of it, the kernel counts the filtered ones, its neighbour is still sampled', async () => {
    const { summary, samples } = await recordWith(Selection.parse([], ['{pod="web-0"}']), 'exclude');
    expect(summary.attribution.kernelFilterActive).toBe(true);
    expect(ofContainer(samples)).toEqual([]);
    expect(withFrame(samples, 'containerised_work')).toEqual([]);
    // A CPU-bound process for 3 s at 99 Hz: up to ~300 ticks land on it (far fewer on a loaded machine).
    expect(summary.attribution.kernelFilteredSamples).toBeGreaterThan(0);
    expect(summary.kernelStats.filtered).toBeGreaterThanOrEqual(summary.attribution.kernelFilteredSamples);
    expect(total(withFrame(samples, 'neighbour_work'))).toBeGreaterThan(0);
  });

  it('--include on its namespace: only it is sampled, everything else is dropped in the kernel', async () => {
    const { summary, samples } = await recordWith(Selection.parse(['{namespace="shop"}'], []), 'include');
    expect(total(ofContainer(samples))).toBeGreaterThan(0);
    expect(samples.every((sample) => sample.labels.container_id === containerId)).toBe(true);
    expect(withFrame(samples, 'neighbour_work')).toEqual([]);
    expect(summary.attribution.kernelFilteredSamples).toBeGreaterThan(0);
  });

  it('--exclude by container id works without the API', async () => {
    const outputPath = join(workDir, 'no-api.pb.gz');
    const summary = await record({ durationMs: 1500, frequencyHz: 99, outputPath, attribution: { selection: Selection.parse([], [`{container_id="${containerId}"}`]) } });
    const samples = flattenProfile(readProfile(outputPath));
    expect(withFrame(samples, 'containerised_work')).toEqual([]);
    expect(summary.attribution.kernelFilteredSamples).toBeGreaterThan(0);
    expect(total(withFrame(samples, 'neighbour_work'))).toBeGreaterThan(0);
  });

  it('the agent: its series carry container, pod, namespace and comm, the server answers a pod selector, and /metrics counts the kernel filter', async () => {
    const server = await startServer({ dataDir: join(workDir, 'server'), port: 0 });
    const shipped: Record<string, string>[] = [];
    const startMs = Date.now();
    const agent = await Agent.start({
      serverUrl: server.url,
      frequencyHz: 99,
      intervalMs: 1000,
      nodeName: NODE,
      spoolDir: join(workDir, 'spool'),
      attribution: { kubernetes: { nodeName: NODE, kubeConfig: api.kubeConfig() }, selection: Selection.parse(['{namespace="shop"}'], ['{comm="sleep"}']) },
      onProfile: (labels) => shipped.push(labels),
    });
    try {
      await sleep(2500);
      const metrics = await agent.renderMetrics();
      expect(metrics).toMatch(/^fleetprof_agent_samples_filtered_total\{where="kernel"[^}]*\} [1-9]\d*$/m);
      expect(metrics).toMatch(/^fleetprof_agent_kubernetes_api_reachable\{[^}]*\} 1$/m);
      expect(metrics).toMatch(/^fleetprof_agent_kubernetes_watch_stalls_total\{[^}]*\} 0$/m);
      expect(metrics).toMatch(/^fleetprof_agent_kernel_symbols_hidden\{[^}]*\} [01]$/m);
      expect(metrics).toMatch(/^fleetprof_agent_cgroup_filter_cgroups\{[^}]*\} [1-9]\d*$/m);
      await agent.stop();
      const series = shipped.find((labels) => labels.container_id === containerId);
      expect(series).toMatchObject({ node: NODE, comm: 'app', namespace: 'shop', pod: 'web-0', container: 'app', service_name: 'web' });
      // --include kept only that namespace's series.
      expect(shipped.every((labels) => labels.namespace === 'shop')).toBe(true);
      const query = encodeURIComponent('{namespace="shop",pod="web-0"}');
      const response = await fetch(`${server.url}/api/v1/top?query=${query}&from=${startMs - 1000}&to=${Date.now() + 1000}`);
      expect(response.status).toBe(200);
      expect(await response.text()).toContain('containerised_work');
    } finally {
      await server.close();
    }
  });

  it('--include on a pod the API announces only while recording: filtered in the kernel until then, sampled after', async () => {
    const lateUid = randomUUID();
    const lateId = randomBytes(32).toString('hex');
    const lateDir = join(findUnifiedHierarchy()!.path, 'kubepods.slice', `kubepods-pod${lateUid.replaceAll('-', '_')}.slice`, `cri-containerd-${lateId}.scope`);
    mkdirSync(lateDir, { recursive: true });
    const late = spawn('sh', ['-c', `echo $$ > ${lateDir}/cgroup.procs && exec ${join(workDir, 'container-app')}`], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await startAndWaitReady(late);
      const recording = recordWith(Selection.parse(['{namespace="late"}'], []), 'late');
      await sleep(1500);
      api.addPod({ namespace: 'late', name: 'late-0', uid: lateUid, nodeName: NODE, containers: { app: `containerd://${lateId}` } });
      const { summary, samples } = await recording;
      const lateSamples = samples.filter((sample) => sample.labels.container_id === lateId);
      expect(total(lateSamples)).toBeGreaterThan(0);
      expect(lateSamples.every((sample) => sample.labels.pod === 'late-0' && sample.labels.namespace === 'late')).toBe(true);
      expect(samples.every((sample) => sample.labels.namespace === 'late')).toBe(true);
      expect(summary.attribution.kernelFilteredSamples).toBeGreaterThan(0);
    } finally {
      late.kill('SIGKILL');
      await once(late, 'exit');
      rmdirSync(lateDir);
      rmdirSync(join(lateDir, '..'));
    }
  });
});
