import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { gzipSync } from 'node:zlib';
import { CpuProfileBuilder } from '../profile/builder.js';
import { DROP_STATS, droppedTotal, mapStats, sumStats, UNWIND_OUTCOME_STATS, type KernelStats } from '../sampler/bpf-layout.js';
import type { UnwindTableStats } from '../unwind/table-manager.js';
import { Collector, type CollectResult, type UnwindMode } from './collector.js';
import type { TableCacheOptions } from '../unwind/table-cache.js';
import type { AttributionOptions, AttributionStats } from '../attribution/attribution.js';
import { startWithAttribution } from './start-attribution.js';

export interface RecordOptions {
  durationMs: number;
  frequencyHz: number;
  /** Profile only this process tree; undefined: the whole system. */
  pid?: number;
  outputPath: string;
  /** How often the kernel maps are drained and symbolized. */
  drainIntervalMs?: number;
  onProgress?: (progress: RecordProgress) => void;
  /** Called once the sampler is attached: samples are taken from here on. */
  onStarted?: () => void;
  /** Have the kernel measure the BPF program's own run time (reported in the summary). */
  measureBpfRunTime?: boolean;
  /** How user stacks are walked (default 'fp'). */
  unwind?: UnwindMode;
  unwindTableBudgetBytes?: number;
  /** With unwind 'dwarf': where built tables are kept between runs (undefined: not kept). */
  unwindTableCache?: TableCacheOptions;
  /** --include/--exclude and the Kubernetes API for pod labels (container ids come from cgroups regardless). */
  attribution?: Pick<AttributionOptions, 'selection' | 'kubernetes'>;
  /** What the recording cannot see (hidden kernel addresses, API unreachable, ...), one line each. */
  onWarning?: (message: string) => void;
}

export interface RecordProgress {
  elapsedMs: number;
  durationMs: number;
  samples: number;
  processes: number;
  dropped: number;
}

export interface RecordSummary {
  samples: number;
  processes: number;
  /** Samples the kernel took but could not count in full, by reason. */
  drops: Partial<Record<keyof KernelStats, number>>;
  droppedTotal: number;
  kernelStats: KernelStats;
  symbolizer: ReturnType<Collector['symbolizer']['stats']>;
  outputPath: string;
  /** The BPF program's total run time and runs, when measureBpfRunTime was set. */
  bpfRunTime?: { runTimeNs: number; runCount: number };
  /** With unwind 'dwarf': how each user stack ended, and the tables' memory. */
  unwind?: UnwindSummary;
  /** Filtered samples, processes that could not be attributed, the API watch. */
  attribution: AttributionStats;
}

export interface UnwindSummary {
  mode: UnwindMode;
  /** User stacks by how the table walk ended (unwindProcessNotLoaded: process not loaded yet, leaf only). */
  outcomes: Record<(typeof UNWIND_OUTCOME_STATS)[number], number>;
  /** Of those, walks that used frame pointers in a file whose table was still being built. */
  tablePending: number;
  tables: UnwindTableStats | undefined;
}


/** `fleetprof record`: sample for a while, write one pprof file. */
export async function record(options: RecordOptions): Promise<RecordSummary> {
  if (options.pid !== undefined && !existsSync(`/proc/${options.pid}`)) {
    throw new Error(`no process ${options.pid}: nothing to record (is it already gone, or in another PID namespace?)`);
  }
  const drainIntervalMs = options.drainIntervalMs ?? 1000;
  const startTimeNs = BigInt(Date.now()) * 1_000_000n;
  const startedAt = performance.now();
  const onWarning = options.onWarning ?? (() => {});
  const { attribution, built: collector } = await startWithAttribution(options.attribution, onWarning, (attribution) =>
    Collector.start({
      frequencyHz: options.frequencyHz,
      filterTgid: options.pid,
      unwind: options.unwind,
      unwindTableBudgetBytes: options.unwindTableBudgetBytes,
      unwindTableCache: options.unwindTableCache,
      ...attribution.collectorHooks,
    }),
  );
  options.onStarted?.();
  const builder = new CpuProfileBuilder({ periodNs: Math.round(1e9 / options.frequencyHz), startTimeNs });
  if (options.measureBpfRunTime) collector.enableRunTimeStats();
  let kernelStats = mapStats(() => 0);
  let bpfRunTime: RecordSummary['bpfRunTime'];
  const take = (result: CollectResult): void => {
    for (const sample of attribution.apply(result.samples)) builder.addSample(sample.frames, sample.count, sample.labels);
    kernelStats = sumStats(kernelStats, result.kernelStats);
  };
  try {
    for (;;) {
      const elapsedMs = performance.now() - startedAt;
      const remainingMs = options.durationMs - elapsedMs;
      if (remainingMs <= 0) break;
      await sleep(Math.min(drainIntervalMs, remainingMs));
      if (performance.now() - startedAt >= options.durationMs) break;
      take(await collector.collect());
      options.onProgress?.({
        elapsedMs: performance.now() - startedAt,
        durationMs: options.durationMs,
        samples: builder.sampleCount,
        processes: collector.processesSeen,
        dropped: droppedTotal(kernelStats),
      });
    }
  } finally {
    if (options.measureBpfRunTime) bpfRunTime = collector.programRunTime();
    try {
      attribution.freezeKernelCounters();
      take(await collector.stop());
    } finally {
      await attribution.stop();
    }
  }
  const durationNs = BigInt(Math.round((performance.now() - startedAt) * 1e6));
  const drops = Object.fromEntries(DROP_STATS.filter((name) => kernelStats[name] > 0).map((name) => [name, kernelStats[name]]));
  const finalBuilder = builder.withOptions({
    durationNs,
    comments: [`fleetprof record: ${options.frequencyHz} Hz, kernel drops ${JSON.stringify(drops)}`],
  });
  // One small profile at the very end: the async gzip would only add a thread-pool hand-off (~2 ms of CPU).
  await writeFile(options.outputPath, gzipSync(finalBuilder.encode()));
  return {
    samples: builder.sampleCount,
    processes: collector.processesSeen,
    drops,
    droppedTotal: droppedTotal(kernelStats),
    kernelStats,
    symbolizer: collector.symbolizer.stats(),
    outputPath: options.outputPath,
    bpfRunTime,
    ...(options.unwind === 'dwarf' && {
      unwind: {
        mode: options.unwind,
        outcomes: Object.fromEntries(UNWIND_OUTCOME_STATS.map((name) => [name, kernelStats[name]])) as UnwindSummary['outcomes'],
        tablePending: kernelStats.unwindTablePending,
        tables: collector.unwindStats(),
      },
    }),
    attribution: attribution.stats(),
  };
}
