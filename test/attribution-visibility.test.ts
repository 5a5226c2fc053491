// What the agent cannot see, it says: hidden kernel addresses (kptr_restrict,
// no CAP_SYSLOG) and processes whose /proc/PID/root it cannot follow (no
// CAP_SYS_PTRACE over them) come out as warnings and counters, checked by
// running the real CLI with those capabilities taken away (setpriv).
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { kernelSymbolsVisible } from '../src/attribution/visibility.js';
import { packageRoot } from '../src/util/package-root.js';

describe('kernel symbol visibility', () => {
  it('zeros in kallsyms are reported with the kptr_restrict value; real addresses are not', () => {
    const procRoot = mkdtempSync(join(tmpdir(), 'fleetprof-proc-'));
    try {
      mkdirSync(join(procRoot, 'sys', 'kernel'), { recursive: true });
      writeFileSync(join(procRoot, 'sys', 'kernel', 'kptr_restrict'), '1\n');
      writeFileSync(join(procRoot, 'kallsyms'), '0000000000000000 T _stext\n0000000000000000 T do_syscall_64\n');
      const hidden = kernelSymbolsVisible(procRoot);
      expect(hidden.visible).toBe(false);
      expect(hidden.reason).toContain('kernel.kptr_restrict=1');
      expect(hidden.reason).toContain('CAP_SYSLOG');
      writeFileSync(join(procRoot, 'kallsyms'), 'ffffffff81000000 T _stext\nffffffff81001000 T do_syscall_64\n');
      expect(kernelSymbolsVisible(procRoot)).toEqual({ visible: true });
      rmSync(join(procRoot, 'kallsyms'));
      expect(kernelSymbolsVisible(procRoot).reason).toMatch(/cannot read .*kallsyms \(ENOENT\)/);
    } finally {
      rmSync(procRoot, { recursive: true, force: true });
    }
  });
});

describe('record without CAP_SYS_PTRACE and CAP_SYSLOG', () => {
  it('warns that kernel addresses are hidden and counts processes whose /proc/PID/root it cannot follow', async () => {
    const work = mkdtempSync(join(tmpdir(), 'fleetprof-visibility-'));
    // A busy process of another user: without CAP_SYS_PTRACE, root may not follow its /proc/PID/root.
    const other = spawn('sh', ['-c', 'while :; do :; done'], { uid: 65534, gid: 65534, stdio: 'ignore' });
    try {
      const result = spawnSync(
        'setpriv',
        [
          '--bounding-set=-all,+bpf,+perfmon,+sys_resource,+dac_read_search',
          '--inh-caps=-all',
          '--ambient-caps=-all',
          '--no-new-privs',
          '--',
          process.execPath,
          join(packageRoot(), 'dist', 'src', 'cli.js'),
          'record',
          '--duration',
          '2',
          '--output',
          join(work, 'out.pb.gz'),
          '--stats-json',
          join(work, 'stats.json'),
        ],
        { encoding: 'utf8' },
      );
      expect(result.status, result.stderr).toBe(0);
      const stats = JSON.parse(readFileSync(join(work, 'stats.json'), 'utf8')) as { samples: number; attribution: { procRootUnreadable: number } };
      expect(stats.samples).toBeGreaterThan(0);
      expect(stats.attribution.procRootUnreadable).toBeGreaterThan(0);
      expect(result.stderr).toMatch(/\d+ processes had an unreadable \/proc\/PID\/root/);
      // kallsyms hides addresses from a reader without CAP_SYSLOG when kptr_restrict >= 1, or when it is 0 and perf_event_paranoid >= 2.
      const kptrRestrict = Number(readFileSync('/proc/sys/kernel/kptr_restrict', 'utf8'));
      const paranoid = Number(readFileSync('/proc/sys/kernel/perf_event_paranoid', 'utf8'));
      if (kptrRestrict >= 1 || paranoid >= 2) expect(result.stderr).toContain('warning: kernel addresses are hidden');
      else expect(result.stderr).not.toContain('kernel addresses are hidden');
    } finally {
      other.kill('SIGKILL');
      rmSync(work, { recursive: true, force: true });
    }
  });
});
