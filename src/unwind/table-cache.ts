// A persistent cache of built unwind tables (table-builder.ts), so an agent
// that restarts, or a `record` run after another, does not parse node's 76k
// FDEs again. Read by the main thread (table-build-pool.ts) before it starts
// the table worker; written by whoever built the table (the worker, or the
// main thread for a small file).
//
// - Keyed by file identity: device, inode, size and modification/change
//   times of the file the process maps (fstat through the worker's
//   /proc/self/fd path). A file changed in place gets a new key; its old
//   entry ages out.
// - One file per table: a header (magic, format version, metadata as JSON),
//   the typed arrays, and a CRC-32 of everything before it. An entry that
//   fails any check (truncated, flipped bits, another format, another file's
//   identity, rows that point outside the table) is deleted, counted as
//   corrupt, and the table is built again.
// - Written to a temporary name and renamed, so a reader never sees half an
//   entry; the directory is kept under a byte bound by removing the entries
//   used least recently (a hit touches its entry).
// Hand-written: a dozen lines of framing over node:fs and zlib.crc32; no
// library on npm stores typed arrays with these checks more simply.

import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, utimesSync, writeSync, type BigIntStats } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { BuiltTable, LoadSegment } from './table-builder.js';
import { RULE_FIELDS } from './table-builder.js';

const MAGIC = 0x54555046; // "FPUT", little-endian
/** Bump when the table layout (rows, rules, pages) or this framing changes: older entries are then rebuilt (counted as corrupt) and replaced. */
export const CACHE_FORMAT_VERSION = 1;
const HEADER_BYTES = 12; // magic, version, metadata length
const SUFFIX = '.fput';

export const DEFAULT_UNWIND_CACHE_DIR = '/var/cache/fleetprof/unwind-tables';
export const DEFAULT_UNWIND_CACHE_BYTES = 256 * 1024 * 1024;

export interface TableCacheOptions {
  dir: string;
  /** Bound on the directory's entries, in bytes. */
  maxBytes: number;
}

interface Metadata {
  identity: string;
  segments: LoadSegment[];
  unsupported: [string, number][];
  /** Element counts of rules, rows, pages, pageFirstRow, pageRowCount. */
  lengths: [number, number, number, number, number];
}

export type CacheLookup = { kind: 'hit'; table: BuiltTable } | { kind: 'miss' } | { kind: 'corrupt'; reason: string };

/** What identifies a file's content well enough to reuse its table. */
export function fileIdentity(stat: BigIntStats): string {
  return `${stat.dev}:${stat.ino}:${stat.size}:${stat.mtimeNs}:${stat.ctimeNs}`;
}

/** A file's identity in the table cache, through the first of its paths that can be stat'ed (a process's file may be reachable only through /proc/PID/root). */
export function identityOf(paths: readonly string[]): string | undefined {
  for (const path of paths) {
    try {
      return fileIdentity(statSync(path, { bigint: true }));
    } catch {
      // try the next way in
    }
  }
  return undefined;
}

export class TableCache {
  private entries: Map<string, number> | undefined;
  private totalBytes = 0;
  /** Writes that failed (full disk, read-only directory): the table is used, just not kept. */
  writeErrors = 0;

  constructor(private readonly options: TableCacheOptions) {}

  private pathFor(identity: string): string {
    return join(this.options.dir, createHash('sha256').update(identity).digest('hex').slice(0, 32) + SUFFIX);
  }

  lookup(identity: string): CacheLookup {
    const path = this.pathFor(identity);
    let bytes: Buffer;
    try {
      bytes = readFileSync(path);
    } catch {
      return { kind: 'miss' };
    }
    const table = decode(bytes, identity);
    if (typeof table === 'string') {
      this.remove(path);
      return { kind: 'corrupt', reason: table };
    }
    try {
      const now = new Date();
      utimesSync(path, now, now); // most recently used: evicted last
    } catch {
      // gone meanwhile (another agent evicted it): the table read is still whole
    }
    return { kind: 'hit', table };
  }

  /** Writes a table under `identity`; false when it could not be written (counted in writeErrors). */
  store(identity: string, table: BuiltTable): boolean {
    const path = this.pathFor(identity);
    const encoded = encode(identity, table);
    const temporary = `${path}.${process.pid}.tmp`;
    try {
      mkdirSync(this.options.dir, { recursive: true, mode: 0o700 });
      const fd = openSync(temporary, 'w', 0o600);
      try {
        for (const chunk of encoded) writeSync(fd, chunk);
      } finally {
        closeSync(fd);
      }
      renameSync(temporary, path);
    } catch {
      this.writeErrors++;
      this.remove(temporary);
      return false;
    }
    const entries = this.scan();
    const size = encoded.reduce((sum, chunk) => sum + chunk.byteLength, 0);
    this.totalBytes += size - (entries.get(path) ?? 0);
    entries.set(path, size);
    this.evict(path);
    return true;
  }

  /** The directory's entries and their sizes, read once (other agents' writes are seen at the next start). */
  private scan(): Map<string, number> {
    if (this.entries !== undefined) return this.entries;
    this.entries = new Map();
    let names: string[] = [];
    try {
      names = readdirSync(this.options.dir);
    } catch {
      // no directory yet
    }
    for (const name of names) {
      const path = join(this.options.dir, name);
      try {
        const stat = statSync(path);
        if (name.endsWith(SUFFIX)) {
          this.entries.set(path, stat.size);
          this.totalBytes += stat.size;
        } else if (name.endsWith('.tmp') && Date.now() - stat.mtimeMs > 3600_000) {
          this.remove(path); // left by an agent that died mid-write
        }
      } catch {
        // gone meanwhile
      }
    }
    return this.entries;
  }

  /** Removes the least recently used entries until the directory fits its bound (never `keep`, just written). */
  private evict(keep: string): void {
    if (this.totalBytes <= this.options.maxBytes) return;
    const entries = this.scan();
    const byAge = [...entries.keys()]
      .filter((path) => path !== keep)
      .map((path) => {
        try {
          return { path, mtimeMs: statSync(path).mtimeMs };
        } catch {
          return { path, mtimeMs: 0 };
        }
      })
      .sort((a, b) => a.mtimeMs - b.mtimeMs);
    for (const { path } of byAge) {
      if (this.totalBytes <= this.options.maxBytes) break;
      this.remove(path);
    }
    // A single table bigger than the bound is not kept either.
    if (this.totalBytes > this.options.maxBytes) this.remove(keep);
  }

  private remove(path: string): void {
    try {
      unlinkSync(path);
    } catch {
      // already gone
    }
    const size = this.entries?.get(path);
    if (size !== undefined) {
      this.totalBytes -= size;
      this.entries!.delete(path);
    }
  }
}

function arraysOf(table: BuiltTable): [Int32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array] {
  return [table.rules, table.rows, table.pages, table.pageFirstRow, table.pageRowCount];
}

function encode(identity: string, table: BuiltTable): Buffer[] {
  const arrays = arraysOf(table);
  const metadata: Metadata = {
    identity,
    segments: table.segments,
    unsupported: table.unsupported,
    lengths: arrays.map((a) => a.length) as Metadata['lengths'],
  };
  let json = Buffer.from(JSON.stringify(metadata), 'utf8');
  // Pad the metadata so the arrays start 4-byte aligned (they are read in place).
  if (json.length % 4 !== 0) json = Buffer.concat([json, Buffer.alloc(4 - (json.length % 4), 0x20)]);
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeUInt32LE(MAGIC, 0);
  header.writeUInt32LE(CACHE_FORMAT_VERSION, 4);
  header.writeUInt32LE(json.length, 8);
  const chunks = [header, json, ...arrays.map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength))];
  let crc = 0;
  for (const chunk of chunks) crc = crc32(chunk, crc);
  const trailer = Buffer.alloc(4);
  trailer.writeUInt32LE(crc >>> 0, 0);
  return [...chunks, trailer];
}

/** The table in `bytes`, or why it cannot be used. */
function decode(bytes: Buffer, identity: string): BuiltTable | string {
  if (bytes.length < HEADER_BYTES + 4) return 'truncated';
  if (bytes.readUInt32LE(0) !== MAGIC) return 'bad magic';
  if (bytes.readUInt32LE(4) !== CACHE_FORMAT_VERSION) return 'other format version';
  const jsonLength = bytes.readUInt32LE(8);
  if (jsonLength % 4 !== 0 || HEADER_BYTES + jsonLength + 4 > bytes.length) return 'bad metadata length';
  const body = bytes.subarray(0, bytes.length - 4);
  if ((crc32(body) >>> 0) !== bytes.readUInt32LE(bytes.length - 4)) return 'checksum mismatch';
  let metadata: Metadata;
  try {
    metadata = JSON.parse(bytes.subarray(HEADER_BYTES, HEADER_BYTES + jsonLength).toString('utf8')) as Metadata;
  } catch {
    return 'unparsable metadata';
  }
  if (metadata.identity !== identity) return 'another file';
  const lengths = metadata.lengths;
  if (!Array.isArray(lengths) || lengths.length !== 5 || !lengths.every((n) => Number.isInteger(n) && n >= 0)) return 'bad lengths';
  if (HEADER_BYTES + jsonLength + lengths.reduce((a, b) => a + b, 0) * 4 !== body.length) return 'size mismatch';
  // One copy into a fresh buffer: aligned, and transferable to the main thread.
  const data = new Uint8Array(body.length - HEADER_BYTES - jsonLength);
  data.set(body.subarray(HEADER_BYTES + jsonLength));
  let at = 0;
  const take = <T>(make: (buffer: ArrayBuffer, offset: number, length: number) => T, length: number): T => {
    const array = make(data.buffer, at, length);
    at += length * 4;
    return array;
  };
  const rules = take((b, o, n) => new Int32Array(b.slice(o, o + n * 4)), lengths[0]);
  const rows = take((b, o, n) => new Uint32Array(b.slice(o, o + n * 4)), lengths[1]);
  const pages = take((b, o, n) => new Uint32Array(b.slice(o, o + n * 4)), lengths[2]);
  const pageFirstRow = take((b, o, n) => new Uint32Array(b.slice(o, o + n * 4)), lengths[3]);
  const pageRowCount = take((b, o, n) => new Uint32Array(b.slice(o, o + n * 4)), lengths[4]);
  // What the table manager trusts when it writes the maps: rows point at rules it has, pages at rows it has.
  const ruleCount = rules.length / RULE_FIELDS;
  if (!Number.isInteger(ruleCount) || pages.length !== pageFirstRow.length || pages.length !== pageRowCount.length) return 'inconsistent arrays';
  for (let i = 0; i < rows.length; i++) if (rows[i]! >>> 16 >= ruleCount) return 'row names a missing rule';
  for (let i = 0; i < pages.length; i++) {
    if (pageFirstRow[i]! + pageRowCount[i]! > rows.length || pageRowCount[i]! > 65536) return 'page outside the rows';
    if (i > 0 && pages[i]! <= pages[i - 1]!) return 'pages out of order';
  }
  if (!Array.isArray(metadata.segments) || !Array.isArray(metadata.unsupported)) return 'bad metadata';
  return { kind: 'table', segments: metadata.segments, unsupported: metadata.unsupported, rules, rows, pages, pageFirstRow, pageRowCount, buildMs: 0 };
}
