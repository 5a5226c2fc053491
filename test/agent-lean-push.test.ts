// The real agent (real BPF, whole host) against a real server: with lean
// pushes on (stacks the server acknowledged go by content id), and
// what the server serves is exactly what the same profiles give as pprof:
// every profile the agent made is also ingested as pprof into a second
// server, and the two flame graphs are equal.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { startServer } from '../server/index.js';
import { Agent } from '../src/agent/agent.js';
import type { FlameGraphResponse } from '../src/profile/api-types.js';
import { buildCFixtures, type BuiltFixtures } from './helpers/fixtures.js';
import { flameSelfByPath, getJson, ingest } from './server-helpers.js';

const tempDir = (prefix: string) => mkdtempSync(join(tmpdir(), prefix));

describe('agent lean push', () => {
  let fixtures: BuiltFixtures;
  beforeAll(() => {
    fixtures = buildCFixtures();
  });

  it('pushes lean when asked, references stacks it pushed before, and the flame graph is that of its pprofs', { timeout: 120_000 }, async () => {
    const leanServer = await startServer({ dataDir: tempDir('fleetprof-lean-'), port: 0 });
    const reference = await startServer({ dataDir: tempDir('fleetprof-lean-ref-'), port: 0 });
    const made: { labels: Record<string, string>; body: Buffer }[] = [];
    const startMs = Date.now();
    const agent = await Agent.start({
      serverUrl: leanServer.url,
      frequencyHz: 499,
      intervalMs: 1500,
      spoolDir: tempDir('fleetprof-lean-spool-'),
      labels: { env: 'lean' },
      leanPush: true,
      onProfile: (labels, _samples, pprof) => made.push({ labels, body: pprof() }),
    });
    try {
      const workload = spawn(fixtures.cpuSplit, ['6'], { stdio: 'ignore' });
      await once(workload, 'exit');
      // The workload's stacks recur from interval to interval: once a push referenced some, /metrics says so
      // (read before stop(), which shuts metrics down; on a loaded machine the pushes may lag the intervals).
      while (agent.shipper.samplesByReference === 0 && Date.now() - startMs < 60_000) await sleep(100);
      const metrics = await agent.renderMetrics();
      await agent.stop(60_000);
      expect(agent.spool.stats().files).toBe(0);
      // Every profile went lean; none needed the pprof.
      expect(agent.shipper.leanPushes).toBe(made.length);
      expect(agent.shipper.fullPushes).toBe(0);
      expect(agent.shipper.rejected).toBe(0);
      expect(Number(/^fleetprof_agent_pushes_total\{format="push"[^}]*\} (\d+)/m.exec(metrics)?.[1])).toBeGreaterThan(0);
      expect(Number(/^fleetprof_agent_pushes_total\{format="pprof"[^}]*\} (\d+)/m.exec(metrics)?.[1])).toBe(0);
      expect(metrics).toMatch(/^fleetprof_agent_push_stacks_resent_total(\{[^}]*\})? 0$/m);
      // The workload's stacks recur from interval to interval: later pushes referenced them by id.
      expect(made.filter((m) => m.labels.comm === 'cpu-split').length).toBeGreaterThanOrEqual(3);
      expect(agent.shipper.samplesByReference).toBeGreaterThan(0);
      expect(Number(/^fleetprof_agent_push_stacks_total\{how="referenced"[^}]*\} (\d+)/m.exec(metrics)?.[1])).toBeGreaterThan(0);

      // The same profiles as pprof into the reference server.
      for (const m of made) expect((await ingest(reference.url, m.body, m.labels, { gzip: false })).status).toBe(200);
      const range = { from: String(startMs - 60_000), to: String(Date.now() + 60_000) };
      for (const query of ['{}', '{comm="cpu-split"}']) {
        const fg = async (url: string) => (await getJson<FlameGraphResponse>(url, '/api/v1/flamegraph', { ...range, query, groupBy: 'comm' })).body;
        const a = await fg(leanServer.url);
        const b = await fg(reference.url);
        expect(a.total).toBeGreaterThan(0);
        expect(a.total).toBe(b.total);
        expect(flameSelfByPath(a)).toEqual(flameSelfByPath(b));
      }
    } finally {
      await leanServer.close();
      await reference.close();
    }
  });
});
