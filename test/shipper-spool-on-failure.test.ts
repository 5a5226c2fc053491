// The shipper with spoolWhen 'failure' against real servers: while the server
// answers, profiles go from memory to it and the spool directory stays empty
// (with lean pushes and a LeanProfile the pprof is never even made); a push
// that fails puts its profile in the spool under its place in the send order;
// stop() while a server hangs leaves every unacknowledged profile in the
// spool, where a new shipper (the next agent start) finds and delivers it;
// a server that never answers cannot make the agent hold more than a bound.
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { gunzipSync, gzipSync } from 'node:zlib';
import { Profile } from 'pprof-format';
import { describe, expect, it } from 'vitest';
import { startServer } from '../server/index.js';
import { Shipper } from '../src/agent/shipper.js';
import { DiskSpool } from '../src/agent/spool.js';
import { CpuProfileBuilder, type ProfileFrame } from '../src/profile/builder.js';
import { PushIdentityCache } from '../src/profile/push-identity-cache.js';
import { buildProfile, getJson, tempDir } from './server-helpers.js';
import { hangingServer } from './helpers/hanging-server.js';

const spoolDir = () => mkdtempSync(join(tmpdir(), 'fleetprof-spool-on-failure-'));
const stacks = Array.from({ length: 20 }, (_, i) => ({ stack: ['main', 'loop', `work${i}`], values: [i + 1, (i + 1) * 10] }));
const pprofOf = (n: number) => Buffer.from(buildProfile({ timeMs: Date.now() - 60_000 + n, samples: stacks }));
const cpuOfOne = stacks.reduce((a, s) => a + s.values[1]!, 0);

async function cpuTotal(url: string): Promise<number> {
  const fg = await getJson<{ total: number }>(url, '/api/v1/flamegraph', { query: '{}', from: 'now-1h', to: 'now+1m' });
  return fg.body.total;
}

/** A resolved frame of /usr/bin/prog, as the symbolizer gives one. */
function frame(functionName: string, address: bigint): ProfileFrame {
  return { address, functionName, kind: 'native', mappingFile: '/usr/bin/prog', buildId: 'abcd', mappingStart: 0x1000n, mappingEnd: 0x9000n, mappingFileOffset: 0n };
}

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await sleep(20);
}

/** A pprof source that counts how often it was asked for its bytes. */
function counted(body: Buffer): { source: () => Buffer; calls: () => number } {
  let calls = 0;
  return {
    source: () => {
      calls++;
      return body;
    },
    calls: () => calls,
  };
}

describe("shipper, spool 'failure'", () => {
  it('delivers from memory without writing the spool, and never makes the pprof of an acknowledged lean push', { timeout: 60_000 }, async () => {
    const data = tempDir();
    const server = await startServer({ dataDir: data.dir, port: 0 });
    const dir = spoolDir();
    const spool = new DiskSpool(dir, 64 << 20);
    const identities = new PushIdentityCache({ maxEntries: 10_000 });
    const shipper = new Shipper({ serverUrl: server.url, spool, lean: true, spoolWhen: 'failure' });
    try {
      const sources = [];
      for (let n = 0; n < 5; n++) {
        const builder = new CpuProfileBuilder({ periodNs: 10_000_000, startTimeNs: BigInt(Date.now() - 60_000) * 1_000_000n, durationNs: 10_000_000_000n, identities });
        for (let i = 0; i < 10; i++) builder.addSample([frame(`work${i}`, 0x1000n + BigInt(i)), frame('main', 0x2000n)], i + 1, { pid: 42, tid: 42, comm: 'c' });
        const source = counted(Buffer.from(builder.encode()));
        sources.push(source);
        shipper.enqueue({ node: 'n', comm: 'c' }, source.source, builder.buildLean());
        expect(readdirSync(dir)).toEqual([]);
      }
      await shipper.whenIdle();
      expect([shipper.leanPushes, shipper.fullPushes, shipper.heldSpooled, shipper.heldProfiles]).toEqual([5, 0, 0, 0]);
      expect(sources.map((s) => s.calls())).toEqual([0, 0, 0, 0, 0]);
      expect(readdirSync(dir)).toEqual([]);
      expect(await cpuTotal(server.url)).toBe(5 * 55 * 10_000_000);
    } finally {
      await shipper.stop();
      await server.close();
      data.cleanup();
    }
  });

  it('spools a profile whose push failed, in its place in the send order, and delivers it when the server is back', { timeout: 60_000 }, async () => {
    const data = tempDir();
    const probe = await startServer({ dataDir: data.dir, port: 0 });
    const port = Number(new URL(probe.url).port);
    await probe.close(); // the server is down
    const spool = new DiskSpool(spoolDir(), 64 << 20);
    const shipper = new Shipper({ serverUrl: `http://127.0.0.1:${port}`, spool, spoolWhen: 'failure', initialBackoffMs: 600_000, maxBackoffMs: 600_000 });
    const first = counted(pprofOf(1));
    shipper.enqueue({ node: 'n', comm: 'c' }, first.source);
    await until(() => shipper.failed > 0);
    await until(() => spool.list().length === 1);
    expect([shipper.heldProfiles, shipper.heldSpooled]).toEqual([0, 1]);
    // The spool keeps it gzipped (a backlog must fit the spool's bound), and the pprof was made once.
    expect(spool.read(spool.list()[0]!)!.body.subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
    expect(first.calls()).toBe(1);
    // Known down: the next profile goes to the spool at once, behind the first.
    shipper.enqueue({ node: 'n', comm: 'c' }, pprofOf(2));
    expect(spool.list()).toHaveLength(2);
    expect(shipper.heldProfiles).toBe(0);
    const server = await startServer({ dataDir: data.dir, port });
    try {
      shipper.enqueue({ node: 'n', comm: 'c' }, gzipSync(pprofOf(3))); // the next interval wakes the sender
      await shipper.whenIdle();
      expect(spool.list()).toHaveLength(0);
      expect(shipper.sent).toBe(3);
      expect(await cpuTotal(server.url)).toBe(3 * cpuOfOne);
    } finally {
      await shipper.stop();
      await server.close();
      data.cleanup();
    }
  });

  it('leaves every unacknowledged profile in the spool at stop(), for the next start to deliver', { timeout: 60_000 }, async () => {
    const hanging = await hangingServer();
    const dir = spoolDir();
    const spool = new DiskSpool(dir, 64 << 20);
    const shipper = new Shipper({ serverUrl: hanging.url, spool, spoolWhen: 'failure', requestTimeoutMs: 600_000 });
    for (let n = 0; n < 6; n++) shipper.enqueue({ node: 'n', comm: `c${n % 2}` }, pprofOf(n));
    // Four pushes hang in flight, two profiles wait in memory; nothing is on disk yet.
    await until(() => hanging.stats().open === 4);
    expect(shipper.heldProfiles).toBe(6);
    expect(spool.list()).toHaveLength(0);
    await shipper.stop();
    await hanging.close();
    expect(shipper.heldProfiles).toBe(0);
    expect(spool.list()).toHaveLength(6);

    const data = tempDir();
    const server = await startServer({ dataDir: data.dir, port: 0 });
    const restarted = new Shipper({ serverUrl: server.url, spool: new DiskSpool(dir, 64 << 20), spoolWhen: 'failure' });
    try {
      restarted.kick();
      await restarted.whenIdle();
      expect(restarted.sent).toBe(6);
      expect(await cpuTotal(server.url)).toBe(6 * cpuOfOne);
      const comms = await getJson<{ profiles: { labels: Record<string, string> }[] }>(server.url, '/api/v1/profiles', { from: 'now-1h', to: 'now', limit: '100' });
      expect(comms.body.profiles.map((p) => p.labels.comm).sort()).toEqual(['c0', 'c0', 'c0', 'c1', 'c1', 'c1']);
    } finally {
      await restarted.stop();
      await server.close();
      data.cleanup();
    }
  });

  it('holds at most 64 profiles in memory while a server takes them and never answers; the rest go to the spool', { timeout: 60_000 }, async () => {
    const hanging = await hangingServer();
    const spool = new DiskSpool(spoolDir(), 64 << 20);
    const shipper = new Shipper({ serverUrl: hanging.url, spool, spoolWhen: 'failure', requestTimeoutMs: 600_000 });
    try {
      for (let n = 0; n < 100; n++) shipper.enqueue({ node: 'n', comm: 'c' }, pprofOf(n));
      expect(shipper.heldProfiles).toBe(64);
      expect(spool.list()).toHaveLength(36);
      expect(shipper.heldSpooled).toBe(36);
      // The profiles written out are the oldest: the send order is kept.
      const decodedTimes = spool.list().map((id) => Number(Profile.decode(gunzipSync(spool.read(id)!.body)).timeNanos));
      expect(decodedTimes).toEqual([...decodedTimes].sort((a, b) => a - b));
    } finally {
      await shipper.stop();
      await hanging.close();
    }
    expect(spool.list()).toHaveLength(100);
  });
});
