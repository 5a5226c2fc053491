// What the agent cannot see, found out at start so it can be said: a profile
// with unnamed kernel frames or unlabelled containers should never be a
// surprise.
import { openSync, readSync, closeSync, readFileSync } from 'node:fs';

/**
 * Whether /proc/kallsyms shows real addresses. With kptr_restrict=1 a reader
 * without CAP_SYSLOG (a container that was not granted it), and with
 * kptr_restrict=2 everyone, reads zeros: kernel frames then go unnamed.
 */
export function kernelSymbolsVisible(procRoot = '/proc'): { visible: boolean; reason?: string } {
  let head: string;
  try {
    const fd = openSync(`${procRoot}/kallsyms`, 'r');
    try {
      const buffer = Buffer.alloc(4096);
      head = buffer.toString('latin1', 0, readSync(fd, buffer, 0, buffer.length, 0));
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    return { visible: false, reason: `cannot read ${procRoot}/kallsyms (${(error as NodeJS.ErrnoException).code ?? String(error)})` };
  }
  const lines = head.split('\n').slice(0, -1);
  if (lines.length > 0 && lines.every((line) => /^0+ /.test(line))) {
    let restrict = '?';
    try {
      restrict = readFileSync(`${procRoot}/sys/kernel/kptr_restrict`, 'utf8').trim();
    } catch {
      // the value only makes the message better
    }
    return { visible: false, reason: `kernel addresses are hidden (kernel.kptr_restrict=${restrict}; CAP_SYSLOG is needed when it is 1)` };
  }
  return { visible: true };
}
