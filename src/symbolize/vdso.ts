// The vdso is an ELF image the kernel maps into every process; it exists in
// no file. All 64-bit processes of one kernel get the same image, so we read
// our own copy (from /proc/self/mem at our [vdso] mapping) once and use it
// for every process's [vdso] frames.

import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { loadBinary, type BinaryInfo } from './binary.js';
import { BufferByteSource, ElfReader } from './elf.js';
import { parseProcMaps } from './proc-maps.js';

export const VDSO_PATH = '[vdso]';
/** The vdso is one or two pages; refuse anything implausible. */
const MAX_VDSO_BYTES = 1 << 20;

/** Parses this process's vdso, or returns null if it cannot be read (no /proc, seccomp, ...). */
export function readOwnVdso(selfDir = '/proc/self'): BinaryInfo | null {
  try {
    const maps = parseProcMaps(readFileSync(`${selfDir}/maps`, 'utf8')).mappings;
    const vdso = maps.find((m) => m.path === VDSO_PATH);
    if (vdso === undefined) return null;
    const length = Number(vdso.endAddress - vdso.startAddress);
    if (length <= 0 || length > MAX_VDSO_BYTES) return null;
    const buf = Buffer.alloc(length);
    const fd = openSync(`${selfDir}/mem`, 'r');
    try {
      let done = 0;
      while (done < length) {
        const n = readSync(fd, buf, done, length - done, vdso.startAddress + BigInt(done));
        if (n === 0) return null;
        done += n;
      }
    } finally {
      closeSync(fd);
    }
    const elf = new ElfReader(new BufferByteSource(buf, VDSO_PATH));
    return loadBinary(elf, { binaryPath: VDSO_PATH, debugRoots: [] });
  } catch {
    return null;
  }
}
