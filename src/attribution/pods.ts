// Kubernetes pod metadata for this node's processes: namespace, pod,
// container name and service name by container id (or pod UID), from a
// list+watch of the pods scheduled on this node only (field selector on
// spec.nodeName), through the official client's ListWatch. The client
// re-lists on 410 Gone and re-watches when a watch ends; what it does not do
// is come back after an error (API server down, connection refused), so that
// is retried here with backoff, starting again from a list. Nor does it
// notice a watch that goes silent without closing (a network partition with
// no FIN/RST): that is the watchdog's job here (see openWatch below).
import type { KubeConfig, ListWatch, V1Pod } from '@kubernetes/client-node';

export interface PodRecord {
  uid: string;
  namespace: string;
  name: string;
  /** app.kubernetes.io/name, else app, else the owning workload's name, else the pod's. */
  serviceName: string;
  /** Container id (runtime prefix stripped) -> container name. */
  containers: Map<string, string>;
  /** Set when the API said the pod is gone; kept a while for processes still running. */
  deletedAtMs?: number;
}

export interface PodLookup {
  pod: PodRecord;
  /** The container's name, when the id is in the pod's status. */
  container?: string;
}

export interface PodWatchStats {
  /** Full lists (the first, and each re-list after 410 Gone or a restart without a resource version). */
  lists: number;
  /** Watch (re)connections. */
  watches: number;
  /** Failed lists or watches (API server unreachable, 5xx, 403). */
  errors: number;
  /** Watches aborted by the watchdog: nothing (not even a bookmark) came for longer than the server was asked to keep them open. */
  watchStalls: number;
  reachable: boolean;
  pods: number;
  deletedPodsKept: number;
}

export interface PodMetadataOptions {
  nodeName: string;
  /** Default: in-cluster service account when KUBERNETES_SERVICE_HOST is set, else KUBECONFIG / ~/.kube/config. */
  kubeConfig?: KubeConfig;
  /** Called after any pod was added, changed or deleted. */
  onChange?: () => void;
  /** Called with a one-line description of each failure to reach the API. */
  onError?: (message: string) => void;
  /** Called once per stalled watch the watchdog aborted, with a one-line warning. */
  onWarning?: (message: string) => void;
  /** How long a deleted pod is still answered for (its processes may outlive it). */
  deletedRetentionMs?: number;
  retryInitialMs?: number;
  retryMaxMs?: number;
  /** How long start() waits for the first list before going on without it. */
  initialListTimeoutMs?: number;
  /**
   * Each watch asks the server to end it after timeoutSeconds, drawn between
   * this and twice this (as client-go's reflector does, so a fleet of agents
   * does not re-watch in step). Default 300 (client-go's minWatchTimeout).
   */
  watchTimeoutMinSeconds?: number;
  /** The watchdog aborts a watch silent for its timeoutSeconds plus this. */
  watchStallMarginMs?: number;
}

const DEFAULTS = {
  deletedRetentionMs: 10 * 60_000,
  retryInitialMs: 500,
  retryMaxMs: 30_000,
  initialListTimeoutMs: 5_000,
  watchTimeoutMinSeconds: 300,
  watchStallMarginMs: 30_000,
};

export class PodMetadata {
  private readonly byUid = new Map<string, PodRecord>();
  private readonly byContainer = new Map<string, PodRecord>();
  private readonly options: PodMetadataOptions & typeof DEFAULTS;
  private informer: ListWatch<V1Pod> | undefined;
  private retryMs: number;
  private retryTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly counters = { lists: 0, watches: 0, errors: 0, watchStalls: 0 };
  /** Open watch requests, aborted on stop(): ListWatch only remembers the last one it was handed, which a stalled one can overwrite. */
  private readonly openWatches = new Set<AbortController>();
  private reachable = false;
  private firstList: (() => void) | undefined;

  private constructor(options: PodMetadataOptions) {
    this.options = { ...DEFAULTS, ...options };
    this.retryMs = this.options.retryInitialMs;
  }

  /** Starts watching; resolves after the first list, or after initialListTimeoutMs if the API does not answer (it keeps trying). */
  static async start(options: PodMetadataOptions): Promise<PodMetadata> {
    const metadata = new PodMetadata(options);
    await metadata.begin();
    return metadata;
  }

  lookup(containerId: string | undefined, podUid: string | undefined): PodLookup | undefined {
    if (containerId !== undefined) {
      const pod = this.byContainer.get(containerId);
      if (pod) return { pod, container: pod.containers.get(containerId) };
    }
    if (podUid !== undefined) {
      const pod = this.byUid.get(podUid);
      if (pod) return { pod };
    }
    return undefined;
  }

  stats(): PodWatchStats {
    let deleted = 0;
    for (const pod of this.byUid.values()) if (pod.deletedAtMs !== undefined) deleted++;
    return { ...this.counters, reachable: this.reachable, pods: this.byUid.size - deleted, deletedPodsKept: deleted };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    await this.informer?.stop();
    for (const controller of this.openWatches) controller.abort();
    this.openWatches.clear();
  }

  private async begin(): Promise<void> {
    const k8s = await import('@kubernetes/client-node');
    const kubeConfig = this.options.kubeConfig ?? defaultKubeConfig(new k8s.KubeConfig());
    const api = kubeConfig.makeApiClient(k8s.CoreV1Api);
    const fieldSelector = `spec.nodeName=${this.options.nodeName}`;
    const list = async () => {
      this.counters.lists++;
      const result = await api.listPodForAllNamespaces({ fieldSelector });
      this.connected();
      // Pods gone while we were not watching (ListWatch reports those it
      // knew of; this also covers pods from before a restart of the client).
      const listed = new Set(result.items.map((pod) => pod.metadata?.uid));
      for (const [uid, record] of this.byUid) if (!listed.has(uid) && record.deletedAtMs === undefined) record.deletedAtMs = Date.now();
      this.firstList?.();
      return result;
    };
    // The watch as the client makes it, with three additions. It is told
    // when a connection is up (the client only says when one ends): after an
    // outage with no pod changes, that is the only sign the API is back. It
    // asks the server to end the watch after a bounded time and to send
    // bookmarks, so a healthy watch is never silent for longer than that.
    // And a watchdog: the client never notices a connection that goes silent
    // without closing (a partition without FIN/RST: the socket just waits),
    // so a watch with no event or bookmark for timeoutSeconds plus a margin
    // is aborted and ended as a normal close, which makes ListWatch watch
    // again from its last resource version (re-listing if the server says 410).
    const watch = new k8s.Watch(kubeConfig);
    const openWatch = watch.watch.bind(watch);
    watch.watch = async (path, query, callback, done) => {
      const timeoutSeconds = Math.max(1, Math.round(this.options.watchTimeoutMinSeconds * (1 + Math.random())));
      const stallMs = timeoutSeconds * 1000 + this.options.watchStallMarginMs;
      let finished = false;
      let stalled = false;
      let failedAtOnce = false;
      // Set once the client hands the request's controller back (after the response headers).
      const request: { controller?: AbortController } = {};
      let timer: NodeJS.Timeout | undefined;
      const finish = (error: unknown): void => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        if (request.controller) this.openWatches.delete(request.controller);
        done(error);
      };
      const arm = (): void => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          if (finished || this.stopped) return;
          stalled = true;
          this.counters.watchStalls++;
          this.options.onWarning?.(`Kubernetes pod watch silent for ${stallMs} ms (asked to end after ${timeoutSeconds} s): aborted, watching again`);
          request.controller?.abort();
          finish(null);
        }, stallMs);
        timer.unref();
      };
      arm(); // from the request on: a stall before the response headers counts too
      const controller = await openWatch(
        path,
        { ...query, timeoutSeconds, allowWatchBookmarks: true },
        (phase, object, event) => {
          if (finished) return; // lines still buffered from an aborted watch
          arm();
          callback(phase, object, event);
        },
        // The abort makes the client report an error; the watchdog has already ended this watch.
        (error) => {
          if (error && !request.controller) failedAtOnce = true;
          finish(error);
        },
      );
      request.controller = controller;
      if (stalled) controller.abort();
      else if (!finished) this.openWatches.add(controller);
      if (!stalled && !failedAtOnce) this.connected();
      return controller;
    };
    const informer = new k8s.ListWatch<V1Pod>('/api/v1/pods', watch, list, false, undefined, fieldSelector);
    this.informer = informer;
    informer.on('add', (pod) => this.upsert(pod));
    informer.on('update', (pod) => this.upsert(pod));
    informer.on('delete', (pod) => this.markDeleted(pod));
    informer.on('connect', () => {
      this.counters.watches++;
    });
    informer.on('error', (error) => this.failed(error));
    const listed = new Promise<void>((resolve) => {
      this.firstList = resolve;
      setTimeout(resolve, this.options.initialListTimeoutMs).unref();
    });
    void informer.start();
    await listed;
    this.firstList = undefined;
  }

  private connected(): void {
    this.reachable = true;
    this.retryMs = this.options.retryInitialMs;
  }

  private failed(error: unknown): void {
    this.counters.errors++;
    this.reachable = false;
    this.options.onError?.(describeError(error));
    if (this.stopped) return;
    // ListWatch stops after an error (a cut connection, refused, 5xx):
    // start it again after a backoff. It resumes watching from the last
    // resource version; the server answers 410 if that is too old, and the
    // client re-lists.
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      if (!this.stopped) void this.informer?.start();
    }, this.retryMs);
    this.retryTimer.unref();
    this.retryMs = Math.min(this.retryMs * 2, this.options.retryMaxMs);
  }

  private upsert(pod: V1Pod): void {
    const uid = pod.metadata?.uid;
    if (uid === undefined) return;
    const record = podRecord(pod, uid);
    const previous = this.byUid.get(uid);
    // Container ids stay answered after a restart replaced them: a process of
    // the old container may still be running (and is still this pod's).
    if (previous) for (const [id, name] of previous.containers) if (!record.containers.has(id)) record.containers.set(id, name);
    this.byUid.set(uid, record);
    for (const id of record.containers.keys()) this.byContainer.set(id, record);
    this.expireDeleted();
    this.options.onChange?.();
  }

  private markDeleted(pod: V1Pod): void {
    const uid = pod.metadata?.uid;
    const record = uid === undefined ? undefined : this.byUid.get(uid);
    if (record && record.deletedAtMs === undefined) record.deletedAtMs = Date.now();
    this.expireDeleted();
    this.options.onChange?.();
  }

  private expireDeleted(): void {
    const cutoff = Date.now() - this.options.deletedRetentionMs;
    for (const [uid, record] of this.byUid) {
      if (record.deletedAtMs === undefined || record.deletedAtMs > cutoff) continue;
      this.byUid.delete(uid);
      for (const id of record.containers.keys()) if (this.byContainer.get(id) === record) this.byContainer.delete(id);
    }
  }
}

function defaultKubeConfig(config: KubeConfig): KubeConfig {
  if (process.env.KUBERNETES_SERVICE_HOST) config.loadFromCluster();
  else config.loadFromDefault();
  return config;
}

function podRecord(pod: V1Pod, uid: string): PodRecord {
  const metadata = pod.metadata ?? {};
  const labels = metadata.labels ?? {};
  const containers = new Map<string, string>();
  const status = pod.status ?? {};
  for (const statuses of [status.containerStatuses, status.initContainerStatuses, status.ephemeralContainerStatuses]) {
    for (const container of statuses ?? []) {
      const id = stripRuntimeScheme(container.containerID);
      if (id !== undefined) containers.set(id, container.name);
    }
  }
  return {
    uid,
    namespace: metadata.namespace ?? '',
    name: metadata.name ?? '',
    serviceName: labels['app.kubernetes.io/name'] ?? labels['app'] ?? ownerName(pod) ?? metadata.name ?? '',
    containers,
  };
}

/** The owning workload: a ReplicaSet's name less its pod-template-hash is its Deployment's. */
function ownerName(pod: V1Pod): string | undefined {
  const owner = pod.metadata?.ownerReferences?.find((reference) => reference.controller) ?? pod.metadata?.ownerReferences?.[0];
  if (!owner) return undefined;
  const hash = pod.metadata?.labels?.['pod-template-hash'];
  if (owner.kind === 'ReplicaSet' && hash !== undefined && owner.name.endsWith(`-${hash}`)) return owner.name.slice(0, -hash.length - 1);
  return owner.name;
}

/** "containerd://<id>", "cri-o://<id>", "docker://<id>" -> "<id>". */
export function stripRuntimeScheme(containerId: string | undefined): string | undefined {
  if (!containerId) return undefined;
  const at = containerId.indexOf('://');
  return at < 0 ? containerId : containerId.slice(at + 3);
}

function describeError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown; statusCode?: unknown }).statusCode ?? (error as { code?: unknown }).code;
    return code !== undefined ? `${error.message} (${String(code)})` : error.message;
  }
  return String(error);
}
