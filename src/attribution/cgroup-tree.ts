// Finds the host's unified (v2) cgroup hierarchy and lists its cgroups with
// their ids, so selectors can be turned into cgroup ids before any of their
// processes is sampled.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { CgroupId } from './kernel-filter.js';

export interface UnifiedHierarchy {
  /** Where to read it from this process: through /proc/1/root, so an agent in its own mount and cgroup namespace (a DaemonSet pod with hostPID) sees the host's tree. */
  path: string;
  /** Where the host mounts it (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host). */
  mountPoint: string;
}

/**
 * The host's cgroup2 mount, from PID 1's mountinfo (the host's init with
 * hostPID; this process's own view otherwise). Only a mount of the
 * hierarchy's root counts: a container's cgroup namespace mounts its own
 * subtree, whose ids are right but whose paths lack the kubepods prefix.
 */
export function findUnifiedHierarchy(procRoot = '/proc'): UnifiedHierarchy | undefined {
  for (const pid of ['1', 'self']) {
    let text: string;
    try {
      text = readFileSync(join(procRoot, pid, 'mountinfo'), 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n')) {
      // id parent major:minor root mountpoint options [optional...] - fstype source superopts
      const separator = line.indexOf(' - ');
      if (separator < 0) continue;
      const fields = line.slice(0, separator).split(' ');
      const fsType = line.slice(separator + 3).split(' ')[0];
      if (fsType !== 'cgroup2' || fields[3] !== '/') continue;
      const mountPoint = unescapeMountField(fields[4] ?? '');
      const path = pid === '1' ? join(procRoot, '1', 'root', mountPoint) : mountPoint;
      try {
        statSync(path);
      } catch {
        continue;
      }
      return { path, mountPoint };
    }
  }
  return undefined;
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

export interface CgroupEntry {
  /** Path in the hierarchy, '/' for its root, as /proc/PID/cgroup writes it. */
  path: string;
  id: CgroupId;
}

/**
 * Every cgroup under `hierarchyPath` (depth first). A cgroup that vanishes
 * while it is walked is skipped: containers come and go.
 */
export function listCgroups(hierarchyPath: string): CgroupEntry[] {
  const out: CgroupEntry[] = [];
  const visit = (relative: string): void => {
    const absolute = relative === '/' ? hierarchyPath : join(hierarchyPath, relative);
    let id: bigint;
    try {
      id = statSync(absolute, { bigint: true }).ino;
    } catch {
      return;
    }
    out.push({ path: relative, id });
    let entries;
    try {
      entries = readdirSync(absolute, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) if (entry.isDirectory()) visit(relative === '/' ? `/${entry.name}` : `${relative}/${entry.name}`);
  };
  visit('/');
  return out;
}
