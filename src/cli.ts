#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { Command, InvalidArgumentError, Option } from 'commander';
import { join } from 'node:path';
import type { ServerOptions } from '../server/index.js';
import { hostname } from 'node:os';
import { record, type RecordProgress } from './agent/record.js';
import { Selection } from './attribution/selection.js';
import { parseDurationMs } from './util/duration.js';
import { DEFAULT_COMMIT_LINGER_MS, DEFAULT_PG_COMMIT_LINGER_MS } from '../server/store/group-commit.js';
import { DEFAULT_UNWIND_CACHE_BYTES, DEFAULT_UNWIND_CACHE_DIR, type TableCacheOptions } from './unwind/table-cache.js';
import { packageRoot } from './util/package-root.js';

// The server (fastify, sqlite3) and the agent (OpenTelemetry) are loaded only
// by the commands that use them: `record` starts in a third of the time and
// memory without them (measured: 0.2 s CPU and 35 MB of module loading).
const loadServer = () => import('../server/index.js');
const loadAgent = async () => (await import('./agent/agent.js')).Agent;
/** Same as server/index.ts DEFAULT_PORT, kept here so --help needs no server import. */
const DEFAULT_SERVER_PORT = 4100;

function positiveNumber(name: string) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!Number.isFinite(parsed) || parsed <= 0) throw new InvalidArgumentError(`${name} must be a positive number`);
    return parsed;
  };
}

function positiveInteger(name: string) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!Number.isInteger(parsed) || parsed <= 0) throw new InvalidArgumentError(`${name} must be a positive integer`);
    return parsed;
  };
}

function nonNegativeNumber(name: string) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!Number.isFinite(parsed) || parsed < 0) throw new InvalidArgumentError(`${name} must be a number >= 0`);
    return parsed;
  };
}

/** --unwind-cache-dir / --unwind-cache-mb as the collector takes them (0 MB: no cache). */
function unwindCache(options: { unwindCacheDir: string; unwindCacheMb: number }): TableCacheOptions | undefined {
  return options.unwindCacheMb > 0 ? { dir: options.unwindCacheDir, maxBytes: Math.round(options.unwindCacheMb * 1024 * 1024) } : undefined;
}

function progressLine(progress: RecordProgress): string {
  const seconds = (ms: number): string => (ms / 1000).toFixed(0);
  return `recording ${seconds(progress.elapsedMs)}s/${seconds(progress.durationMs)}s  samples ${progress.samples}  processes ${progress.processes}  dropped ${progress.dropped}`;
}

function collectRepeated(value: string, previous: string[]): string[] {
  return [...previous, value];
}

interface AttributionCliOptions {
  include: string[];
  exclude: string[];
  kubeconfig?: string;
  node?: string;
}

/** --include/--exclude/--kubeconfig/--node, shared by record and agent. */
function withAttributionOptions(command: Command, withNode = true): Command {
  command
    .option('--include <selector>', 'profile only workloads matching, e.g. \'{namespace="shop",container!="istio-proxy"}\' (repeatable: any of them)', collectRepeated, [])
    .option('--exclude <selector>', 'do not profile workloads matching (repeatable); labels: namespace, pod, container, container_id, service_name, systemd_unit, comm', collectRepeated, [])
    .option('--kubeconfig <file>', 'pod labels from this cluster (default: in-cluster when KUBERNETES_SERVICE_HOST is set, else none)');
  return withNode ? command.option('--node <name>', 'this node\'s name (default: NODE_NAME, else the host name)') : command;
}

/** Parses the selectors and picks the pod metadata source: --kubeconfig, the in-cluster service account, or none. */
async function attributionFromCli(options: AttributionCliOptions) {
  let selection: Selection;
  try {
    selection = Selection.parse(options.include, options.exclude);
  } catch (error) {
    throw new InvalidArgumentError(error instanceof Error ? error.message : String(error));
  }
  const nodeName = options.node ?? process.env.NODE_NAME ?? hostname();
  let kubernetes;
  if (options.kubeconfig !== undefined || process.env.KUBERNETES_SERVICE_HOST) {
    const { KubeConfig } = await import('@kubernetes/client-node');
    const kubeConfig = new KubeConfig();
    if (options.kubeconfig !== undefined) kubeConfig.loadFromFile(options.kubeconfig);
    else kubeConfig.loadFromCluster();
    kubernetes = { nodeName, kubeConfig };
  }
  return { selection, kubernetes, nodeName };
}

const warn = (prefix: string) => (message: string) => process.stderr.write(`${prefix}: warning: ${message}\n`);

const program = new Command();
const { version } = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string };
program.name('fleetprof').description('Always-on, fleet-wide eBPF CPU profiler').version(version);

withAttributionOptions(program
  .command('record'))
  .description('sample every process on this host (or one process tree) and write a pprof profile')
  .option('-d, --duration <seconds>', 'how long to record', positiveNumber('--duration'), 10)
  .option('-F, --frequency <hz>', 'samples per second per CPU', positiveInteger('--frequency'), 99)
  .option('-p, --pid <pid>', 'only this process and its descendants', positiveInteger('--pid'))
  .option('-o, --output <file>', 'where to write the gzipped pprof', 'fleetprof.pb.gz')
  .option('--stats-json <file>', 'also write the run summary (samples, drops, symbolizer counters) as JSON')
  .option('--bpf-stats', "measure the BPF program's own run time per sample (kernel bpf stats)")
  .addOption(new Option('--unwind <mode>', 'walk user stacks with frame pointers, or with .eh_frame unwind tables in the kernel').choices(['fp', 'dwarf']).default('fp'))
  .option('--unwind-table-mb <mb>', 'with --unwind dwarf: memory the unwind tables may lock', positiveNumber('--unwind-table-mb'), 16)
  .option('--unwind-cache-dir <dir>', 'with --unwind dwarf: where built unwind tables are kept between runs', DEFAULT_UNWIND_CACHE_DIR)
  .option('--unwind-cache-mb <mb>', 'with --unwind dwarf: bound on --unwind-cache-dir (0: keep no tables)', nonNegativeNumber('--unwind-cache-mb'), DEFAULT_UNWIND_CACHE_BYTES / 1048576)
  .action(async (options: { duration: number; frequency: number; pid?: number; output: string; statsJson?: string; bpfStats?: boolean; unwind: 'fp' | 'dwarf'; unwindTableMb: number; unwindCacheDir: string; unwindCacheMb: number } & AttributionCliOptions) => {
    const live = process.stderr.isTTY;
    const { selection, kubernetes } = await attributionFromCli(options);
    const summary = await record({
      attribution: { selection, kubernetes },
      onWarning: warn('fleetprof record'),
      durationMs: options.duration * 1000,
      frequencyHz: options.frequency,
      pid: options.pid,
      outputPath: options.output,
      measureBpfRunTime: options.bpfStats === true,
      unwind: options.unwind,
      unwindTableBudgetBytes: Math.round(options.unwindTableMb * 1024 * 1024),
      unwindTableCache: unwindCache(options),
      onProgress: (progress) => {
        if (live) process.stderr.write(`\r${progressLine(progress)}\u001b[K`);
      },
    });
    if (live) process.stderr.write('\r\u001b[K');
    const drops = summary.droppedTotal === 0 ? 'none' : Object.entries(summary.drops).map(([k, v]) => `${k} ${v}`).join(', ');
    if (options.statsJson !== undefined) await writeFile(options.statsJson, JSON.stringify(summary, null, 2));
    const sym = summary.symbolizer;
    process.stderr.write(
      `wrote ${summary.outputPath}: ${summary.samples} samples from ${summary.processes} processes; ` +
        `kernel drops: ${drops}; unresolved frames: ${sym.unresolvedFrames}, vanished processes: ${sym.processesVanished}, unreadable binaries: ${sym.unreadableBinaries}\n`,
    );
    if (summary.unwind) {
      const outcomes = Object.entries(summary.unwind.outcomes).map(([k, v]) => `${k.replace(/^unwind/, '')} ${v}`).join(', ');
      const tables = summary.unwind.tables;
      process.stderr.write(
        `user stacks: ${outcomes} (frame pointers while a table was being built: ${summary.unwind.tablePending})` +
          (tables ? `; unwind tables: ${tables.files} files (${tables.filesDeferred} mapped but never reached by a walk: not built), ${(tables.tableBytes / 1048576).toFixed(1)} MiB in ${(tables.lockedMapBytes / 1048576).toFixed(1)} MiB of maps, over budget ${tables.filesOverBudget}` : '') +
          (tables?.cache.enabled ? `; table cache: ${tables.cache.hits} read, ${tables.cache.misses} built, ${tables.cache.corrupt} corrupt (rebuilt), ${tables.cache.writeErrors} not written` : '') +
          '\n',
      );
    }
    const attributed = summary.attribution;
    if (selection.active) {
      process.stderr.write(`filtered out: ${attributed.kernelFilteredSamples} samples in the kernel (${attributed.kernelFilterCgroups} cgroups listed), ${attributed.userFilteredSamples} in user space\n`);
    }
    if (attributed.procRootUnreadable > 0) process.stderr.write(`${attributed.procRootUnreadable} processes had an unreadable /proc/PID/root (no CAP_SYS_PTRACE over them?): their binaries may not resolve\n`);
    if (summary.bpfRunTime && summary.bpfRunTime.runCount > 0) {
      process.stderr.write(`BPF program: ${(summary.bpfRunTime.runTimeNs / summary.bpfRunTime.runCount).toFixed(0)} ns per sample over ${summary.bpfRunTime.runCount} runs\n`);
    }
  });

function collectLabel(value: string, previous: Record<string, string>): Record<string, string> {
  const at = value.indexOf('=');
  if (at <= 0) throw new InvalidArgumentError(`--label wants key=value, got "${value}"`);
  const key = value.slice(0, at);
  if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(key)) throw new InvalidArgumentError(`label name "${key}" must match [a-zA-Z_][a-zA-Z0-9_]*`);
  return { ...previous, [key]: value.slice(at + 1) };
}

/** The agent exits this soon after SIGTERM even if stopping hangs (profiles already spooled stay spooled). */
const AGENT_STOP_DEADLINE_MS = 1900;

function metricsPort(value: string): number | 'off' {
  if (value === 'off') return 'off';
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError('--metrics-port must be a port number or "off"');
  return port;
}

/**
 * Stops cleanly on SIGINT/SIGTERM (a DaemonSet pod gets SIGTERM): the last
 * interval is pushed. With a deadline, the process exits by then whatever
 * stop() is waiting for.
 */
function onShutdown(stop: () => Promise<void>, deadlineMs?: number, beforeForcedExit?: () => void): void {
  let stopping = false;
  const forcedExit = (): never => {
    beforeForcedExit?.();
    process.exit(1);
  };
  const handler = (signal: NodeJS.Signals): void => {
    if (stopping) forcedExit(); // a second signal: give up waiting
    stopping = true;
    process.stderr.write(`fleetprof: ${signal}, stopping\n`);
    if (deadlineMs !== undefined) {
      setTimeout(() => {
        process.stderr.write(`fleetprof: not stopped after ${deadlineMs} ms, exiting; unacknowledged profiles stay in the spool\n`);
        forcedExit();
      }, deadlineMs).unref();
    }
    stop().then(
      () => process.exit(0),
      (error: unknown) => {
        process.stderr.write(`fleetprof: ${error instanceof Error ? error.message : String(error)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

withAttributionOptions(program
  .command('agent'), false)
  .description('sample this host continuously and push one profile per process name every interval')
  .requiredOption('-s, --server <url>', 'the fleetprof server, e.g. http://profiler:4040')
  .option('-F, --frequency <hz>', 'samples per second per CPU', positiveInteger('--frequency'), 19)
  .option('-i, --interval <seconds>', 'push interval', positiveNumber('--interval'), 10)
  .option('-l, --label <key=value>', 'static label for every series (repeatable)', collectLabel, {})
  .option('--node <name>', 'node label (default: host name)')
  .option('--spool-dir <dir>', 'where unacknowledged profiles wait', '/var/lib/fleetprof/spool')
  .option('--spool-max-mb <mb>', 'spool size bound; the oldest profiles are dropped past it (counted)', positiveNumber('--spool-max-mb'), 256)
  .addOption(
    new Option('--spool <when>', 'always: every profile is written to the spool before its first push; failure: only when its push fails, and at shutdown (no disk write per interval while the server answers; a kill -9 loses the profiles in flight)')
      .choices(['always', 'failure'])
      .default('failure'),
  )
  .option('--ingest-token <token>', 'bearer token for the server (or FLEETPROF_INGEST_TOKEN)')
  .addOption(new Option('--push-format <format>', 'lean: stacks the server holds go by content id (under half the server CPU per profile, fewer bytes; pprof when the server does not take it); pprof: the whole profile every time').choices(['lean', 'pprof']).default('lean'))
  .option('--ca-file <file>', 'trust this PEM CA for an https server (e.g. a private CA)')
  .option('--client-cert <file>', 'present this PEM client certificate to the server')
  .option('--client-key <file>', 'the key of --client-cert')
  .option('--metrics-port <port>', `serve Prometheus /metrics on this port ("off": none)`, metricsPort, 9464)
  .option('--metrics-host <host>', 'address for /metrics', '127.0.0.1')
  .option('-p, --pid <pid>', 'only this process and its descendants', positiveInteger('--pid'))
  .option('--memory-budget-mb <mb>', "memory for the agent's caches (default: from FLEETPROF_MEMORY_LIMIT_MB or the cgroup limit, else 256)", positiveNumber('--memory-budget-mb'))
  .addOption(new Option('--unwind <mode>', 'walk user stacks with frame pointers, or with .eh_frame unwind tables in the kernel').choices(['fp', 'dwarf']).default('fp'))
  .option('--unwind-table-mb <mb>', 'with --unwind dwarf: memory the unwind tables may lock', positiveNumber('--unwind-table-mb'), 16)
  .option('--unwind-cache-dir <dir>', 'with --unwind dwarf: where built unwind tables are kept between runs', DEFAULT_UNWIND_CACHE_DIR)
  .option('--unwind-cache-mb <mb>', 'with --unwind dwarf: bound on --unwind-cache-dir (0: keep no tables)', nonNegativeNumber('--unwind-cache-mb'), DEFAULT_UNWIND_CACHE_BYTES / 1048576)
  .action(
    async (options: {
      memoryBudgetMb?: number;
      unwind: 'fp' | 'dwarf';
      unwindTableMb: number;
      unwindCacheDir: string;
      unwindCacheMb: number;
      server: string;
      frequency: number;
      interval: number;
      label: Record<string, string>;
      node?: string;
      spoolDir: string;
      spoolMaxMb: number;
      spool: 'always' | 'failure';
      ingestToken?: string;
      caFile?: string;
      clientCert?: string;
      clientKey?: string;
      metricsPort: number | 'off';
      metricsHost: string;
      pid?: number;
      pushFormat: 'lean' | 'pprof';
    } & AttributionCliOptions) => {
      if ((options.clientCert === undefined) !== (options.clientKey === undefined)) throw new InvalidArgumentError('--client-cert and --client-key go together');
      const Agent = await loadAgent();
      const { selection, kubernetes, nodeName } = await attributionFromCli(options);
      let profilesMade = 0;
      const agent = await Agent.start({
        attribution: { selection, kubernetes },
        onWarning: warn('fleetprof agent'),
        serverUrl: options.server,
        ingestToken: options.ingestToken ?? process.env.FLEETPROF_INGEST_TOKEN,
        tls: { caFile: options.caFile, certFile: options.clientCert, keyFile: options.clientKey },
        intervalMs: options.interval * 1000,
        frequencyHz: options.frequency,
        labels: options.label,
        nodeName,
        spoolDir: options.spoolDir,
        spoolMaxBytes: options.spoolMaxMb * 1024 * 1024,
        spoolWhen: options.spool,
        metricsPort: options.metricsPort === 'off' ? undefined : options.metricsPort,
        metricsHost: options.metricsHost,
        filterTgid: options.pid,
        memoryBudgetMb: options.memoryBudgetMb,
        leanPush: options.pushFormat === 'lean',
        onProfile: () => profilesMade++,
        unwind: options.unwind,
        unwindTableBudgetBytes: Math.round(options.unwindTableMb * 1024 * 1024),
        unwindTableCache: unwindCache(options),
        onError: (error) => process.stderr.write(`fleetprof agent: ${error instanceof Error ? error.message : String(error)}\n`),
      });
      process.stderr.write(
        `fleetprof agent: sampling at ${options.frequency} Hz, pushing every ${options.interval} s to ${options.server}, memory budget ${agent.memoryBudgetMb} MiB` +
          (agent.metricsUrl ? `, metrics at ${agent.metricsUrl}` : '') +
          '\n',
      );
      onShutdown(
        async () => {
          await agent.stop();
          const left = agent.spool.stats().files;
          process.stderr.write(`fleetprof agent: stopped; ${profilesMade} profiles made, ${agent.shipper.sent} delivered, ${left} wait in the spool (${options.spoolDir})\n`);
        },
        AGENT_STOP_DEADLINE_MS,
        () => agent.shipper.spoolAllHeld(),
      );
    },
  );

interface ServerCliOptions {
  host: string;
  port: number;
  dataDir: string;
  store?: string;
  dropSampleLabels: string;
  retention: string;
  commitLingerMs?: number;
  ingestToken?: string;
  queryToken?: string;
  tlsCert?: string;
  tlsKey?: string;
  corsOrigin: string[];
  allowUnauthenticated?: boolean;
  maxFutureSkew: string;
}

function parseLingerMs(v: string): number {
  const ms = Number(v);
  // Above a second an ingest's answer would wait longer than it is worth: the agents' timeouts are seconds.
  if (!/^\d+$/.test(v) || ms > 1000) throw new InvalidArgumentError('expected whole milliseconds, 0 to 1000');
  return ms;
}

function serverOptions(options: ServerCliOptions): ServerOptions {
  if ((options.tlsCert === undefined) !== (options.tlsKey === undefined)) throw new InvalidArgumentError('--tls-cert and --tls-key go together');
  return {
    dataDir: options.dataDir,
    store: options.store,
    dropSampleLabels: options.dropSampleLabels.split(',').map((l) => l.trim()).filter((l) => l !== ''),
    host: options.host,
    port: options.port,
    retentionMs: parseDurationMs(options.retention),
    commitLingerMs: options.commitLingerMs,
    maxFutureSkewMs: parseDurationMs(options.maxFutureSkew),
    ingestToken: options.ingestToken ?? process.env.FLEETPROF_INGEST_TOKEN,
    queryToken: options.queryToken ?? process.env.FLEETPROF_QUERY_TOKEN,
    tls: options.tlsCert !== undefined && options.tlsKey !== undefined ? { certPath: options.tlsCert, keyPath: options.tlsKey } : undefined,
    webDir: join(packageRoot(), 'web', 'dist'),
    corsOrigins: options.corsOrigin,
    allowUnauthenticated: options.allowUnauthenticated === true,
  };
}

function withServerOptions(command: Command, defaults: { dataDir: string }): Command {
  return command
    .option('--host <address>', 'listen address', '127.0.0.1')
    .option('--port <port>', 'listen port', (v) => Number(v), DEFAULT_SERVER_PORT)
    .option('--data-dir <dir>', 'where the SQLite database lives (same as --store sqlite:<dir>)', defaults.dataDir)
    .option('--store <url>', 'sqlite:<dir> (default: --data-dir) or postgres://user@host:port/db')
    .option('--drop-sample-labels <names>', 'sample labels not turned into series labels (comma separated; high cardinality)', 'pid,tid')
    .option('--retention <duration>', 'delete profiles older than this (e.g. 24h, 7d); older ones are refused at ingest', '7d')
    .option(
      '--commit-linger-ms <ms>',
      `a commit starting from idle waits this long for more ingests to share it (0: at once; default ${DEFAULT_COMMIT_LINGER_MS} on SQLite, ${DEFAULT_PG_COMMIT_LINGER_MS} on PostgreSQL)`,
      parseLingerMs,
    )
    .option('--max-future-skew <duration>', 'refuse profiles dated further than this ahead of the server clock', '5m')
    .option('--ingest-token <token>', 'require this bearer token to ingest (or FLEETPROF_INGEST_TOKEN)')
    .option('--query-token <token>', 'require this bearer token to query (or FLEETPROF_QUERY_TOKEN)')
    .option('--tls-cert <file>', 'serve HTTPS with this PEM certificate')
    .option('--tls-key <file>', 'and this PEM key')
    .option('--cors-origin <origin>', 'allow cross-origin requests from this origin, e.g. https://grafana.example (repeatable; none by default)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--allow-unauthenticated', 'listen beyond loopback without --ingest-token and --query-token (refused otherwise)');
}

withServerOptions(program.command('server').description('run the central server: ingest, storage (SQLite), query API and web viewer'), {
  dataDir: '/var/lib/fleetprof/data',
}).action(async (options: ServerCliOptions) => {
  const { startServer } = await loadServer();
  const server = await startServer(serverOptions(options));
  process.stderr.write(`fleetprof server: listening on ${server.url}\n`);
  onShutdown(() => server.close());
});

withServerOptions(
  program
    .command('up')
    .description('server + a local agent + the web viewer on this machine, on embedded SQLite')
    .option('-F, --frequency <hz>', 'samples per second per CPU', positiveInteger('--frequency'), 99)
    .option('-i, --interval <seconds>', 'push interval', positiveNumber('--interval'), 5),
  { dataDir: '.fleetprof-data' },
).action(async (options: ServerCliOptions & { frequency: number; interval: number }) => {
  const [{ startServer }, Agent] = await Promise.all([loadServer(), loadAgent()]);
  const server = await startServer(serverOptions(options));
  const agent = await Agent.start({
    serverUrl: server.url,
    ingestToken: options.ingestToken ?? process.env.FLEETPROF_INGEST_TOKEN,
    frequencyHz: options.frequency,
    intervalMs: options.interval * 1000,
    spoolDir: join(options.dataDir, 'spool'),
    onError: (error) => process.stderr.write(`fleetprof agent: ${error instanceof Error ? error.message : String(error)}\n`),
  });
  process.stderr.write(
    `fleetprof is up: profiling this machine at ${options.frequency} Hz, first profiles in ${options.interval} s.\n` +
      `  open ${server.url}/  (data in ${options.dataDir}; Ctrl-C to stop)\n`,
  );
  onShutdown(async () => {
    await agent.stop();
    await server.close();
  });
});

program.parseAsync(process.argv).catch((error: unknown) => {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`fleetprof: ${message}\n`);
  process.exitCode = 1;
});
