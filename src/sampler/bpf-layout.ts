// Byte layouts of bpf/profile.h, decoded here so the addon stays logic-free.
// Keep in step with that header.

export const MAX_STACK_DEPTH = 127;
export const COMM_LENGTH = 16;
export const SAMPLE_KEY_SIZE = 4 + 4 + 8 + 8 + COMM_LENGTH;
export const CONFIG_SIZE = 16;
/** struct fp_process_event: tgid, comm, kind, then the u64 address (8-aligned). */
export const PROCESS_EVENT_SIZE = 4 + COMM_LENGTH + 4 + 8;

/** Kernel process id (tgid) — what user space calls a pid. */
export type Tgid = number;
/** Kernel task id (pid) — what user space calls a thread id. */
export type Tid = number;
/** Key of the stacks map: a hash of the stack's addresses; 0n means no stack. */
export type StackHash = bigint;

export interface SampleKey {
  tgid: Tgid;
  tid: Tid;
  userStackHash: StackHash;
  kernelStackHash: StackHash;
  comm: string;
}

/** How table-walked user stacks ended (--unwind dwarf), one counter per outcome. */
export const UNWIND_OUTCOME_STATS = [
  'unwindComplete',
  'unwindNoTable',
  'unwindBadRead',
  'unwindBadReturnAddress',
  'unwindDepthLimit',
  'unwindUnsupported',
  'unwindProcessNotLoaded',
] as const;

/** Order of enum fp_stat: the counters the BPF program keeps. */
export const BPF_STAT_NAMES = [
  'samples',
  'idle',
  'filtered',
  'stackMapFull',
  'userStackErrors',
  'kernelStackErrors',
  'countsMapFull',
  'processEventsLost',
  // enum fp_stat's unwind outcomes follow the drops, in the same order.
  ...UNWIND_OUTCOME_STATS,
  // Not an outcome: table walks that used frame pointers in a file whose table was still being built.
  'unwindTablePending',
] as const;

/**
 * Every counter a drain reports: the BPF program's, then those the sampler
 * keeps in user space. stackEvicted: samples delivered without one of their
 * stacks because the LRU stack map evicted it before user space read it.
 */
export const STAT_NAMES = [...BPF_STAT_NAMES, 'stackEvicted'] as const;
export type StatName = (typeof STAT_NAMES)[number];
export type KernelStats = Record<StatName, number>;

/** The counters that mean a sample, or part of it, was lost. */
export const DROP_STATS = [
  'stackMapFull',
  'stackEvicted',
  'userStackErrors',
  'kernelStackErrors',
  'countsMapFull',
  'processEventsLost',
] as const satisfies readonly StatName[];

export function mapStats(fn: (name: StatName) => number): KernelStats {
  return Object.fromEntries(STAT_NAMES.map((name) => [name, fn(name)])) as KernelStats;
}

export function sumStats(a: KernelStats, b: KernelStats): KernelStats {
  return mapStats((name) => a[name] + b[name]);
}

export function droppedTotal(stats: KernelStats): number {
  return DROP_STATS.reduce((sum, name) => sum + stats[name], 0);
}

export function decodeComm(bytes: Buffer, offset: number): string {
  const end = bytes.indexOf(0, offset);
  const stop = end === -1 || end > offset + COMM_LENGTH ? offset + COMM_LENGTH : end;
  return bytes.toString('utf8', offset, stop);
}

export function decodeSampleKey(bytes: Buffer, offset: number): SampleKey {
  return {
    tgid: bytes.readUInt32LE(offset),
    tid: bytes.readUInt32LE(offset + 4),
    userStackHash: bytes.readBigUInt64LE(offset + 8),
    kernelStackHash: bytes.readBigUInt64LE(offset + 16),
    comm: decodeComm(bytes, offset + 24),
  };
}

export function encodeConfig(generation: number, filterTgid: Tgid, unwindTables = false): Buffer {
  const out = Buffer.alloc(CONFIG_SIZE);
  out.writeUInt32LE(generation >>> 0, 0);
  out.writeUInt32LE(filterTgid >>> 0, 4);
  out.writeUInt32LE(unwindTables ? 1 : 0, 8);
  return out;
}

/** enum fp_process_event_kind. */
export type ProcessEventKind = 'new' | 'mappingsStale' | 'tableWanted';
const PROCESS_EVENT_KINDS: readonly ProcessEventKind[] = ['new', 'mappingsStale', 'tableWanted'];

export interface ProcessEvent {
  tgid: Tgid;
  comm: string;
  kind: ProcessEventKind;
  /** tableWanted: the start address of the mapping whose table a walk needs; else 0. */
  address: bigint;
}

export function decodeProcessEvent(bytes: Buffer): ProcessEvent {
  const whole = bytes.length >= PROCESS_EVENT_SIZE;
  // An unknown kind is treated as a new process: re-reading its mappings is always safe.
  const kind = (whole ? PROCESS_EVENT_KINDS[bytes.readUInt32LE(4 + COMM_LENGTH)] : undefined) ?? 'new';
  return { tgid: bytes.readUInt32LE(0), comm: decodeComm(bytes, 4), kind, address: whole ? bytes.readBigUInt64LE(8 + COMM_LENGTH) : 0n };
}

/** A struct fp_stack: addresses leaf first, ended by the first zero. */
export function decodeStack(bytes: Buffer, offset: number, valueSize: number): bigint[] {
  const addresses: bigint[] = [];
  for (let at = offset; at < offset + valueSize; at += 8) {
    const address = bytes.readBigUInt64LE(at);
    if (address === 0n) break;
    addresses.push(address);
  }
  return addresses;
}

/** Sums a per-CPU array of u64 counters (values are cpuCount slots of 8 bytes). */
export function sumPerCpuCounter(value: Buffer): number {
  let total = 0;
  for (let at = 0; at + 8 <= value.length; at += 8) total += Number(value.readBigUInt64LE(at));
  return total;
}
