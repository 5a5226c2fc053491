import { createServer, type Server } from 'node:http';
import { hostname } from 'node:os';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { CpuProfileBuilder } from '../profile/builder.js';
import { PushIdentityCache } from '../profile/push-identity-cache.js';
import { createPrometheusMetrics, type PrometheusMetrics } from '../telemetry/prometheus.js';
import { DROP_STATS, UNWIND_OUTCOME_STATS } from '../sampler/bpf-layout.js';
import { Collector, type CollectResult, type UnwindMode } from './collector.js';
import type { TableCacheOptions } from '../unwind/table-cache.js';
import { madeOnce, Shipper, type ShipperTlsOptions, type SpoolWhen } from './shipper.js';
import type { Attribution, AttributionOptions } from '../attribution/attribution.js';
import { labelsKey } from '../attribution/labels.js';
import { startWithAttribution } from './start-attribution.js';
import { DiskSpool } from './spool.js';
import { BYTES_PER_CACHED_FRAME, cacheLimits, resolveMemoryBudgetMb } from './memory-budget.js';

export interface AgentOptions {
  serverUrl: string;
  ingestToken?: string;
  /** Private CA and client certificate for an https server. */
  tls?: ShipperTlsOptions;
  /** How often one profile per series is pushed. */
  intervalMs?: number;
  frequencyHz?: number;
  /** Static labels added to every series (--label k=v). */
  labels?: Record<string, string>;
  /** The node label; the host name by default. */
  nodeName?: string;
  spoolDir: string;
  spoolMaxBytes?: number;
  /** When profiles are written to the spool (Shipper's SpoolWhen); default 'failure' (no disk write per interval while the server answers). */
  spoolWhen?: SpoolWhen;
  filterTgid?: number;
  /** Memory budget in MiB for the agent's caches (see memory-budget.ts); default from the container's limit. */
  memoryBudgetMb?: number;
  /** How user stacks are walked (default 'fp'); 'dwarf' loads .eh_frame tables into the kernel. */
  unwind?: UnwindMode;
  unwindTableBudgetBytes?: number;
  /** With unwind 'dwarf': where built tables are kept between runs (undefined: not kept). */
  unwindTableCache?: TableCacheOptions;
  /** Serve Prometheus metrics on this port (0: any free port; undefined: off). The CLI defaults to DEFAULT_AGENT_METRICS_PORT. */
  metricsPort?: number;
  metricsHost?: string;
  onError?: (error: unknown) => void;
  /** --include/--exclude and the Kubernetes API for pod labels (container ids come from cgroups regardless). */
  attribution?: Pick<AttributionOptions, 'selection' | 'kubernetes' | 'cgroupRefreshMs'>;
  /** What the agent cannot see (hidden kernel addresses, API unreachable, ...), one line each, also counted in /metrics. */
  onWarning?: (message: string) => void;
  /** Called for every profile handed to the shipper, with its sample count and a function that gives its pprof (uncompressed; made on the first call). */
  onProfile?: (labels: Record<string, string>, sampleCount: number, pprof: () => Buffer) => void;
  /**
   * Lean pushes (stacks the server holds go by content id, src/profile/push-format.ts) when the server takes them.
   * Default true: they cut the server's CPU per profile to ~0.45x and, made from the builder (identities kept
   * across intervals) with the pprof encoded only when a push fails (spool 'failure'), cost the agent about what
   * pushing the pprof does (an A/B of two agents on one host: 0.89-1.17x; docs/benchmarks.md).
   */
  leanPush?: boolean;
}

/** The agent's /metrics port unless told otherwise (the Prometheus exporter default, as in deploy/kubernetes). */
export const DEFAULT_AGENT_METRICS_PORT = 9464;

/**
 * On stop, how long the last interval and the backlog get to reach the
 * server. What has not gone by then stays in the spool for the next start:
 * a DaemonSet pod must end well within its grace period whatever the server does.
 */
const STOP_FLUSH_MS = 1000;

/**
 * `fleetprof agent`: the sampler running continuously. Every interval it
 * turns what was sampled into one pprof per series (node + process name) and
 * hands them to the shipper, which spools them until the server has them.
 */
export class Agent {
  readonly collector: Collector;
  readonly shipper: Shipper;
  readonly spool: DiskSpool;
  readonly attribution: Attribution;
  /** With lean pushes: fleet-wide ids of functions and mappings, kept across intervals (bounded by the memory budget). */
  readonly identities: PushIdentityCache | undefined;
  private readonly options: Required<Pick<AgentOptions, 'intervalMs' | 'frequencyHz' | 'nodeName'>> & AgentOptions;
  private readonly metrics: PrometheusMetrics;
  private readonly timer: NodeJS.Timeout;
  private metricsServer: Server | undefined;
  private intervalStartNs: bigint;
  private cycle: Promise<void> = Promise.resolve();
  /** The budget the caches were sized from, in MiB. */
  readonly memoryBudgetMb: number;
  private readonly samplesCounter;
  private readonly droppedCounter;
  private readonly userStacksCounter;
  private readonly tablePendingCounter;

  private constructor(options: AgentOptions, attribution: Attribution, kernelSymbolsHidden: boolean) {
    this.options = { intervalMs: 10_000, frequencyHz: 19, nodeName: hostname(), ...options };
    this.attribution = attribution;
    this.metrics = createPrometheusMetrics('fleetprof-agent');
    const meter = this.metrics.meter;
    this.samplesCounter = meter.createCounter('fleetprof_agent_samples', { description: 'CPU samples taken and counted' });
    this.droppedCounter = meter.createCounter('fleetprof_agent_samples_dropped', { description: 'samples (or their stacks) lost in the kernel, by reason' });
    const pushLatency = meter.createHistogram('fleetprof_agent_push_duration', { unit: 'ms', description: 'latency of profile pushes' });
    const pushFailures = meter.createCounter('fleetprof_agent_push_failures', { description: 'failed profile pushes' });
    this.spool = new DiskSpool(options.spoolDir, options.spoolMaxBytes ?? 256 * 1024 * 1024);
    meter.createObservableGauge('fleetprof_agent_spool_bytes', { unit: 'By', description: 'bytes waiting in the spool' }).addCallback((result) => {
      result.observe(this.spool.stats().bytes);
    });
    // Pushes by format: `push` (lean: stacks the server holds by id) or `pprof` (the whole profile: an old server, or lean pushes off).
    meter.createObservableCounter('fleetprof_agent_pushes', { description: 'profile pushes acknowledged by the server, by format (push: lean, pprof: full)' }).addCallback((result) => {
      result.observe(this.shipper.leanPushes, { format: 'push' });
      result.observe(this.shipper.fullPushes, { format: 'pprof' });
    });
    meter.createObservableCounter('fleetprof_agent_push_bytes', { unit: 'By', description: 'bytes of acknowledged pushes as sent, by format' }).addCallback((result) => {
      result.observe(this.shipper.leanBytes, { format: 'push' });
      result.observe(this.shipper.fullBytes, { format: 'pprof' });
    });
    meter.createObservableCounter('fleetprof_agent_push_stacks', { description: 'in acknowledged lean pushes: stacks defined in full, and samples that referenced a stack by id' }).addCallback((result) => {
      result.observe(this.shipper.stacksDefined, { how: 'defined' });
      result.observe(this.shipper.samplesByReference, { how: 'referenced' });
    });
    meter.createObservableCounter('fleetprof_agent_push_stacks_resent', {
      description: 'stack definitions sent again because the server answered that it does not hold them (never had them, or collected them)',
    }).addCallback((result) => {
      result.observe(this.shipper.stacksResent);
    });
    meter.createObservableGauge('fleetprof_agent_profiles_held', { description: 'profiles waiting for the server in memory, not in the spool (--spool failure)' }).addCallback((result) => {
      result.observe(this.shipper.heldProfiles);
    });
    meter.createObservableCounter('fleetprof_agent_profiles_held_spooled', { description: 'profiles written to the spool after waiting in memory: their push failed, too many waited, or the agent stopped (--spool failure)' }).addCallback((result) => {
      result.observe(this.shipper.heldSpooled);
    });
    meter.createObservableCounter('fleetprof_agent_spool_dropped_profiles', { description: 'profiles dropped because the spool was full' }).addCallback((result) => {
      result.observe(this.spool.stats().droppedProfiles);
    });
    this.shipper = new Shipper({
      serverUrl: options.serverUrl,
      ingestToken: options.ingestToken,
      tls: options.tls,
      spool: this.spool,
      lean: options.leanPush ?? true,
      spoolWhen: options.spoolWhen ?? 'failure',
      onPush: ({ ok, latencyMs, status }) => {
        pushLatency.record(latencyMs);
        // A 409 is the lean push's "define these stacks" (answered at once, counted in fleetprof_agent_push_stacks_resent), not a failure.
        if (!ok && status !== 409) pushFailures.add(1);
      },
    });
    this.observeVisibility(kernelSymbolsHidden);
    this.memoryBudgetMb = resolveMemoryBudgetMb(options.memoryBudgetMb);
    const limits = cacheLimits(this.memoryBudgetMb);
    // Lean pushes are made from the builders, with function and mapping ids kept across intervals.
    this.identities = options.leanPush !== false ? new PushIdentityCache({ maxEntries: limits.maxPushIdentities }) : undefined;
    this.collector = Collector.start({
      frequencyHz: this.options.frequencyHz,
      filterTgid: options.filterTgid,
      limits,
      unwind: options.unwind,
      unwindTableBudgetBytes: options.unwindTableBudgetBytes,
      unwindTableCache: options.unwindTableCache,
      ...attribution.collectorHooks,
    });
    meter.createObservableGauge('fleetprof_agent_memory_budget_bytes', { unit: 'By', description: 'the memory budget the caches are sized from' }).addCallback((result) => {
      result.observe(this.memoryBudgetMb * 2 ** 20);
    });
    meter.createObservableGauge('fleetprof_agent_resident_memory_bytes', { unit: 'By', description: 'resident set size of the agent process' }).addCallback((result) => {
      result.observe(process.memoryUsage.rss());
    });
    meter.createObservableCounter('fleetprof_agent_cache_evictions', { description: 'cache entries dropped to stay within the memory budget, by cache' }).addCallback((result) => {
      const s = this.collector.symbolizer.stats();
      result.observe(s.binaryCacheEvictions, { cache: 'binaries' });
      result.observe(s.perfMapEvictions, { cache: 'perf_maps' });
      result.observe(s.frameCacheEvictions, { cache: 'frames' });
      result.observe(this.collector.evictions.processes, { cache: 'processes' });
      result.observe(this.collector.evictions.stacks, { cache: 'stacks' });
      if (this.identities) result.observe(this.identities.evictions, { cache: 'push_identities' });
    });
    meter.createObservableGauge('fleetprof_agent_cache_bytes', { unit: 'By', description: 'estimated bytes held by a cache' }).addCallback((result) => {
      const s = this.collector.symbolizer.stats();
      result.observe(s.binaryCacheBytes, { cache: 'binaries' });
      result.observe(s.perfMapBytes, { cache: 'perf_maps' });
      result.observe(s.cachedFrames * BYTES_PER_CACHED_FRAME, { cache: 'frames' });
      if (this.identities) result.observe(this.identities.bytes, { cache: 'push_identities' });
    });
    meter.createObservableCounter('fleetprof_agent_stale_perf_maps', { description: 'perf map files ignored as older than their process (left by an earlier process with the same pid)' }).addCallback((result) => {
      result.observe(this.collector.symbolizer.stats().stalePerfMaps);
    });
    this.userStacksCounter = meter.createCounter('fleetprof_agent_user_stacks', {
      description: 'user stacks walked with unwind tables (--unwind dwarf), by how the walk ended',
    });
    this.tablePendingCounter = meter.createCounter('fleetprof_agent_unwind_table_pending_stacks', {
      description: 'user stacks walked with frame pointers in a file whose unwind table was still being built',
    });
    meter.createObservableGauge('fleetprof_agent_unwind_table_bytes', { unit: 'By', description: 'bytes of unwind tables loaded into BPF maps' }).addCallback((result) => {
      const stats = this.collector.unwindStats();
      if (stats) result.observe(stats.tableBytes);
    });
    meter.createObservableGauge('fleetprof_agent_unwind_locked_map_bytes', { unit: 'By', description: 'memory the unwind maps lock (kernel memlock)' }).addCallback((result) => {
      const stats = this.collector.unwindStats();
      if (stats) result.observe(stats.lockedMapBytes);
    });
    meter.createObservableGauge('fleetprof_agent_unwind_files', { description: 'files whose unwind table is loaded' }).addCallback((result) => {
      const stats = this.collector.unwindStats();
      if (stats) result.observe(stats.files);
    });
    meter.createObservableGauge('fleetprof_agent_unwind_files_deferred', { description: 'files mapped by loaded processes whose unwind table no walk has needed yet (not built)' }).addCallback((result) => {
      const stats = this.collector.unwindStats();
      if (stats) result.observe(stats.filesDeferred);
    });
    meter.createObservableCounter('fleetprof_agent_unwind_files_over_budget', { description: 'files that did not fit in the unwind table budget (unwound with frame pointers)' }).addCallback((result) => {
      const stats = this.collector.unwindStats();
      if (stats) result.observe(stats.filesOverBudget);
    });
    meter.createObservableCounter('fleetprof_agent_unwind_table_cache', { description: 'unwind tables by what the persistent table cache did: read from it, built (not in it), corrupt (deleted and built again), not written' }).addCallback((result) => {
      const cache = this.collector.unwindStats()?.cache;
      if (cache === undefined || !cache.enabled) return;
      result.observe(cache.hits, { outcome: 'read' });
      result.observe(cache.misses, { outcome: 'built' });
      result.observe(cache.corrupt, { outcome: 'corrupt' });
      result.observe(cache.writeErrors, { outcome: 'not_written' });
    });
    this.intervalStartNs = nowNs();
    this.timer = setInterval(() => {
      this.cycle = this.cycle.then(() => this.collectAndShip(false)).catch((error: unknown) => this.options.onError?.(error));
    }, this.options.intervalMs);
    // The spool may hold a backlog from a previous run.
    this.shipper.kick();
  }

  static async start(options: AgentOptions): Promise<Agent> {
    const onWarning = options.onWarning ?? (() => {});
    const { built: agent } = await startWithAttribution(options.attribution, onWarning, (attribution, kernelSymbolsHidden) => new Agent(options, attribution, kernelSymbolsHidden));
    if (options.metricsPort !== undefined) {
      const host = options.metricsHost ?? '127.0.0.1';
      try {
        await agent.serveMetrics(options.metricsPort, host);
      } catch (error) {
        await agent.stop();
        throw new Error(`cannot serve /metrics on ${host}:${options.metricsPort} (${error instanceof Error ? error.message : String(error)}); choose another --metrics-port, or "off"`);
      }
    }
    return agent;
  }

  get metricsUrl(): string | undefined {
    const address = this.metricsServer?.address() as AddressInfo | null | undefined;
    return address ? `http://${address.address}:${address.port}/metrics` : undefined;
  }

  renderMetrics(): Promise<string> {
    return this.metrics.render();
  }

  /**
   * Stops sampling, spools what was sampled since the last interval, and
   * gives the server `flushTimeoutMs` (default STOP_FLUSH_MS) to take the
   * backlog; whatever it has not acknowledged by then stays in the spool.
   * Ends about that soon whatever the server does (pushes in flight are aborted).
   */
  async stop(flushTimeoutMs = STOP_FLUSH_MS): Promise<void> {
    clearInterval(this.timer);
    await this.cycle;
    this.attribution.freezeKernelCounters();
    await this.collectAndShip(true);
    await this.attribution.stop();
    await this.shipper.flush(flushTimeoutMs);
    await this.shipper.stop();
    if (this.metricsServer?.listening) this.metricsServer.close();
    await this.metrics.shutdown();
  }

  private async collectAndShip(final: boolean): Promise<void> {
    const result = final ? await this.collector.stop() : await this.collector.collect();
    const endNs = nowNs();
    this.ship(result, this.intervalStartNs, endNs);
    this.intervalStartNs = endNs;
  }

  private ship(result: CollectResult, startNs: bigint, endNs: bigint): void {
    for (const name of DROP_STATS) if (result.kernelStats[name] > 0) this.droppedCounter.add(result.kernelStats[name], { reason: name });
    for (const name of UNWIND_OUTCOME_STATS) if (result.kernelStats[name] > 0) this.userStacksCounter.add(result.kernelStats[name], { outcome: name.replace(/^unwind/, '') });
    if (result.kernelStats.unwindTablePending > 0) this.tablePendingCounter.add(result.kernelStats.unwindTablePending);
    const periodNs = Math.round(1e9 / this.options.frequencyHz);
    // One series per process name and place (container, pod, unit): a flame graph narrows to a pod or namespace.
    const builders = new Map<string, { builder: CpuProfileBuilder; labels: Record<string, string> }>();
    for (const sample of this.attribution.apply(result.samples)) {
      const comm = sample.labels.processName ?? sample.labels.comm;
      const place = sample.labels.attribution ?? {};
      const series = `${comm}\u0000${labelsKey(place)}`;
      let entry = builders.get(series);
      if (!entry) {
        const labels: Record<string, string> = { ...this.options.labels, node: this.options.nodeName, comm };
        for (const [name, value] of Object.entries(place)) if (value !== undefined) labels[name] = value;
        entry = { builder: new CpuProfileBuilder({ periodNs, startTimeNs: startNs, durationNs: endNs - startNs, identities: this.identities }), labels };
        builders.set(series, entry);
      }
      const builder = entry.builder;
      builder.addSample(sample.frames, sample.count, sample.labels);
      this.samplesCounter.add(sample.count);
    }
    for (const { builder, labels } of builders.values()) {
      // The pprof is made when something asks for it: the spool, a push as
      // pprof, onProfile. A lean push acknowledged from memory (spool
      // 'failure') never needs it, so the interval costs no pprof encoding.
      const makePprof = madeOnce(() => {
        const encoded = builder.encode();
        return Buffer.from(encoded.buffer, encoded.byteOffset, encoded.byteLength);
      });
      // With lean pushes: the builder's lean form (ids from this.identities) spares the shipper decoding and hashing the pprof.
      this.shipper.enqueue(labels, makePprof, this.identities ? builder.buildLean() : undefined);
      this.options.onProfile?.(labels, builder.sampleCount, makePprof);
    }
  }

  /** What the agent cannot see, as metrics (each also said once at start or when it happens). */
  private observeVisibility(kernelSymbolsHidden: boolean): void {
    const meter = this.metrics.meter;
    meter.createObservableGauge('fleetprof_agent_kernel_symbols_hidden', { description: '1 when /proc/kallsyms reads as zeros (kptr_restrict, no CAP_SYSLOG): kernel frames unnamed' }).addCallback((result) => {
      result.observe(kernelSymbolsHidden ? 1 : 0);
    });
    meter.createObservableCounter('fleetprof_agent_proc_root_unreadable', { description: 'processes whose /proc/PID/root could not be followed (their binaries may not resolve)' }).addCallback((result) => {
      result.observe(this.attribution.stats().procRootUnreadable);
    });
    meter.createObservableCounter('fleetprof_agent_cgroup_unreadable', { description: 'processes gone before their cgroup was read (unattributed)' }).addCallback((result) => {
      result.observe(this.attribution.stats().cgroupUnreadable);
    });
    meter.createObservableCounter('fleetprof_agent_samples_filtered', { description: 'samples dropped by --include/--exclude, by where' }).addCallback((result) => {
      const stats = this.attribution.stats();
      result.observe(stats.kernelFilteredSamples, { where: 'kernel' });
      result.observe(stats.userFilteredSamples, { where: 'user' });
    });
    meter.createObservableGauge('fleetprof_agent_cgroup_filter_cgroups', { description: 'cgroup ids in the kernel filter set' }).addCallback((result) => {
      result.observe(this.attribution.stats().kernelFilterCgroups);
    });
    meter.createObservableCounter('fleetprof_agent_kubernetes_api_errors', { description: 'failed pod lists or watches (API server unreachable, 5xx, 403)' }).addCallback((result) => {
      const kubernetes = this.attribution.stats().kubernetes;
      if (kubernetes) result.observe(kubernetes.errors);
    });
    meter.createObservableGauge('fleetprof_agent_kubernetes_api_reachable', { description: '1 while the pod watch works, 0 while the API is unreachable' }).addCallback((result) => {
      const kubernetes = this.attribution.stats().kubernetes;
      if (kubernetes) result.observe(kubernetes.reachable ? 1 : 0);
    });
    meter.createObservableCounter('fleetprof_agent_kubernetes_watch_stalls', { description: 'pod watches silent past their timeout (a partition without FIN/RST), aborted and watched again' }).addCallback((result) => {
      const kubernetes = this.attribution.stats().kubernetes;
      if (kubernetes) result.observe(kubernetes.watchStalls);
    });
    meter.createObservableCounter('fleetprof_agent_kubernetes_pod_lists', { description: 'full pod lists (start, 410 Gone, restarts)' }).addCallback((result) => {
      const kubernetes = this.attribution.stats().kubernetes;
      if (kubernetes) result.observe(kubernetes.lists);
    });
  }

  private async serveMetrics(port: number, host: string): Promise<void> {
    this.metricsServer = createServer((request, response) => {
      if (request.url !== '/metrics') {
        response.writeHead(404).end('not found\n');
        return;
      }
      this.metrics.render().then(
        (text) => response.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(text),
        (error: unknown) => response.writeHead(500).end(String(error)),
      );
    });
    this.metricsServer.listen(port, host);
    await once(this.metricsServer, 'listening'); // rejects on 'error' (e.g. the port is taken)
  }
}

function nowNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}
