// The real agent (real BPF, whole host) pushing lean pushes made from its
// profile builders (ids kept across intervals, src/profile/push-identity-cache.ts)
// while processes come and go: one process runs through every interval, and
// short-lived copies of the same binary start and exit all along (new
// frame objects, new ASLR bases, the same code). Every profile the agent
// made is also ingested as pprof into a second server: the two servers must
// serve the same flame graphs and top tables. A lean push whose ids differ
// from the server's rules is refused (400), so the counts below catch that too.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { startServer } from '../server/index.js';
import { Agent } from '../src/agent/agent.js';
import type { FlameGraphResponse, TopResponse } from '../src/profile/api-types.js';
import { buildCFixtures, type BuiltFixtures } from './helpers/fixtures.js';
import { flameSelfByPath, getJson, ingest } from './server-helpers.js';

const tempDir = (prefix: string) => mkdtempSync(join(tmpdir(), prefix));

describe('agent lean push with process churn', () => {
  let fixtures: BuiltFixtures;
  beforeAll(() => {
    fixtures = buildCFixtures();
  });

  it('serves what the same profiles serve as pprof, interval after interval', { timeout: 180_000 }, async () => {
    const leanServer = await startServer({ dataDir: tempDir('fleetprof-churn-'), port: 0 });
    const reference = await startServer({ dataDir: tempDir('fleetprof-churn-ref-'), port: 0 });
    const made: { labels: Record<string, string>; body: Buffer }[] = [];
    const startMs = Date.now();
    const agent = await Agent.start({
      serverUrl: leanServer.url,
      frequencyHz: 499,
      intervalMs: 1000,
      spoolDir: tempDir('fleetprof-churn-spool-'),
      labels: { env: 'churn' },
      leanPush: true,
      onProfile: (labels, _samples, pprof) => made.push({ labels, body: pprof() }),
    });
    try {
      const steady = spawn(fixtures.cpuSplit, ['8'], { stdio: 'ignore' });
      const exited = once(steady, 'exit');
      // Short-lived copies, two at a time, until the steady one ends.
      const churn: ChildProcess[] = [];
      let done = false;
      void exited.then(() => (done = true));
      while (!done) {
        const a = spawn(fixtures.cpuSplit, ['0.3'], { stdio: 'ignore' });
        const b = spawn(fixtures.syscallHeavy, ['0.3'], { stdio: 'ignore' });
        churn.push(a, b);
        await Promise.all([once(a, 'exit'), once(b, 'exit')]);
        await sleep(100);
      }
      expect(churn.length).toBeGreaterThanOrEqual(10);
      while (agent.shipper.samplesByReference === 0 && Date.now() - startMs < 60_000) await sleep(100);
      const metrics = await agent.renderMetrics();
      await agent.stop(60_000);

      expect(agent.spool.stats().files).toBe(0);
      expect(agent.shipper.rejected).toBe(0);
      expect(agent.shipper.fullPushes).toBe(0);
      expect(agent.shipper.leanPushes).toBe(made.length);
      expect(agent.shipper.stacksResent).toBe(0);
      expect(agent.shipper.samplesByReference).toBeGreaterThan(0);
      // Ids of functions and mappings computed in one interval were found again in later ones.
      expect(agent.identities?.counters.hits).toBeGreaterThan(0);
      expect(Number(/^fleetprof_agent_cache_bytes\{cache="push_identities"[^}]*\} (\d+)/m.exec(metrics)?.[1])).toBeGreaterThan(0);
      // While the server took lean pushes, the spooled pprofs were not gzipped (gzipped only if sent as pprof).
      expect(made.some((m) => !(m.body[0] === 0x1f && m.body[1] === 0x8b))).toBe(true);
      expect(made.filter((m) => m.labels.comm === 'cpu-split').length).toBeGreaterThanOrEqual(4);

      // The same profiles as pprof into the reference server (it takes them gzipped or not).
      for (const m of made) expect((await ingest(reference.url, m.body, m.labels, { gzip: false })).status).toBe(200);
      const range = { from: String(startMs - 60_000), to: String(Date.now() + 60_000) };
      for (const query of ['{}', '{comm="cpu-split"}', '{comm="syscall-heavy"}']) {
        const fg = async (url: string) => (await getJson<FlameGraphResponse>(url, '/api/v1/flamegraph', { ...range, query, groupBy: 'comm' })).body;
        const a = await fg(leanServer.url);
        const b = await fg(reference.url);
        expect(a.total, query).toBeGreaterThan(0);
        expect(a.total, query).toBe(b.total);
        expect(flameSelfByPath(a), query).toEqual(flameSelfByPath(b));
        const top = async (url: string) => (await getJson<TopResponse>(url, '/api/v1/top', { ...range, query })).body;
        expect(await top(leanServer.url), query).toEqual(await top(reference.url));
      }
    } finally {
      await leanServer.close();
      await reference.close();
    }
  });
});
