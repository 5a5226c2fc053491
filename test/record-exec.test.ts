// A process that execs keeps its pid but maps other code. The kernel side
// must announce it again (tp_btf/sched_process_exec forgets it, and every
// CPU's "last announced" entry is outdated by the exec counter), so user space
// snapshots the new mappings before the process exits. The only drain comes
// after the exit, so without that second snapshot nothing could resolve the
// new program's frames: /proc/PID is gone by then.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { record } from '../src/agent/record.js';
import { buildCFixtures } from './helpers/fixtures.js';
import { flattenProfile, hasContiguousPath, readProfile, sumCounts, type FlatSample } from './helpers/pprof.js';

const FREQUENCY_HZ = 499;

describe('record: a process that execs another program', () => {
  let samples: FlatSample[];
  let pid = 0;

  beforeAll(async () => {
    const { cpuSplit } = buildCFixtures();
    const outputPath = join(mkdtempSync(join(tmpdir(), 'fleetprof-exec-')), 'profile.pb.gz');
    let started!: () => void;
    const attached = new Promise<void>((resolve) => (started = resolve));
    const recording = record({ durationMs: 6000, frequencyHz: FREQUENCY_HZ, outputPath, drainIntervalMs: 60_000, onStarted: started });
    // The shell's busy phase must run while the sampler is attached (attaching took long enough on a loaded CI machine to miss most of it).
    await Promise.race([attached, recording]);
    // Busy in the shell first, so the process is sampled (and announced) as sh, then exec.
    const child = spawn('/bin/sh', ['-c', 'i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; exec "$0" 2', cpuSplit], { stdio: 'ignore' });
    pid = child.pid ?? 0;
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(0);
    await recording;
    samples = flattenProfile(readProfile(outputPath)).filter((s) => s.labels.pid === pid);
  });

  it('samples the process both before and after the exec', () => {
    const before = samples.filter((s) => s.labels.comm !== 'cpu-split');
    const after = samples.filter((s) => s.labels.comm === 'cpu-split');
    expect(sumCounts(before)).toBeGreaterThan(20);
    expect(sumCounts(after)).toBeGreaterThan(300);
  });

  it('resolves the new program from a snapshot taken after the exec: full chains in its own binary', () => {
    const after = samples.filter((s) => s.labels.comm === 'cpu-split');
    const chains = [
      ['main', 'run_round', 'alpha_leaf'],
      ['main', 'run_round', 'beta_middle', 'beta_leaf'],
      ['main', 'run_round', 'shared_gamma_leaf'],
    ];
    const resolved = sumCounts(after.filter((s) => chains.some((chain) => hasContiguousPath(s.stack, chain) && s.stack[s.stack.length - 1] === chain[chain.length - 1])));
    expect((100 * resolved) / sumCounts(after)).toBeGreaterThanOrEqual(95);
    const main = after.find((s) => s.stack.includes('main'));
    expect(main?.mappings[main.stack.indexOf('main')]).toMatch(/\/cpu-split$/);
  });
});
