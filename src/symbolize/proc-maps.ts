// Parser for /proc/PID/maps (see proc(5)). Hand-written: the format is one
// regular line per mapping and the npm parsers either lose 64-bit precision
// (parseInt on addresses) or do not keep the offset/dev/inode we need.

/** Runtime virtual address in a process. */
export type ProcessAddress = bigint;

export interface Mapping {
  startAddress: ProcessAddress;
  /** Exclusive. */
  endAddress: ProcessAddress;
  /** e.g. "r-xp" */
  perms: string;
  fileOffset: bigint;
  /** "major:minor" in hex, as the kernel prints it. */
  dev: string;
  inode: bigint;
  /** Path without the " (deleted)" suffix; '' for anonymous memory; "[vdso]", "[heap]", ... for pseudo-mappings. */
  path: string;
  isDeleted: boolean;
}

export interface ParsedMaps {
  /** Sorted by startAddress (the kernel prints them that way; we sort to be sure). */
  mappings: Mapping[];
  /** Lines that did not parse; they are skipped, not fatal. */
  malformedLines: number;
}

const DELETED_SUFFIX = ' (deleted)';
// start-end perms offset dev inode [path]; path may contain spaces, so it is "the rest".
const LINE_RE = /^([0-9a-f]+)-([0-9a-f]+)\s+([r-][w-][x-][ps])\s+([0-9a-f]+)\s+([0-9a-f]+:[0-9a-f]+)\s+(\d+)(?:\s+(.*))?$/i;

export function parseProcMaps(text: string): ParsedMaps {
  const mappings: Mapping[] = [];
  let malformedLines = 0;
  for (const rawLine of text.split('\n')) {
    if (rawLine.trim() === '') continue;
    const m = LINE_RE.exec(rawLine);
    if (m === null) {
      malformedLines++;
      continue;
    }
    const startAddress = BigInt('0x' + m[1]!);
    const endAddress = BigInt('0x' + m[2]!);
    if (endAddress <= startAddress) {
      malformedLines++;
      continue;
    }
    let path = m[7] ?? '';
    let isDeleted = false;
    if (path.endsWith(DELETED_SUFFIX)) {
      isDeleted = true;
      path = path.slice(0, -DELETED_SUFFIX.length);
    }
    mappings.push({
      startAddress,
      endAddress,
      perms: m[3]!,
      fileOffset: BigInt('0x' + m[4]!),
      dev: m[5]!.toLowerCase(),
      inode: BigInt(m[6]!),
      path,
      isDeleted,
    });
  }
  mappings.sort((a, b) => (a.startAddress < b.startAddress ? -1 : a.startAddress > b.startAddress ? 1 : 0));
  return { mappings, malformedLines };
}

export function isExecutable(m: Mapping): boolean {
  return m.perms[2] === 'x';
}

/** A mapping backed by a regular file (not anonymous memory, not [vdso]/[heap]/..., not memfd or anon_inode). */
export function isFileBacked(m: Mapping): boolean {
  return m.path.startsWith('/') && m.inode !== 0n;
}

/** The mapping containing `address`, or undefined. `mappings` must be sorted and non-overlapping (as the kernel gives them). */
export function findMapping(mappings: readonly Mapping[], address: ProcessAddress): Mapping | undefined {
  let lo = 0;
  let hi = mappings.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const m = mappings[mid]!;
    if (address < m.startAddress) hi = mid - 1;
    else if (address >= m.endAddress) lo = mid + 1;
    else return m;
  }
  return undefined;
}

/** Like findMapping, but only executable mappings count (a return address never points into data). */
export function findExecutableMapping(mappings: readonly Mapping[], address: ProcessAddress): Mapping | undefined {
  const m = findMapping(mappings, address);
  return m !== undefined && isExecutable(m) ? m : undefined;
}
