import { loadAddon, type MapInfo } from '../native/addon.js';
import { decodeStack, type StackHash } from './bpf-layout.js';

/**
 * Drains a stack may go unreferenced before its copy here is dropped. The
 * collector keeps symbolized stacks as long (STACK_IDLE_DRAINS), and it asks
 * for a stack's addresses only when it lacks the symbolized one.
 */
const STACK_IDLE_DRAINS = 10;

const NO_ADDRESSES: bigint[] = [];

interface KeptStack {
  /** The stack's addresses, leaf first, trimmed at its end (8 bytes a frame). */
  bytes: Buffer;
  lastUsedDrain: number;
  /** Decoded on first use and kept for the current drain only (127 BigInts per stack would be most of the garbage). */
  decoded?: bigint[];
}

/** One stack as a drain delivers it; undefined for "no stack" (hash 0) and for stacks lost (counted). */
export type StackRef = KeptStack | undefined;

export function stackAddresses(ref: StackRef): bigint[] {
  if (ref === undefined) return NO_ADDRESSES;
  return (ref.decoded ??= decodeStack(ref.bytes, 0, ref.bytes.length));
}

/**
 * User space's copy of the BPF stack map (an LRU hash that persists across
 * generations, see bpf/profile.bpf.c): each stack is read from the kernel
 * once, when a drain first references its hash, and kept while drains keep
 * referencing it. Bounded: a stack unreferenced for STACK_IDLE_DRAINS drains is
 * dropped, and past `maxStacks` entries only the stacks of the latest drain
 * are kept, so this holds at most maxStacks x (1016 bytes + ~200 of object
 * overhead) — about 40 MB for the default 32768, typically a tenth of that
 * (stacks are trimmed to their depth).
 */
export class StackStore {
  private readonly kept = new Map<StackHash, KeptStack>();
  private readonly key = Buffer.alloc(8);
  private drain = 0;
  /** Stacks read from the BPF map so far (each stack once while it stays kept). */
  reads = 0;

  constructor(
    private readonly map: MapInfo,
    private readonly maxStacks: number,
  ) {}

  /** Starts a drain: the stacks referenced until endDrain() count as used by it. */
  beginDrain(): void {
    this.drain++;
  }

  /**
   * The stack with this hash, read from the BPF map if not kept here;
   * undefined for hash 0 and for a stack the map evicted before it was read
   * (`lost` is true then: the caller counts it).
   */
  get(hash: StackHash): { ref: StackRef; lost: boolean } {
    if (hash === 0n) return NOT_A_STACK;
    let kept = this.kept.get(hash);
    if (kept === undefined) {
      this.key.writeBigUInt64LE(hash);
      this.reads++;
      const value = loadAddon().mapLookup(this.map.fd, this.key, this.map.valueSize);
      if (value === null) return LOST;
      let depth = 0;
      while (depth * 8 + 8 <= value.length && value.readBigUInt64LE(depth * 8) !== 0n) depth++;
      // An unpooled copy: a kept slice of the pool would pin its whole 8 KiB slab.
      const bytes = Buffer.allocUnsafeSlow(depth * 8);
      value.copy(bytes, 0, 0, depth * 8);
      kept = { bytes, lastUsedDrain: this.drain };
      this.kept.set(hash, kept);
    }
    kept.lastUsedDrain = this.drain;
    return { ref: kept, lost: false };
  }

  /** Ends a drain: drops the stacks unreferenced for too long, and the decoded addresses. */
  endDrain(): void {
    const oldest = this.drain - STACK_IDLE_DRAINS;
    for (const [hash, kept] of this.kept) {
      if (kept.lastUsedDrain < oldest) this.kept.delete(hash);
      else kept.decoded = undefined;
    }
    if (this.kept.size <= this.maxStacks) return;
    for (const [hash, kept] of this.kept) if (kept.lastUsedDrain < this.drain) this.kept.delete(hash);
  }

  get size(): number {
    return this.kept.size;
  }
}

const NOT_A_STACK = { ref: undefined, lost: false } as const;
const LOST = { ref: undefined, lost: true } as const;
