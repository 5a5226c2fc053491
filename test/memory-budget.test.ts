// The agent's memory stays under its budget: the budget is shared out among
// the caches, processes are forgotten even when every sample of theirs was
// dropped, a JIT process's perf map has one reader, and perf maps past their
// share are dropped (counted) and read again when needed.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Collector } from '../src/agent/collector.js';
import { BYTES_PER_IDENTITY_ENTRY } from '../src/profile/push-identity-cache.js';
import { BYTES_PER_CACHED_FRAME, cacheLimits, FALLBACK_MEMORY_BUDGET_MB, resolveMemoryBudgetMb } from '../src/agent/memory-budget.js';
import { Symbolizer } from '../src/symbolize/symbolizer.js';

describe('memory budget', () => {
  it('comes from the flag, the container limit or the cgroup, and its shares fit in it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fleetprof-budget-'));
    const cgroup = join(dir, 'memory.max');
    writeFileSync(cgroup, `${300 * 2 ** 20}\n`);
    expect(resolveMemoryBudgetMb(123, { FLEETPROF_MEMORY_LIMIT_MB: '300' }, cgroup)).toBe(123);
    expect(resolveMemoryBudgetMb(undefined, { FLEETPROF_MEMORY_LIMIT_MB: '300' }, cgroup)).toBe(255);
    expect(resolveMemoryBudgetMb(undefined, {}, cgroup)).toBe(255);
    writeFileSync(cgroup, 'max\n');
    expect(resolveMemoryBudgetMb(undefined, {}, cgroup)).toBe(FALLBACK_MEMORY_BUDGET_MB);
    for (const mb of [128, 255, 1024]) {
      const l = cacheLimits(mb);
      const estimated = l.binaryCacheBytes + l.perfMapBytes + l.maxStacks * 2048 + l.maxProcesses * 16 * 1024 + l.maxCachedFrames * BYTES_PER_CACHED_FRAME + l.maxPushIdentities * BYTES_PER_IDENTITY_ENTRY;
      expect(estimated, `${mb} MiB`).toBeLessThanOrEqual(Math.max(mb * 2 ** 20, 96 * 2 ** 20 + 16 * 2 ** 20));
    }
    // The DaemonSet's 300 MiB limit no longer allows a 1 GiB binary cache.
    expect(cacheLimits(255).binaryCacheBytes).toBeLessThan(100 * 2 ** 20);
  });
});

describe('JIT perf maps', () => {
  let node: ChildProcess;
  let mapPath: string;
  beforeAll(async () => {
    // A real JIT: node writing its perf map while it keeps compiling.
    node = spawn(process.execPath, ['--perf-basic-prof', '-e', 'const f = []; setInterval(() => { f.push(new Function("x", "return x + " + f.length)); f[f.length - 1](1); }, 5);'], { stdio: 'ignore' });
    mapPath = `/tmp/perf-${node.pid}.map`;
    while (!existsSync(mapPath) || readFileSync(mapPath, 'utf8').split('\n').length < 500) await sleep(50);
  });
  afterAll(async () => {
    node.kill('SIGKILL');
    await once(node, 'exit');
  });

  it('has one reader per perf-map file', () => {
    const s = new Symbolizer();
    expect(s.observeProcess(node.pid!)).toBe(true);
    expect(s.stats().perfMapReaders).toBe(1);
    expect(s.stats().perfMapBytes).toBeGreaterThan(0);
  });

  it('drops perf maps past their share, counts it, and reads them again when a frame needs them', () => {
    const s = new Symbolizer({ perfMapMaxBytes: 1024 });
    s.observeProcess(node.pid!);
    const line = readFileSync(mapPath, 'utf8').split('\n').find((l) => /^[0-9a-f]+ [0-9a-f]+ JS:/.test(l)) ?? readFileSync(mapPath, 'utf8').split('\n')[0]!;
    const address = BigInt('0x' + line.split(' ')[0]!) + 1n;
    expect(s.trimToBudget()).toBe(1);
    expect(s.stats()).toMatchObject({ perfMapEvictions: 1, perfMapBytes: 0 });
    const [frame] = s.symbolizeUser(node.pid!, [address]);
    expect(frame?.kind).toBe('jit');
    expect(frame?.functionName).not.toBeNull();
  });
});

describe('process state', () => {
  it('forgets processes whose every sample was dropped in the kernel', { timeout: 120_000 }, async () => {
    // One count-map entry: nearly every sample is dropped (counted), but new processes are still announced.
    const collector = Collector.start({ frequencyHz: 999, countMapEntries: 1, stackMapEntries: 1 });
    const pids: number[] = [];
    try {
      for (let i = 0; i < 20; i++) {
        const child = spawn('/bin/sh', ['-c', 'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done'], { stdio: 'ignore' });
        pids.push(child.pid!);
        await once(child, 'exit');
      }
      await collector.collect();
      const tracked = pids.filter((pid) => collector.tracks(pid)).length;
      expect(tracked).toBeGreaterThan(0); // announced, so tracked for a while
      for (let i = 0; i < 32; i++) await collector.collect(); // past PROCESS_IDLE_DRAINS
      expect(pids.filter((pid) => collector.tracks(pid))).toEqual([]);
    } finally {
      await collector.stop();
    }
  });

  it('forgets a process one drain after it exited, and keeps one that lives', { timeout: 120_000 }, async () => {
    const collector = Collector.start({ frequencyHz: 999 });
    const living = spawn('/bin/sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' });
    try {
      const exited: number[] = [];
      for (let i = 0; i < 10; i++) {
        const child = spawn('/bin/sh', ['-c', 'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done'], { stdio: 'ignore' });
        exited.push(child.pid!);
        await once(child, 'exit');
      }
      await sleep(300);
      await collector.collect(); // finds the exited ones gone
      expect(exited.filter((pid) => collector.tracks(pid)).length).toBeGreaterThan(0);
      expect(collector.tracks(living.pid!)).toBe(true);
      await collector.collect(); // the drain after: they go, long before PROCESS_IDLE_DRAINS
      expect(exited.filter((pid) => collector.tracks(pid))).toEqual([]);
      expect(collector.exitedProcessesForgotten).toBeGreaterThan(0);
      for (let i = 0; i < 3; i++) await collector.collect();
      expect(collector.tracks(living.pid!)).toBe(true);
      living.kill('SIGKILL');
      await once(living, 'exit');
      await collector.collect();
      await collector.collect();
      expect(collector.tracks(living.pid!)).toBe(false);
    } finally {
      living.kill('SIGKILL');
      await collector.stop();
    }
  });

  it('evicts the least recently sampled processes past maxProcesses, counted', { timeout: 120_000 }, async () => {
    const collector = Collector.start({ frequencyHz: 999, limits: { maxProcesses: 5 } });
    try {
      for (let i = 0; i < 12; i++) {
        const child = spawn('/bin/sh', ['-c', 'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done'], { stdio: 'ignore' });
        await once(child, 'exit');
      }
      await collector.collect();
      expect(collector.processesSeen).toBeLessThanOrEqual(5);
      expect(collector.evictions.processes).toBeGreaterThan(0);
    } finally {
      await collector.stop();
    }
  });
});
