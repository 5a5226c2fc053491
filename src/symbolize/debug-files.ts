// Finding separate debug info for a stripped binary, the way GDB does
// (https://sourceware.org/gdb/current/onlinedocs/gdb.html/Separate-Debug-Files.html):
// by GNU build ID under /usr/lib/debug/.build-id/, and by .gnu_debuglink next
// to the binary, in its .debug/ directory and under /usr/lib/debug/<dir>/.

import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import { posix } from 'node:path';
import { ElfReader } from './elf.js';

// CRC-32 (IEEE 802.3, reflected, as .gnu_debuglink uses). Hand-written because
// it is ten lines and node:zlib.crc32 only exists from Node 20.15.
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** Continues a CRC-32 over `bytes`; start with crc = 0. */
export function crc32(bytes: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** CRC-32 of a whole file, read in chunks (debug files can be hundreds of MB). Null if unreadable. */
export function crc32OfFile(path: string): number | null {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return null;
  }
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    let crc = 0;
    let pos = 0;
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, pos);
      if (n === 0) return crc;
      crc = crc32(buf.subarray(0, n), crc);
      pos += n;
    }
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}

export interface DebugFileQuery {
  /** Directories standing for "/" of the binary's file system, tried in order (e.g. /proc/PID/root, then the host's "/"). */
  roots: string[];
  /** Path of the binary as its process sees it (inside `roots`). */
  binaryPath: string;
  buildId: string | null;
  debugLink: { fileName: string; crc32: number } | null;
}

export interface DebugFile {
  /** Host path to open. */
  path: string;
  via: 'build-id' | 'debuglink';
}

/** Where a build ID's debug file lives relative to a root: .build-id/ab/cdef....debug */
export function buildIdDebugPath(buildId: string): string {
  return `/usr/lib/debug/.build-id/${buildId.slice(0, 2)}/${buildId.slice(2)}.debug`;
}

/**
 * Returns the first candidate that exists and is really the binary's debug
 * file: same build ID for build-id lookups, matching CRC for debuglink ones
 * (a stale .debug from an older build would give wrong names).
 */
export function findDebugFile(q: DebugFileQuery): DebugFile | null {
  if (q.buildId !== null && /^[0-9a-f]{4,}$/.test(q.buildId)) {
    for (const root of q.roots) {
      const path = joinRoot(root, buildIdDebugPath(q.buildId));
      if (existsSync(path) && buildIdOf(path) === q.buildId) return { path, via: 'build-id' };
    }
  }
  if (q.debugLink !== null && !q.debugLink.fileName.includes('/')) {
    const dir = posix.dirname(q.binaryPath);
    const name = q.debugLink.fileName;
    const binaryBase = posix.basename(q.binaryPath);
    for (const root of q.roots) {
      for (const rel of [posix.join(dir, name), posix.join(dir, '.debug', name), posix.join('/usr/lib/debug', dir, name)]) {
        // A debuglink naming the binary itself would point back at the stripped file.
        if (rel === q.binaryPath && name === binaryBase) continue;
        const path = joinRoot(root, rel);
        if (existsSync(path) && crc32OfFile(path) === q.debugLink.crc32) return { path, via: 'debuglink' };
      }
    }
  }
  return null;
}

function joinRoot(root: string, absPath: string): string {
  return root === '/' || root === '' ? absPath : posix.join(root, absPath);
}

function buildIdOf(path: string): string | null {
  try {
    const elf = ElfReader.open(path);
    try {
      return elf.buildId();
    } finally {
      elf.close();
    }
  } catch {
    return null;
  }
}
