// The agent's memory budget (--memory-budget-mb) and how it is shared out
// among its caches. Every cache that grows with what the host runs (parsed
// symbol tables, perf-map lines, process snapshots, symbolized stacks) gets
// a bound derived from the budget, and what each evicts is counted.
import { readFileSync } from 'node:fs';
import { BYTES_PER_IDENTITY_ENTRY } from '../profile/push-identity-cache.js';

export interface CacheLimits {
  /** Parsed ELF symbol tables (estimated bytes). */
  binaryCacheBytes: number;
  /** Perf-map lines held for JIT processes (estimated bytes). */
  perfMapBytes: number;
  /** Processes tracked (names, maps snapshots, their stack caches). */
  maxProcesses: number;
  /** Symbolized stacks kept across drains, all processes together. */
  maxStacks: number;
  /** Resolved native frames kept per process and address (the symbolizer's frame caches), all processes together. */
  maxCachedFrames: number;
  /** Function and mapping ids kept for lean pushes (src/profile/push-identity-cache.ts). */
  maxPushIdentities: number;
}

/** What is left when the budget is unknown and no limit is found. */
export const FALLBACK_MEMORY_BUDGET_MB = 256;
/** Node itself, the OpenTelemetry SDK, BPF map reads and one interval's profiles: not caches. */
const RUNTIME_RESERVE_MB = 96;
/** Rough heap per cached stack (a frames array of ~20 shared frame objects) and per tracked process (maps snapshot). */
const BYTES_PER_STACK = 2048;
const BYTES_PER_PROCESS = 16 * 1024;
/** A frame-cache entry: the Map slot and its frame object (often shared with cached stacks, counted in full anyway). */
export const BYTES_PER_CACHED_FRAME = 192;

/**
 * The budget in MiB: the flag, else FLEETPROF_MEMORY_LIMIT_MB (the DaemonSet
 * sets it from the container's memory limit), else the cgroup's memory.max,
 * each less a margin so the kernel's OOM killer never has to act; else a fallback.
 */
export function resolveMemoryBudgetMb(flagMb: number | undefined, env: NodeJS.ProcessEnv = process.env, cgroupMaxPath = '/sys/fs/cgroup/memory.max'): number {
  if (flagMb !== undefined) return flagMb;
  const fromEnv = Number(env.FLEETPROF_MEMORY_LIMIT_MB);
  if (Number.isFinite(fromEnv) && fromEnv > 0) return Math.floor(fromEnv * 0.85);
  try {
    const text = readFileSync(cgroupMaxPath, 'utf8').trim();
    if (/^\d+$/.test(text)) return Math.floor((Number(text) / 2 ** 20) * 0.85);
  } catch {
    // not in a cgroup v2 container
  }
  return FALLBACK_MEMORY_BUDGET_MB;
}

/** Shares a budget out: what is not the runtime's goes 42% to symbol tables, 15% to perf maps, 20% to stacks, 5% to resolved frames, 15% to processes, 3% to lean-push identities. */
export function cacheLimits(budgetMb: number): CacheLimits {
  const cacheBytes = Math.max(16, budgetMb - RUNTIME_RESERVE_MB) * 2 ** 20;
  return {
    binaryCacheBytes: Math.floor(cacheBytes * 0.42),
    perfMapBytes: Math.floor(cacheBytes * 0.15),
    maxStacks: Math.max(1000, Math.floor((cacheBytes * 0.2) / BYTES_PER_STACK)),
    maxCachedFrames: Math.max(4096, Math.floor((cacheBytes * 0.05) / BYTES_PER_CACHED_FRAME)),
    maxProcesses: Math.max(256, Math.floor((cacheBytes * 0.15) / BYTES_PER_PROCESS)),
    maxPushIdentities: Math.max(4096, Math.floor((cacheBytes * 0.03) / BYTES_PER_IDENTITY_ENTRY)),
  };
}
