// `fleetprof agent` as a real process (real BPF) told to stop while its
// server hangs: it must end promptly, with every profile it made either
// delivered or in the spool. And its /metrics is on by default.
import { readdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { startServer } from '../server/index.js';
import { DiskSpool } from '../src/agent/spool.js';
import { Shipper } from '../src/agent/shipper.js';
import { runCli, waitForStderr } from './helpers/cli.js';
import { hangingServer } from './helpers/hanging-server.js';
import { getJson, tempDir } from './server-helpers.js';

/** The agent's own deadline is 1.9 s; this bound only tells "stopped" from "still running". */
const STILL_RUNNING_AFTER_MS = 10_000;

describe('agent shutdown', () => {
  it('ends soon after SIGTERM while its server accepts and never answers, losing nothing', { timeout: 90_000 }, async () => {
    const hang = await hangingServer();
    const spoolDir = mkdtempSync(join(tmpdir(), 'fleetprof-agent-spool-'));
    const agent = runCli(['agent', '--server', hang.url, '--interval', '1', '--frequency', '49', '--spool-dir', spoolDir, '--metrics-port', 'off', '--node', 'sigterm-test']);
    try {
      await waitForStderr(agent, /sampling at 49 Hz/);
      // Wait until pushes are in flight (and hanging), with a few intervals spooled.
      while (hang.stats().accepted === 0) await sleep(50);
      await sleep(2500);
      const signalledAt = performance.now();
      agent.child.kill('SIGTERM');
      const outcome = await Promise.race([agent.exited, sleep(STILL_RUNNING_AFTER_MS).then(() => 'still running')]);
      const stopMs = performance.now() - signalledAt;
      console.log(`agent exited ${stopMs.toFixed(0)} ms after SIGTERM (server hanging)`);
      expect(outcome, agent.stderr()).toBe(0);
      const m = /stopped; (\d+) profiles made, (\d+) delivered, (\d+) wait in the spool/.exec(agent.stderr());
      expect(m, agent.stderr()).not.toBeNull();
      const [made, delivered, waiting] = [Number(m![1]), Number(m![2]), Number(m![3])];
      expect(made).toBeGreaterThan(0);
      expect(delivered).toBe(0); // the server never answered
      expect(waiting).toBe(made);
      expect(readdirSync(spoolDir).filter((n) => n.endsWith('.pb.gz'))).toHaveLength(made);
    } finally {
      agent.kill();
      await hang.close();
    }
    // The next start delivers them all to a server that answers.
    const data = tempDir();
    const server = await startServer({ dataDir: data.dir, port: 0 });
    try {
      const spool = new DiskSpool(spoolDir, 256 << 20);
      const made = spool.list().length;
      const shipper = new Shipper({ serverUrl: server.url, spool });
      shipper.kick();
      await shipper.whenIdle();
      await shipper.stop();
      expect(shipper.sent).toBe(made);
      expect(shipper.rejected).toBe(0);
      const stored = await getJson<{ profiles: unknown[] }>(server.url, '/api/v1/profiles', { query: '{node="sigterm-test"}', from: 'now-1h', to: 'now', limit: '10000' });
      expect(stored.body.profiles).toHaveLength(made);
    } finally {
      await server.close();
      data.cleanup();
    }
  });

  it('serves /metrics by default on 127.0.0.1:9464', { timeout: 60_000 }, async () => {
    const spoolDir = mkdtempSync(join(tmpdir(), 'fleetprof-agent-spool-'));
    const hang = await hangingServer();
    const agent = runCli(['agent', '--server', hang.url, '--spool-dir', spoolDir]);
    try {
      const m = await waitForStderr(agent, /metrics at (\S+)/);
      expect(m[1]).toBe('http://127.0.0.1:9464/metrics');
      const res = await fetch(m[1]!);
      expect(res.status).toBe(200);
      expect(await res.text()).toMatch(/fleetprof_agent_spool_bytes/);
    } finally {
      agent.child.kill('SIGTERM');
      await agent.exited;
      await hang.close();
    }
  });
});
