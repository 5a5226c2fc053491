// The failures a user meets first must say what to do. Each is made real:
// no privileges (run as nobody), no BTF and no libbpf (masked by a bind
// mount in a private mount namespace, so the host is untouched).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../src/util/package-root.js';

const cli = join(packageRoot(), 'dist', 'src', 'cli.js');
const record = `${process.execPath} ${cli} record --duration 1 --output /tmp/fleetprof-error-test.pb.gz`;

function run(command: string, args: string[]): { status: number | null; stderr: string } {
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: 60_000 });
  return { status: result.status, stderr: result.stderr };
}

describe('errors that tell the user what to do', () => {
  it('without root: names the capabilities it needs', () => {
    const { status, stderr } = run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'sh', '-c', record]);
    expect(status).toBe(1);
    expect(stderr).toMatch(/needs root, or CAP_BPF and CAP_PERFMON/);
    expect(stderr).not.toMatch(/\n\s+at /); // a message, not a stack trace
  });

  it('without kernel BTF: says which kernel option provides it', () => {
    const { status, stderr } = run('unshare', ['-m', 'sh', '-c', `mount --bind /dev/null /sys/kernel/btf/vmlinux && ${record}`]);
    expect(status).toBe(1);
    expect(stderr).toMatch(/no usable BTF/);
    expect(stderr).toMatch(/CONFIG_DEBUG_INFO_BTF=y/);
  });

  it('with --pid of a process that does not exist: says so', () => {
    const { status, stderr } = run(process.execPath, [cli, 'record', '--duration', '1', '--pid', '999999999', '--output', '/tmp/fleetprof-error-test.pb.gz']);
    expect(status).toBe(1);
    expect(stderr).toMatch(/no process 999999999/);
  });

  it('without libbpf: says which package to install', () => {
    const mask = 'touch /tmp/fleetprof-empty.so && for lib in /lib/x86_64-linux-gnu/libbpf.so.1 /usr/lib/x86_64-linux-gnu/libbpf.so.1; do [ -e $lib ] && mount --bind /tmp/fleetprof-empty.so $(readlink -f $lib); done';
    const { status, stderr } = run('unshare', ['-m', 'sh', '-c', `${mask}; ${record}`]);
    expect(status).toBe(1);
    expect(stderr).toMatch(/libbpf is not installed/);
    expect(stderr).toMatch(/apt-get install libbpf1/);
  });
});
