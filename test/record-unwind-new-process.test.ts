// A process that starts while the agent is busiest (it has just started:
// every running process's tables are being built and the first drains
// symbolized on a host it has not seen) must be unwound whole from its first
// samples, not leaf-only until the agent is done: it is loaded between slices
// of symbolization, and its own small binaries are built first, off the
// agent's event loop (src/unwind/table-worker.ts). Fails on the single-threaded
// loader, where it waited for the first drains' symbolization and the host's
// small files.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { record } from '../src/agent/record.js';
import { flattenProfile, hasContiguousPath, readProfile, sumCounts, type FlatSample } from './helpers/pprof.js';
import { buildOmitFramePointerSplit } from './helpers/unwind-fixtures.js';

const RECORD_MS = 6_000;
const WORKLOAD_SECONDS = 3;
const FREQUENCY_HZ = 499;
const START_AFTER_MS = 300;
// Measured on the shared 2-CPU machine: >= 90% in two runs at load 3-8, 60-82% in five while other jobs kept
// it at load 7-8 (the agent's event loop, which still writes each new table into the maps, was held by
// single symbolization steps of up to a second). The single-threaded loader gave 3.8%: leaf-only until
// the host's backlog was done. The bound catches that, not the machine's load.
const WHOLE_MIN_PERCENT = 40;

const userFrames = (s: FlatSample): string[] => s.stack.filter((_, i) => !s.mappings[i]!.startsWith('[kernel.kallsyms]'));

describe('record --unwind dwarf: a process started mid-recording', () => {
  it('gets its whole chain (main to leaf) in most of its samples, leaf-only ones included', async () => {
    // A binary never seen before, so its tables are built during the run.
    const split = buildOmitFramePointerSplit('clang');
    const profilePath = join(mkdtempSync(join(tmpdir(), 'fleetprof-unwind-new-')), 'profile.pb.gz');
    const recording = record({ durationMs: RECORD_MS, frequencyHz: FREQUENCY_HZ, outputPath: profilePath, unwind: 'dwarf', drainIntervalMs: 250 });
    // While the agent is busiest: loading every running process's tables and symbolizing its first drains.
    await sleep(START_AFTER_MS);
    const child = spawn(split.cpuSplit, [String(WORKLOAD_SECONDS)], { stdio: 'ignore' });
    const summary = await recording;
    if (child!.exitCode === null) await once(child!, 'exit');
    expect(child!.exitCode).toBe(0);
    const mine = flattenProfile(readProfile(profilePath)).filter((s) => s.labels.pid === child!.pid && userFrames(s).length > 0);
    const total = sumCounts(mine);
    const chains = [
      ['main', 'run_round', 'alpha_leaf'],
      ['main', 'run_round', 'beta_leaf'],
      ['main', 'run_round', 'shared_gamma_leaf'],
    ];
    const whole = sumCounts(mine.filter((s) => chains.some((chain) => hasContiguousPath(userFrames(s), chain) && userFrames(s).at(-1) === chain.at(-1))));
    const counts = new Map<string, number>();
    for (const s of mine) counts.set(userFrames(s).join(' > '), (counts.get(userFrames(s).join(' > ')) ?? 0) + (s.values[0] ?? 0));
    const context = JSON.stringify({ total, whole, notLoaded: summary.unwind?.outcomes.unwindProcessNotLoaded, top: [...counts].sort((a, b) => b[1] - a[1]).slice(0, 4) });
    expect(total, context).toBeGreaterThan(150);
    expect((100 * whole) / total, context).toBeGreaterThanOrEqual(WHOLE_MIN_PERCENT);
  }, 60_000);
});
