// Every sample the kernel takes is either counted, or counted as dropped:
// nothing is lost silently, even when the BPF maps are far too small.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { sumStats } from '../src/sampler/bpf-layout.js';
import { Sampler, type DrainResult } from '../src/sampler/sampler.js';
import { buildCFixtures, type BuiltFixtures } from './helpers/fixtures.js';

function countedSamples(results: DrainResult[]): number {
  return results.reduce((sum, r) => sum + r.samples.reduce((s, sample) => s + sample.count, 0), 0);
}

describe('sampler accounting', () => {
  let fixtures: BuiltFixtures;
  beforeAll(() => {
    fixtures = buildCFixtures();
  });

  it('counts a full count map and a too small stack map as drops, and the books balance exactly', async () => {
    // Maps far smaller than the number of distinct stacks of this machine.
    const sampler = Sampler.start({ frequencyHz: 999, countMapEntries: 4, stackMapEntries: 4 });
    const workloads = [spawn(fixtures.cpuSplit, ['2'], { stdio: 'ignore' }), spawn(fixtures.syscallHeavy, ['2'], { stdio: 'ignore' })];
    const results: DrainResult[] = [];
    for (let i = 0; i < 3; i++) {
      await sleep(500);
      results.push(await sampler.drain());
    }
    await Promise.all(workloads.map((w) => once(w, 'exit')));
    results.push(await sampler.stop());
    const stats = results.map((r) => r.stats).reduce(sumStats);
    expect(stats.countsMapFull).toBeGreaterThan(0);
    // The stack map is an LRU: a stack evicted before user space read it is counted (or, finding nothing to evict, the insert fails).
    expect(stats.stackEvicted + stats.stackMapFull).toBeGreaterThan(0);
    // Taken = counted + dropped whole; idle and filtered-out ticks are not samples of anyone.
    expect(countedSamples(results) + stats.countsMapFull).toBe(stats.samples - stats.idle - stats.filtered);
  });

  it('loses nothing across drains while sampling continues', async () => {
    const sampler = Sampler.start({ frequencyHz: 999 });
    const workload = spawn(fixtures.cpuSplit, ['2'], { stdio: 'ignore' });
    const results: DrainResult[] = [];
    const exited = once(workload, 'exit');
    // Drain as fast as possible while the workload runs: every flip is a chance to lose samples.
    let done = false;
    void exited.then(() => (done = true));
    while (!done) results.push(await sampler.drain());
    results.push(await sampler.stop());
    const stats = results.map((r) => r.stats).reduce(sumStats);
    expect(results.length).toBeGreaterThan(20);
    expect(stats.countsMapFull).toBe(0);
    expect(countedSamples(results)).toBe(stats.samples - stats.idle - stats.filtered);
  });

  it('samples only the process tree given by filterTgid', async () => {
    // A shell whose two children are in the tree; a third workload is not.
    const outsider = spawn(fixtures.syscallHeavy, ['2'], { stdio: 'ignore' });
    const tree = spawn('/bin/sh', ['-c', `${fixtures.cpuSplit} 1.5 & ${fixtures.cpuSplit} 1.5; wait`], { stdio: 'ignore' });
    const sampler = Sampler.start({ frequencyHz: 499, filterTgid: tree.pid });
    await Promise.all([once(tree, 'exit'), once(outsider, 'exit')]);
    const result = await sampler.stop();
    const byTgid = new Map<number, string>();
    for (const sample of result.samples) byTgid.set(sample.tgid, sample.comm);
    expect([...byTgid.values()].filter((comm) => comm === 'cpu-split').length).toBe(2);
    expect([...byTgid.values()]).not.toContain('syscall-heavy');
    expect(result.stats.filtered).toBeGreaterThan(0);
  });
});
