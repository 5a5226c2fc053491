import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DiskSpool } from '../src/agent/spool.js';
import { packageRoot } from '../src/util/package-root.js';

function bytesOnDisk(dir: string): number {
  return readdirSync(dir).reduce((sum, name) => sum + statSync(join(dir, name)).size, 0);
}

describe('DiskSpool', () => {
  it('stays within its size bound by dropping the oldest profiles, and counts them', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fleetprof-spool-test-'));
    const spool = new DiskSpool(dir, 10_000);
    const ids = Array.from({ length: 8 }, (_, i) => spool.put({ comm: `p${i}` }, Buffer.alloc(2_000, i)));
    const stats = spool.stats();
    expect(stats.bytes).toBeLessThanOrEqual(10_000);
    expect(stats.bytes).toBe(bytesOnDisk(dir));
    expect(stats.droppedProfiles).toBe(8 - stats.files);
    expect(stats.droppedProfiles).toBeGreaterThan(0);
    // The survivors are the newest ones, in order.
    expect(spool.list()).toEqual(ids.slice(stats.droppedProfiles));
    expect(spool.read(spool.list()[0]!)?.labels).toEqual({ comm: `p${stats.droppedProfiles}` });
  });

  it('picks up what a previous run left, and forgets removed entries', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fleetprof-spool-test-'));
    const first = new DiskSpool(dir, 1 << 20);
    const a = first.put({ comm: 'a' }, Buffer.from('aaaa'));
    const b = first.put({ comm: 'b' }, Buffer.from('bbbbbb'));
    writeFileSync(join(dir, 'half-written.json.tmp'), '{');
    const second = new DiskSpool(dir, 1 << 20);
    expect(second.list()).toEqual([a, b]);
    expect(second.stats()).toMatchObject({ files: 2, bytes: bytesOnDisk(dir) });
    second.remove(a);
    expect(second.list()).toEqual([b]);
    expect(second.stats()).toMatchObject({ files: 1, bytes: bytesOnDisk(dir) });
    expect(second.read(b)?.body.toString()).toBe('bbbbbb');
  });
});

describe('DiskSpool durability', () => {
  // What a node crash keeps is what reached the disk: each file must be
  // fsynced before its rename, and the directory after the renames, all
  // before put() returns. strace records the real system calls in order.
  it('fsyncs each file before its rename and the directory before put() returns', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fleetprof-spool-test-'));
    const traceFile = join(dir, '..', `${basename(dir)}.strace`);
    const spoolModule = join(packageRoot(), 'dist', 'src', 'agent', 'spool.js');
    const script = [
      `const { DiskSpool } = await import(${JSON.stringify(spoolModule)});`,
      `const spool = new DiskSpool(${JSON.stringify(dir)}, 1 << 20);`,
      `process.stdout.write('PUT-START');`,
      `spool.put({ comm: 'x' }, Buffer.from('body'));`,
      `process.stdout.write('PUT-END');`,
    ].join('\n');
    execFileSync('strace', ['-f', '-qq', '-o', traceFile, '-e', 'trace=openat,fsync,fdatasync,rename,renameat,renameat2,write', process.execPath, '--input-type=module', '-e', script], {
      stdio: 'ignore',
    });
    const lines = readFileSync(traceFile, 'utf8').split('\n');
    rmSync(traceFile);
    const start = lines.findIndex((l) => l.includes('"PUT-START"'));
    const end = lines.findIndex((l) => l.includes('"PUT-END"'));
    expect(start, 'trace has the put').toBeGreaterThanOrEqual(0);
    const calls = lines.slice(start + 1, end);
    const pathOfFd = new Map<string, string>();
    const synced = new Set<string>();
    const events: string[] = [];
    for (const line of calls) {
      const open = /openat\(AT_FDCWD, "([^"]+)", [^)]*\)\s+=\s+(\d+)/.exec(line);
      if (open) pathOfFd.set(open[2]!, open[1]!);
      const sync = /f(?:data)?sync\((\d+)\)\s+=\s+0/.exec(line);
      if (sync) {
        const path = pathOfFd.get(sync[1]!) ?? `fd ${sync[1]}`;
        synced.add(path);
        events.push(`fsync ${path === dir ? 'DIR' : basename(path)}`);
      }
      const rename = /rename(?:at2?)?\((?:AT_FDCWD, )?"([^"]+)", (?:AT_FDCWD, )?"([^"]+)"/.exec(line);
      if (rename) {
        expect(synced.has(rename[1]!), `${basename(rename[1]!)} fsynced before its rename`).toBe(true);
        events.push(`rename ${basename(rename[2]!)}`);
      }
    }
    const renames = events.filter((e) => e.startsWith('rename'));
    expect(renames).toHaveLength(2);
    // The directory is synced after the last rename, before put() returns.
    expect(events.lastIndexOf('fsync DIR'), events.join(', ')).toBeGreaterThan(events.lastIndexOf(renames[1]!));
  });
});
