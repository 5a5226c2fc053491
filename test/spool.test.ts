import { mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DiskSpool } from '../src/agent/spool.js';

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
