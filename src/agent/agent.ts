import { createServer, type Server } from 'node:http';
import { hostname } from 'node:os';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { CpuProfileBuilder } from '../profile/builder.js';
import { createPrometheusMetrics, type PrometheusMetrics } from '../telemetry/prometheus.js';
import { DROP_STATS, UNWIND_OUTCOME_STATS } from '../sampler/bpf-layout.js';
import { Collector, type CollectResult, type UnwindMode } from './collector.js';
import { Shipper } from './shipper.js';
import { DiskSpool } from './spool.js';

export interface AgentOptions {
  serverUrl: string;
  ingestToken?: string;
  /** How often one profile per series is pushed. */
  intervalMs?: number;
  frequencyHz?: number;
  /** Static labels added to every series (--label k=v). */
  labels?: Record<string, string>;
  /** The node label; the host name by default. */
  nodeName?: string;
  spoolDir: string;
  spoolMaxBytes?: number;
  filterTgid?: number;
  /** How user stacks are walked (default 'fp'); 'dwarf' loads .eh_frame tables into the kernel. */
  unwind?: UnwindMode;
  unwindTableBudgetBytes?: number;
  /** Serve Prometheus metrics on this port (0: any free port; undefined: off). */
  metricsPort?: number;
  metricsHost?: string;
  onError?: (error: unknown) => void;
  /** Called for every profile handed to the shipper, with its sample count. */
  onProfile?: (labels: Record<string, string>, sampleCount: number) => void;
}

/**
 * `fleetprof agent`: the sampler running continuously. Every interval it
 * turns what was sampled into one pprof per series (node + process name) and
 * hands them to the shipper, which spools them until the server has them.
 */
export class Agent {
  readonly collector: Collector;
  readonly shipper: Shipper;
  readonly spool: DiskSpool;
  private readonly options: Required<Pick<AgentOptions, 'intervalMs' | 'frequencyHz' | 'nodeName'>> & AgentOptions;
  private readonly metrics: PrometheusMetrics;
  private readonly timer: NodeJS.Timeout;
  private metricsServer: Server | undefined;
  private intervalStartNs: bigint;
  private cycle: Promise<void> = Promise.resolve();
  private readonly samplesCounter;
  private readonly droppedCounter;
  private readonly userStacksCounter;

  private constructor(options: AgentOptions) {
    this.options = { intervalMs: 10_000, frequencyHz: 19, nodeName: hostname(), ...options };
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
    meter.createObservableCounter('fleetprof_agent_spool_dropped_profiles', { description: 'profiles dropped because the spool was full' }).addCallback((result) => {
      result.observe(this.spool.stats().droppedProfiles);
    });
    this.shipper = new Shipper({
      serverUrl: options.serverUrl,
      ingestToken: options.ingestToken,
      spool: this.spool,
      onPush: ({ ok, latencyMs }) => {
        pushLatency.record(latencyMs);
        if (!ok) pushFailures.add(1);
      },
    });
    this.userStacksCounter = meter.createCounter('fleetprof_agent_user_stacks', {
      description: 'user stacks walked with unwind tables (--unwind dwarf), by how the walk ended',
    });
    this.collector = Collector.start({
      frequencyHz: this.options.frequencyHz,
      filterTgid: options.filterTgid,
      unwind: options.unwind,
      unwindTableBudgetBytes: options.unwindTableBudgetBytes,
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
    meter.createObservableCounter('fleetprof_agent_unwind_files_over_budget', { description: 'files that did not fit in the unwind table budget (unwound with frame pointers)' }).addCallback((result) => {
      const stats = this.collector.unwindStats();
      if (stats) result.observe(stats.filesOverBudget);
    });
    this.intervalStartNs = nowNs();
    this.timer = setInterval(() => {
      this.cycle = this.cycle.then(() => this.collectAndShip(false)).catch((error: unknown) => this.options.onError?.(error));
    }, this.options.intervalMs);
    // The spool may hold a backlog from a previous run.
    this.shipper.kick();
  }

  static async start(options: AgentOptions): Promise<Agent> {
    const agent = new Agent(options);
    if (options.metricsPort !== undefined) await agent.serveMetrics(options.metricsPort, options.metricsHost ?? '127.0.0.1');
    return agent;
  }

  get metricsUrl(): string | undefined {
    const address = this.metricsServer?.address() as AddressInfo | null | undefined;
    return address ? `http://${address.address}:${address.port}/metrics` : undefined;
  }

  renderMetrics(): Promise<string> {
    return this.metrics.render();
  }

  /** Pushes what was sampled since the last interval, then stops sampling. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.cycle;
    await this.collectAndShip(true);
    await this.shipper.flush();
    await this.shipper.stop();
    this.metricsServer?.close();
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
    const periodNs = Math.round(1e9 / this.options.frequencyHz);
    const builders = new Map<string, CpuProfileBuilder>();
    for (const sample of result.samples) {
      const series = sample.labels.processName ?? sample.labels.comm;
      let builder = builders.get(series);
      if (!builder) {
        builder = new CpuProfileBuilder({ periodNs, startTimeNs: startNs, durationNs: endNs - startNs });
        builders.set(series, builder);
      }
      builder.addSample(sample.frames, sample.count, sample.labels);
      this.samplesCounter.add(sample.count);
    }
    for (const [comm, builder] of builders) {
      const labels = { ...this.options.labels, node: this.options.nodeName, comm };
      this.shipper.enqueue(labels, gzipSync(builder.encode()));
      this.options.onProfile?.(labels, builder.sampleCount);
    }
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
    await once(this.metricsServer, 'listening');
  }
}

function nowNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}
