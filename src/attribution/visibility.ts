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
    const sysctl = (name: string): string => {
      try {
        return readFileSync(`${procRoot}/sys/kernel/${name}`, 'utf8').trim();
      } catch {
        return '?'; // the value only makes the message better
      }
    };
    // kallsyms shows addresses to a reader with CAP_SYSLOG when kptr_restrict <= 1,
    // and to anyone when it is 0 and perf_event_paranoid <= 1.
    return {
      visible: false,
      reason: `kernel addresses are hidden (kernel.kptr_restrict=${sysctl('kptr_restrict')}, kernel.perf_event_paranoid=${sysctl('perf_event_paranoid')}; a reader without CAP_SYSLOG sees zeros)`,
    };
  }
  return { visible: true };
}
