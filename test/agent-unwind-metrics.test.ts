// The agent with --unwind dwarf says in /metrics how user stacks ended and
// how much memory the unwind tables hold, against the real BPF program.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { Agent } from '../src/agent/agent.js';
import { buildOmitFramePointerSplit } from './helpers/unwind-fixtures.js';

/** The value of a Prometheus sample line, e.g. metric('x_total', 'outcome="Complete"'). */
function metric(text: string, name: string, labels = ''): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const match = /^(\w+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (match?.[1] === name && (labels === '' || (match[2] ?? '').includes(labels))) return Number(match[3]);
  }
  return undefined;
}

describe('agent --unwind dwarf: /metrics', () => {
  it('counts user stacks by outcome and reports the tables and the memory their maps lock', async () => {
    const build = buildOmitFramePointerSplit('clang');
    // A stand-in ingest endpoint that takes every profile: the store is not what this test is about.
    const ingest = createServer((request, response) => {
      request.resume();
      request.on('end', () => response.writeHead(200).end());
    });
    ingest.listen(0, '127.0.0.1');
    await once(ingest, 'listening');
    const agent = await Agent.start({
      serverUrl: `http://127.0.0.1:${(ingest.address() as AddressInfo).port}`,
      frequencyHz: 199,
      intervalMs: 1000,
      spoolDir: mkdtempSync(join(tmpdir(), 'fleetprof-spool-')),
      unwind: 'dwarf',
    });
    try {
      await sleep(1500);
      const workload = spawn(build.cpuSplit, ['3'], { stdio: 'ignore' });
      await once(workload, 'exit');
      await sleep(1500);
      const text = await agent.renderMetrics();
      expect(metric(text, 'fleetprof_agent_user_stacks_total', 'outcome="Complete"')).toBeGreaterThan(0);
      const tableBytes = metric(text, 'fleetprof_agent_unwind_table_bytes');
      const lockedBytes = metric(text, 'fleetprof_agent_unwind_locked_map_bytes');
      expect(tableBytes).toBeGreaterThan(0);
      // The maps lock at least the preallocated row budget (16 MiB by default), which holds the tables.
      expect(lockedBytes).toBeGreaterThanOrEqual(16 << 20);
      expect(lockedBytes!).toBeGreaterThan(tableBytes!);
      expect(metric(text, 'fleetprof_agent_unwind_files')).toBeGreaterThan(0);
      // Processes map files no walk reaches (node maps glibc's empty libdl and libpthread stubs): not built.
      expect(metric(text, 'fleetprof_agent_unwind_files_deferred')).toBeGreaterThan(0);
      expect(metric(text, 'fleetprof_agent_unwind_files_over_budget_total') ?? 0).toBe(0);
    } finally {
      await agent.stop();
      ingest.close();
    }
  });
});
