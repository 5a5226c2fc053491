// The agent against a real server over real HTTP: what the known-split
// workload spends comes out of the query API in the same shares, and a
// server outage of 60 s loses nothing.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { gunzipSync } from 'node:zlib';
import { Profile } from 'pprof-format';
import { beforeAll, describe, expect, it } from 'vitest';
import { startServer } from '../server/index.js';
import { Agent } from '../src/agent/agent.js';
import type { TimelineResponse } from '../src/profile/api-types.js';
import { buildCFixtures, parseMeasuredShares, type BuiltFixtures, type MeasuredShares } from './helpers/fixtures.js';
import { flattenProfile, sumCounts } from './helpers/pprof.js';

function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

async function downloadProfile(serverUrl: string, query: string, fromMs: number, toMs: number): Promise<Profile> {
  const url = `${serverUrl}/api/v1/profile?query=${encodeURIComponent(query)}&from=${fromMs}&to=${toMs}`;
  const response = await fetch(url);
  expect(response.status, await response.clone().text().catch(() => '')).toBe(200);
  return Profile.decode(gunzipSync(Buffer.from(await response.arrayBuffer())));
}

const leaf = (stack: string[]): string => stack[stack.length - 1] ?? '';

describe('agent → server → query', () => {
  let fixtures: BuiltFixtures;
  beforeAll(() => {
    fixtures = buildCFixtures();
  });

  it('serves the known split of a workload pushed by a real agent, and the merge is the sum of the pushes', async () => {
    const server = await startServer({ dataDir: tempDir('fleetprof-e2e-'), port: 0 });
    const shipped: { labels: Record<string, string>; samples: number }[] = [];
    const startMs = Date.now();
    const agent = await Agent.start({
      serverUrl: server.url,
      frequencyHz: 773,
      intervalMs: 2000,
      spoolDir: tempDir('fleetprof-spool-'),
      labels: { env: 'test' },
      onProfile: (labels, samples) => shipped.push({ labels, samples }),
    });
    try {
      const workload = spawn(fixtures.cpuSplit, ['8'], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      workload.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      await once(workload, 'exit');
      const measured = parseMeasuredShares(out);
      // Self-observability: the agent's Prometheus text counts what it took (read before stop() shuts metrics down).
      const shippedBeforeStop = shipped.reduce((sum, p) => sum + p.samples, 0);
      const metrics = await agent.renderMetrics();
      const counted = /^fleetprof_agent_samples_total(?:\{[^}]*\})? (\d+)/m.exec(metrics);
      expect(Number(counted?.[1])).toBe(shippedBeforeStop);
      await agent.stop(60_000); // everything delivered: the merge below must be the sum of the pushes
      expect(agent.spool.stats().files).toBe(0);
      const profile = await downloadProfile(server.url, '{comm="cpu-split",env="test"}', startMs - 1000, Date.now() + 1000);
      const samples = flattenProfile(profile);
      const total = sumCounts(samples);
      const pushed = shipped.filter((p) => p.labels.comm === 'cpu-split');
      expect(pushed.length).toBeGreaterThanOrEqual(3); // several intervals, merged by the server
      expect(total).toBe(pushed.reduce((sum, p) => sum + p.samples, 0));
      expect(total).toBeGreaterThan(1000);
      const leaves = Object.keys(measured) as (keyof MeasuredShares)[];
      const inLeaves = samples.filter((s) => (leaves as string[]).includes(leaf(s.stack)));
      const share = (name: string): number => (100 * sumCounts(inLeaves.filter((s) => leaf(s.stack) === name))) / sumCounts(inLeaves);
      const context = JSON.stringify({ profile: Object.fromEntries(leaves.map((n) => [n, share(n)])), measured, samples: total });
      for (const name of leaves) expect(Math.abs(share(name) - measured[name]), context).toBeLessThanOrEqual(3);
      // Every series carries this host's name as its node label (the default), and the server stored it so.
      expect(new Set(shipped.map((p) => p.labels.node))).toEqual(new Set([hostname()]));
      const nodes = (await (await fetch(`${server.url}/api/v1/labels/node/values`)).json()) as { values: string[] };
      expect(nodes.values).toEqual([hostname()]);
    } finally {
      await server.close();
    }
  });

  it('keeps sampling through a 60 s server outage and delivers those samples when the server returns', async () => {
    const dataDir = tempDir('fleetprof-outage-');
    let server = await startServer({ dataDir, port: 0 });
    const port = Number(new URL(server.url).port);
    const shipped = new Map<string, number>();
    const startMs = Date.now();
    const agent = await Agent.start({
      serverUrl: server.url,
      frequencyHz: 49,
      intervalMs: 2000,
      spoolDir: tempDir('fleetprof-spool-'),
      onProfile: (labels, samples) => {
        if (labels.comm === 'cpu-split') shipped.set(labels.comm, (shipped.get(labels.comm) ?? 0) + samples);
      },
    });
    const workload = spawn(fixtures.cpuSplit, ['74'], { stdio: 'ignore' });
    const exited = once(workload, 'exit');
    try {
      await sleep(5000);
      await server.close();
      const downFromMs = Date.now();
      await sleep(60_000);
      const downToMs = Date.now();
      expect(agent.spool.stats().files).toBeGreaterThan(0); // the outage's profiles wait on disk
      server = await startServer({ dataDir, port });
      await exited;
      await agent.stop(60_000); // flushes the backlog and the last interval
      expect(agent.spool.stats().files).toBe(0);
      const profile = await downloadProfile(server.url, '{comm="cpu-split"}', startMs - 1000, Date.now() + 1000);
      expect(sumCounts(flattenProfile(profile))).toBe(shipped.get('cpu-split'));
      // The samples taken while the server was down are there, at their own times.
      const stepMs = 5000;
      const timeline = (await (
        await fetch(`${server.url}/api/v1/timeline?query=${encodeURIComponent('{comm="cpu-split"}')}&from=${downFromMs}&to=${downToMs}&stepMs=${stepMs}`)
      ).json()) as TimelineResponse;
      const during = timeline.values.reduce((a, b) => a + b, 0);
      expect(during).toBeGreaterThan(0.5 * 49 * 60 * 0.5); // at least half of what half a CPU would give
    } finally {
      workload.kill('SIGKILL');
      await server.close();
    }
  }, 180_000);
});
