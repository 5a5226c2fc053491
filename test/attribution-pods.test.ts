// Pod metadata through @kubernetes/client-node against a local API server
// speaking the real list/watch JSON: only this node's pods, surviving a
// dropped watch, a watch gone silent (watchdog), a 410 Gone (re-list), an API server restart, and a pod
// deleted while its process still runs.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PodMetadata } from '../src/attribution/pods.js';
import { FakeKubeApi, type FakePodSpec } from './helpers/kube-api.js';

const hex = (seed: string): string => seed.repeat(64).slice(0, 64);
const uid = (n: number): string => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;

function pod(n: number, overrides: Partial<FakePodSpec> = {}): FakePodSpec {
  return {
    namespace: 'shop',
    name: `web-${n}`,
    uid: uid(n),
    nodeName: 'node-a',
    labels: { 'app.kubernetes.io/name': 'web' },
    containers: { app: `containerd://${hex(String(n))}` },
    ...overrides,
  };
}

let api: FakeKubeApi;
let metadata: PodMetadata | undefined;

beforeEach(async () => {
  api = new FakeKubeApi();
  await api.start();
});

afterEach(async () => {
  await metadata?.stop();
  metadata = undefined;
  await api.stop();
});

async function start(options: { deletedRetentionMs?: number } = {}): Promise<PodMetadata> {
  metadata = await PodMetadata.start({ nodeName: 'node-a', kubeConfig: api.kubeConfig(), retryInitialMs: 50, retryMaxMs: 200, ...options });
  return metadata;
}

describe('pod metadata from the Kubernetes API', () => {
  it('lists and watches only this node\'s pods, labels by container id and pod UID', async () => {
    api.addPod(pod(1));
    api.addPod(pod(2, { nodeName: 'node-b' }));
    api.addPod(pod(3, { labels: { 'pod-template-hash': '7d9f8c6b5' }, owner: { kind: 'ReplicaSet', name: 'checkout-7d9f8c6b5' } }));
    const pods = await start();
    expect(pods.lookup(hex('1'), undefined)).toMatchObject({ pod: { namespace: 'shop', name: 'web-1', serviceName: 'web' }, container: 'app' });
    expect(pods.lookup(hex('2'), undefined)).toBeUndefined();
    // No name label: the owning Deployment's name (the ReplicaSet's, less its template hash).
    expect(pods.lookup(hex('3'), undefined)?.pod.serviceName).toBe('checkout');
    expect(pods.lookup(undefined, uid(1))?.pod.name).toBe('web-1');
    expect(api.requests.length).toBeGreaterThan(0);
    for (const request of api.requests) expect(request.query.fieldSelector).toBe('spec.nodeName=node-a');

    api.addPod(pod(4));
    await expect.poll(() => pods.lookup(hex('4'), undefined)?.pod.name).toBe('web-4');
  });

  it('a dropped watch is re-opened from where it was, without a re-list', async () => {
    api.addPod(pod(1));
    const pods = await start();
    await expect.poll(() => api.countRequests(true)).toBe(1);
    api.dropWatches();
    api.addPod(pod(5));
    await expect.poll(() => pods.lookup(hex('5'), undefined)?.pod.name).toBe('web-5');
    expect(api.countRequests(true)).toBeGreaterThanOrEqual(2);
    expect(pods.stats().lists).toBe(1);
    // The re-watch asked for what came after the last resource version seen, not everything again.
    const watches = api.requests.filter((request) => request.query.watch === 'true');
    expect(Number(watches.at(-1)!.query.resourceVersion)).toBeGreaterThanOrEqual(Number(watches[0]!.query.resourceVersion));
    expect(watches.every((request) => Number(request.query.resourceVersion) > 0)).toBe(true);
  });

  it('a watch that goes silent without closing is aborted by the watchdog and watched again; a pod added meanwhile shows up', async () => {
    api.addPod(pod(1));
    const warnings: string[] = [];
    // Short durations so the watchdog fires within the test: the server is
    // asked to end each watch after 1-2 s; 200 ms of margin on top.
    metadata = await PodMetadata.start({
      nodeName: 'node-a',
      kubeConfig: api.kubeConfig(),
      retryInitialMs: 50,
      retryMaxMs: 200,
      watchTimeoutMinSeconds: 1,
      watchStallMarginMs: 200,
      onWarning: (message) => warnings.push(message),
    });
    const pods = metadata;
    await expect.poll(() => api.countRequests(true)).toBeGreaterThanOrEqual(1);
    // Every watch asks for a bounded timeout in [min, 2 min] and for bookmarks.
    for (const request of api.requests.filter((r) => r.query.watch === 'true')) {
      expect(Number(request.query.timeoutSeconds)).toBeGreaterThanOrEqual(1);
      expect(Number(request.query.timeoutSeconds)).toBeLessThanOrEqual(2);
      expect(request.query.allowWatchBookmarks).toBe('true');
    }
    api.silenceWatches(); // the connection stays open; nothing more comes on it
    const watchesBefore = api.countRequests(true);
    api.addPod(pod(9));
    await expect.poll(() => pods.lookup(hex('9'), undefined)?.pod.name, { timeout: 20_000, interval: 100 }).toBe('web-9');
    expect(api.countRequests(true)).toBeGreaterThan(watchesBefore);
    expect(pods.stats().watchStalls).toBeGreaterThanOrEqual(1);
    // One warning per stall, never more.
    expect(warnings.length).toBe(pods.stats().watchStalls);
    expect(warnings[0]).toMatch(/watch silent/);
    // It watched again from the last resource version: no re-list, no error.
    expect(pods.stats().lists).toBe(1);
    expect(pods.stats().errors).toBe(0);
    expect(pods.lookup(hex('1'), undefined)?.pod.name).toBe('web-1');
  }, 30_000);

  it('a quiet watch the server ends at its timeoutSeconds is watched again, not counted as a stall', async () => {
    api.addPod(pod(1));
    const warnings: string[] = [];
    // A wide margin: the server (which honours timeoutSeconds) always ends the watch well before the watchdog would.
    metadata = await PodMetadata.start({
      nodeName: 'node-a',
      kubeConfig: api.kubeConfig(),
      watchTimeoutMinSeconds: 1,
      watchStallMarginMs: 10_000,
      onWarning: (message) => warnings.push(message),
    });
    const pods = metadata;
    // No pod changes: the watch is quiet until the server ends it, twice over.
    await expect.poll(() => api.countRequests(true), { timeout: 20_000, interval: 100 }).toBeGreaterThanOrEqual(3);
    expect(pods.stats().watchStalls).toBe(0);
    expect(warnings).toEqual([]);
    expect(pods.stats().lists).toBe(1);
    api.addPod(pod(2));
    await expect.poll(() => pods.lookup(hex('2'), undefined)?.pod.name, { timeout: 10_000 }).toBe('web-2');
  }, 40_000);

  it('410 Gone makes it re-list, and what changed meanwhile is there after', async () => {
    api.addPod(pod(1));
    api.addPod(pod(2));
    const pods = await start();
    await expect.poll(() => api.countRequests(true)).toBe(1);
    api.expireHistory(); // the open watch gets an ERROR event of code 410 and ends
    api.addPod(pod(6));
    await expect.poll(() => pods.stats().lists).toBeGreaterThanOrEqual(2);
    await expect.poll(() => pods.lookup(hex('6'), undefined)?.pod.name).toBe('web-6');
    expect(pods.lookup(hex('2'), undefined)?.pod.name).toBe('web-2');
  });

  it('an API server restart: errors are counted, it comes back and catches up', async () => {
    api.addPod(pod(1));
    const errors: string[] = [];
    metadata = await PodMetadata.start({ nodeName: 'node-a', kubeConfig: api.kubeConfig(), retryInitialMs: 50, retryMaxMs: 200, onError: (message) => errors.push(message) });
    const pods = metadata;
    expect(pods.stats().reachable).toBe(true);
    await api.stop();
    await expect.poll(() => pods.stats().reachable).toBe(false);
    expect(pods.stats().errors).toBeGreaterThan(0);
    expect(errors.length).toBeGreaterThan(0);
    api.addPod(pod(7)); // changed while it was down
    await api.restart();
    await expect.poll(() => pods.lookup(hex('7'), undefined)?.pod.name, { timeout: 5000 }).toBe('web-7');
    expect(pods.lookup(hex('1'), undefined)?.pod.name).toBe('web-1');
    await expect.poll(() => pods.stats().reachable).toBe(true);
  });

  it('a deleted pod is still answered for its running processes, then forgotten; never confused with a new pod of the same name', async () => {
    api.addPod(pod(1));
    const pods = await start({ deletedRetentionMs: 300 });
    api.deletePod(uid(1));
    await expect.poll(() => pods.stats().deletedPodsKept).toBe(1);
    expect(pods.lookup(hex('1'), undefined)).toMatchObject({ pod: { name: 'web-1', uid: uid(1) }, container: 'app' });
    // A StatefulSet brings web-1 back: same name, new UID and container.
    api.addPod(pod(1, { uid: uid(101), containers: { app: `containerd://${hex('9')}` } }));
    await expect.poll(() => pods.lookup(hex('9'), undefined)?.pod.uid).toBe(uid(101));
    expect(pods.lookup(hex('1'), undefined)?.pod.uid).toBe(uid(1));
    // Past the retention, the old one goes (at the next change).
    await new Promise((resolve) => setTimeout(resolve, 350));
    api.addPod(pod(8));
    await expect.poll(() => pods.lookup(hex('8'), undefined)?.pod.name).toBe('web-8');
    expect(pods.lookup(hex('1'), undefined)).toBeUndefined();
    expect(pods.lookup(hex('9'), undefined)?.pod.uid).toBe(uid(101));
  });

  it('starts without the API (unreachable) and fills in when it appears', async () => {
    await api.stop();
    const pods = await PodMetadata.start({ nodeName: 'node-a', kubeConfig: api.kubeConfig(), retryInitialMs: 50, retryMaxMs: 100, initialListTimeoutMs: 300 });
    metadata = pods;
    expect(pods.stats().reachable).toBe(false);
    api.addPod(pod(1));
    await api.restart();
    await expect.poll(() => pods.lookup(hex('1'), undefined)?.pod.name, { timeout: 5000 }).toBe('web-1');
  });
});
