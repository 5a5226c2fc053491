// Parsed binaries cached by GNU build ID, so that libc mapped by 500
// processes (or by containers with their own copy of the same build) is
// parsed once. Files without a build ID are keyed by dev+inode+size+mtime,
// which also lets a repeat sighting skip even reading the ELF notes.

import { fstatSync } from 'node:fs';
import { loadBinary, type BinaryInfo } from './binary.js';
import { ElfError, ElfReader, FileByteSource } from './elf.js';

export type CacheKey = string;

export interface BinaryCacheStats {
  hits: number;
  misses: number;
  /** Binaries parsed successfully (one per distinct build). */
  parsed: number;
  /** Files that opened but did not parse as ELF64 LE (counted once per file identity). */
  parseErrors: number;
  /** Files that could not be opened or read. */
  unreadable: number;
  evictions: number;
  entries: number;
  estimatedBytes: number;
}

export type LoadResult = { ok: true; binary: BinaryInfo } | { ok: false; error: ElfError };

/** A binary opened but not parsed yet (see BinaryCache.open). */
export interface PendingBinary {
  readonly source: FileByteSource;
  /** Identity of the opened file (dev, inode, size, mtime), when fstat worked. */
  readonly fileKey: CacheKey | null;
  readonly hostPath: string;
}

interface Entry {
  result: LoadResult;
  aliases: CacheKey[];
  bytes: number;
}

export interface BinaryCacheOptions {
  maxEntries?: number;
  maxBytes?: number;
}

export class BinaryCache {
  /** Map iteration order is insertion order: re-inserting on use makes the first key the least recently used. */
  private readonly entries = new Map<CacheKey, Entry>();
  private readonly aliasOf = new Map<CacheKey, CacheKey>();
  private readonly maxEntries: number;
  private readonly maxBytes: number;
  private bytes = 0;
  private readonly counters = { hits: 0, misses: 0, parsed: 0, parseErrors: 0, unreadable: 0, evictions: 0 };

  constructor(opts: BinaryCacheOptions = {}) {
    this.maxEntries = Math.max(1, opts.maxEntries ?? 1000);
    this.maxBytes = opts.maxBytes ?? 1 << 30;
  }

  stats(): BinaryCacheStats {
    return { ...this.counters, entries: this.entries.size, estimatedBytes: this.bytes };
  }

  /**
   * Returns the parsed binary at `hostPath` (e.g. /proc/PID/root/usr/lib/libc.so.6),
   * from the cache when the same file or the same build was seen before.
   * Never throws: failures come back as { ok: false }.
   */
  load(hostPath: string, opts: { binaryPath: string; debugRoots: string[] }): LoadResult {
    const opened = this.open(hostPath);
    return 'pending' in opened ? this.parse(opened.pending, opts) : opened;
  }

  /**
   * The first half of load(): opens the file and answers from the cache if
   * this very file was seen before; otherwise hands back the open file, to be
   * parse()d when (if ever) one of its addresses needs a name, or release()d.
   * Holding it open keeps the file readable after its process exits.
   */
  open(hostPath: string): LoadResult | { pending: PendingBinary } {
    let src: FileByteSource;
    try {
      src = new FileByteSource(hostPath);
    } catch (err) {
      this.counters.unreadable++;
      return { ok: false, error: err as ElfError };
    }
    let fileKey: CacheKey | null = null;
    try {
      // Stat through the open fd: the identity of what we read, not of what the path points to now.
      const st = fstatSync(src.fileDescriptor ?? -1, { bigint: true });
      fileKey = `file:${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}`;
    } catch {
      fileKey = null;
    }
    if (fileKey !== null) {
      const hit = this.get(fileKey);
      if (hit !== undefined) {
        src.close();
        return hit;
      }
    }
    return { pending: { source: src, fileKey, hostPath } };
  }

  /** The second half of load(): parses an opened file (or finds its build in the cache) and closes it. */
  parse(pending: PendingBinary, opts: { binaryPath: string; debugRoots: string[] }): LoadResult {
    const { source: src, fileKey, hostPath } = pending;
    try {
      if (fileKey !== null) {
        // Another process's copy of the same file may have been parsed meanwhile.
        const hit = this.get(fileKey);
        if (hit !== undefined) return hit;
      }
      let elf: ElfReader;
      try {
        elf = new ElfReader(src);
      } catch (err) {
        return this.remember([fileKey], this.failure(err, hostPath));
      }
      let buildKey: CacheKey | null = null;
      try {
        const id = elf.buildId();
        buildKey = id === null ? null : `build-id:${id}`;
      } catch {
        buildKey = null;
      }
      if (buildKey !== null) {
        const hit = this.get(buildKey);
        if (hit !== undefined) {
          if (fileKey !== null) this.addAlias(fileKey, buildKey);
          return hit;
        }
      }
      this.counters.misses++;
      let result: LoadResult;
      try {
        result = { ok: true, binary: loadBinary(elf, opts) };
        this.counters.parsed++;
      } catch (err) {
        result = this.failure(err, hostPath);
      }
      return this.remember([buildKey, fileKey], result);
    } finally {
      src.close();
    }
  }

  /** Closes an opened file that will not be parsed. */
  release(pending: PendingBinary): void {
    pending.source.close();
  }

  private failure(err: unknown, path: string): LoadResult {
    const error = err instanceof ElfError ? err : new ElfError('ELF_MALFORMED', String(err), path);
    if (error.code === 'ELF_IO') this.counters.unreadable++;
    else this.counters.parseErrors++;
    return { ok: false, error };
  }

  private get(key: CacheKey): LoadResult | undefined {
    const primary = this.aliasOf.get(key) ?? key;
    const entry = this.entries.get(primary);
    if (entry === undefined) return undefined;
    this.entries.delete(primary);
    this.entries.set(primary, entry);
    this.counters.hits++;
    return entry.result;
  }

  private addAlias(alias: CacheKey, primary: CacheKey): void {
    const entry = this.entries.get(primary);
    if (entry === undefined || this.aliasOf.has(alias)) return;
    this.aliasOf.set(alias, primary);
    entry.aliases.push(alias);
  }

  private remember(keys: (CacheKey | null)[], result: LoadResult): LoadResult {
    const real = keys.filter((k): k is CacheKey => k !== null);
    const [primary, ...aliases] = real;
    // I/O failures may be transient (file being replaced); only cache answers about content.
    if (primary === undefined || (!result.ok && result.error.code === 'ELF_IO')) return result;
    const bytes = result.ok ? result.binary.symbols.estimateBytes() + 256 : 256;
    const entry: Entry = { result, aliases: [], bytes };
    this.entries.set(primary, entry);
    this.bytes += bytes;
    for (const a of aliases) this.addAlias(a, primary);
    this.evict(primary);
    return result;
  }

  private evict(keep: CacheKey): void {
    for (const [key, entry] of this.entries) {
      if (this.entries.size <= this.maxEntries && this.bytes <= this.maxBytes) break;
      if (key === keep) continue;
      this.entries.delete(key);
      for (const a of entry.aliases) this.aliasOf.delete(a);
      this.bytes -= entry.bytes;
      this.counters.evictions++;
    }
  }
}
