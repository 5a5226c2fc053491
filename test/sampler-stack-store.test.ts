// Stacks persist across drains: the BPF program stores a stack once, in an
// LRU map that does not flip with the counts, and the sampler reads each
// stack from the kernel once and keeps it while drains reference it.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { sumStats } from '../src/sampler/bpf-layout.js';
import { Sampler, type DrainResult } from '../src/sampler/sampler.js';
import { buildCFixtures, type BuiltFixtures } from './helpers/fixtures.js';

describe('sampler stack store', () => {
  let fixtures: BuiltFixtures;
  beforeAll(() => {
    fixtures = buildCFixtures();
  });

  it('reads each stack from the kernel once, and delivers a recurring stack with the same addresses in every drain', async () => {
    const sampler = Sampler.start({ frequencyHz: 999 });
    const workload = spawn(fixtures.cpuSplit, ['3'], { stdio: 'ignore' });
    const exited = once(workload, 'exit');
    const results: DrainResult[] = [];
    try {
      for (let i = 0; i < 4; i++) {
        await sleep(500);
        results.push(await sampler.drain());
      }
      await exited;
    } finally {
      results.push(await sampler.stop());
    }
    // Every stack hash each drain referenced, with the addresses it delivered.
    const byHash = new Map<bigint, { addresses: string; drains: Set<number> }>();
    let mismatched = 0;
    results.forEach((result, drain) => {
      for (const sample of result.samples) {
        for (const [hash, addresses] of [
          [sample.userStackHash, sample.userStack],
          [sample.kernelStackHash, sample.kernelStack],
        ] as const) {
          if (hash === 0n) continue;
          const text = addresses.join(',');
          const seen = byHash.get(hash);
          if (seen === undefined) byHash.set(hash, { addresses: text, drains: new Set([drain]) });
          else {
            if (seen.addresses !== text) mismatched++;
            seen.drains.add(drain);
          }
        }
      }
    });
    const workloadStacks = new Set(results.flatMap((r) => r.samples.filter((s) => s.tgid === workload.pid).map((s) => s.userStackHash)));
    const recurring = [...workloadStacks].filter((hash) => (byHash.get(hash)?.drains.size ?? 0) >= 3);
    // cpu-split spends its time in three leaves: their stacks recur in every drain it ran through.
    expect(recurring.length).toBeGreaterThan(0);
    expect(mismatched).toBe(0);
    for (const hash of recurring) expect(byHash.get(hash)!.addresses).not.toBe('');
    // One read per distinct stack: a stack kept from an earlier drain is not read (nor re-stored) again.
    expect(sampler.stackReads).toBe(byHash.size);
    const stats = results.map((r) => r.stats).reduce(sumStats);
    expect(stats.stackEvicted).toBe(0);
    expect(stats.stackMapFull).toBe(0);
  });
});
