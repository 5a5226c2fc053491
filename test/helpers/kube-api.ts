// A local stand-in for the Kubernetes API server's pod list and watch, as
// the real one speaks them (shapes from the API reference: PodList, watch
// events as JSON lines, a Status of code 410 "Expired" for a resource version
// too old to watch from). It honours the spec.nodeName field selector, so a
// client that asks for the wrong node's pods gets none.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo, Socket } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';

export interface FakePodSpec {
  namespace: string;
  name: string;
  uid: string;
  nodeName: string;
  labels?: Record<string, string>;
  owner?: { kind: string; name: string };
  /** container name -> container id with its runtime scheme (containerd://...). */
  containers: Record<string, string>;
}

type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export class FakeKubeApi {
  private server: Server | undefined;
  private port = 0;
  private resourceVersion = 1000;
  /** Events older than this resource version are compacted away: a watch from before it gets 410. */
  private compactedBefore = 0;
  private readonly pods = new Map<string, { spec: FakePodSpec; resourceVersion: number }>();
  private readonly history: { resourceVersion: number; type: WatchEventType; pod: object }[] = [];
  private readonly watchers = new Set<{ response: ServerResponse; nodeName: string | undefined; timeout?: NodeJS.Timeout }>();
  private readonly sockets = new Set<Socket>();
  readonly requests: { path: string; query: Record<string, string> }[] = [];

  async start(port = 0): Promise<void> {
    this.server = createServer((request, response) => this.handle(request, response));
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    this.server.listen(port, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = (this.server.address() as AddressInfo).port;
  }

  /** Like an API server restart: every connection is cut and nothing listens until start() again (same port). */
  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    this.watchers.clear();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  async restart(): Promise<void> {
    await this.start(this.port);
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  kubeConfig(): KubeConfig {
    const config = new KubeConfig();
    config.loadFromOptions({
      clusters: [{ name: 'test', server: this.url, skipTLSVerify: true }],
      users: [{ name: 'agent', token: 'test-token' }],
      contexts: [{ name: 'test', cluster: 'test', user: 'agent' }],
      currentContext: 'test',
    });
    return config;
  }

  /** A kubeconfig file's YAML for the CLI's --kubeconfig. */
  kubeConfigYaml(): string {
    return [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      `- name: test\n  cluster:\n    server: ${this.url}\n    insecure-skip-tls-verify: true`,
      'users:',
      '- name: agent\n  user:\n    token: test-token',
      'contexts:',
      '- name: test\n  context:\n    cluster: test\n    user: agent',
      'current-context: test',
      '',
    ].join('\n');
  }

  addPod(spec: FakePodSpec): void {
    this.change(this.pods.has(spec.uid) ? 'MODIFIED' : 'ADDED', spec);
  }

  deletePod(uid: string): void {
    const existing = this.pods.get(uid);
    if (!existing) throw new Error(`no pod ${uid}`);
    this.change('DELETED', existing.spec);
  }

  /** Cuts every open watch connection mid-stream (a load balancer timeout, a network blip). */
  dropWatches(): void {
    for (const watcher of this.watchers) watcher.response.socket?.destroy();
    this.watchers.clear();
  }

  /**
   * Every open watch goes silent without closing, as behind a network
   * partition that sends no FIN or RST: the connection stays open, nothing
   * more is written to it, and its timeoutSeconds is no longer honoured.
   */
  silenceWatches(): void {
    for (const watcher of this.watchers) clearTimeout(watcher.timeout);
    this.watchers.clear();
  }

  /** Compacts history: watches from any resource version before now get 410 Gone; open watches are told so and closed. */
  expireHistory(): void {
    this.compactedBefore = this.resourceVersion;
    for (const watcher of this.watchers) {
      watcher.response.end(JSON.stringify({ type: 'ERROR', object: this.goneStatus(0) }) + '\n');
    }
    this.watchers.clear();
  }

  countRequests(watch: boolean): number {
    return this.requests.filter((request) => (request.query.watch === 'true') === watch).length;
  }

  private change(type: WatchEventType, spec: FakePodSpec): void {
    const resourceVersion = ++this.resourceVersion;
    if (type === 'DELETED') this.pods.delete(spec.uid);
    else this.pods.set(spec.uid, { spec, resourceVersion });
    const pod = podJson(spec, resourceVersion);
    this.history.push({ resourceVersion, type, pod });
    for (const watcher of this.watchers) {
      if (watcher.nodeName === undefined || watcher.nodeName === spec.nodeName) watcher.response.write(JSON.stringify({ type, object: pod }) + '\n');
    }
  }

  private goneStatus(from: number): object {
    return {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: `too old resource version: ${from} (${this.compactedBefore})`,
      reason: 'Expired',
      code: 410,
    };
  }

  private handle(request: IncomingMessage, response: ServerResponse): void {
    const url = new URL(request.url ?? '/', this.url);
    const query = Object.fromEntries(url.searchParams);
    this.requests.push({ path: url.pathname, query });
    if (url.pathname !== '/api/v1/pods') {
      response.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404 }));
      return;
    }
    const selector = query.fieldSelector ?? '';
    const nodeMatch = /^spec\.nodeName=(.+)$/.exec(selector);
    const nodeName = nodeMatch ? nodeMatch[1] : undefined;
    if (query.watch === 'true') {
      const from = Number(query.resourceVersion ?? '0');
      response.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
      if (from !== 0 && from < this.compactedBefore) {
        response.end(JSON.stringify({ type: 'ERROR', object: this.goneStatus(from) }) + '\n');
        return;
      }
      for (const event of this.history) {
        if (event.resourceVersion <= from) continue;
        const pod = event.pod as { spec: { nodeName: string } };
        if (nodeName === undefined || pod.spec.nodeName === nodeName) response.write(JSON.stringify({ type: event.type, object: event.pod }) + '\n');
      }
      const watcher: { response: ServerResponse; nodeName: string | undefined; timeout?: NodeJS.Timeout } = { response, nodeName };
      // Like the API server, end the watch cleanly after the timeoutSeconds asked for.
      const timeoutSeconds = Number(query.timeoutSeconds ?? '0');
      if (timeoutSeconds > 0) {
        watcher.timeout = setTimeout(() => {
          this.watchers.delete(watcher);
          response.end();
        }, timeoutSeconds * 1000);
      }
      this.watchers.add(watcher);
      response.on('close', () => {
        clearTimeout(watcher.timeout);
        this.watchers.delete(watcher);
      });
      return;
    }
    const items = [...this.pods.values()]
      .filter(({ spec }) => nodeName === undefined || spec.nodeName === nodeName)
      .map(({ spec, resourceVersion }) => podJson(spec, resourceVersion));
    response.writeHead(200, { 'content-type': 'application/json' }).end(
      JSON.stringify({ kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: String(this.resourceVersion) }, items }),
    );
  }
}

/** A Pod as the API returns it (the fields fleetprof reads, plus enough of the rest to be real). */
function podJson(spec: FakePodSpec, resourceVersion: number): object {
  const containerNames = Object.keys(spec.containers);
  return {
    kind: 'Pod',
    apiVersion: 'v1',
    metadata: {
      name: spec.name,
      namespace: spec.namespace,
      uid: spec.uid,
      resourceVersion: String(resourceVersion),
      creationTimestamp: '2026-11-30T08:00:00Z',
      labels: spec.labels ?? {},
      ownerReferences: spec.owner ? [{ apiVersion: 'apps/v1', kind: spec.owner.kind, name: spec.owner.name, uid: '00000000-0000-0000-0000-000000000001', controller: true, blockOwnerDeletion: true }] : undefined,
    },
    spec: {
      nodeName: spec.nodeName,
      containers: containerNames.map((name) => ({ name, image: `registry.example/${name}:1` })),
      restartPolicy: 'Always',
    },
    status: {
      phase: 'Running',
      podIP: '10.0.0.7',
      startTime: '2026-11-30T08:00:00Z',
      containerStatuses: containerNames.map((name) => ({
        name,
        containerID: spec.containers[name],
        image: `registry.example/${name}:1`,
        imageID: `registry.example/${name}@sha256:${'0'.repeat(64)}`,
        ready: true,
        restartCount: 0,
        started: true,
        state: { running: { startedAt: '2026-11-30T08:00:01Z' } },
      })),
    },
  };
}
