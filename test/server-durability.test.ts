// Durability: the server runs as its own process (compiled with tsc), gets
// profiles pushed concurrently, is killed with SIGKILL mid-stream, restarts on
// the same data dir, and must still have every profile it acknowledged (2xx).
// Also: retention deletes old profiles from a live server.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { startServer } from '../server/index.js';
import { BACKENDS, buildProfile, getJson, ingest, startTestServer, testStoreUrl } from './server-helpers.js';

const ROOT = join(import.meta.dirname, '..');
const OUT = join(ROOT, 'dist', '.server-durability-test');

function startProcess(storeUrl: string): Promise<{ url: string; proc: ChildProcess }> {
  const proc = spawn(process.execPath, [join(OUT, 'server', 'main.js'), '--store', storeUrl, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening (\S+)/.exec(out);
      if (m) resolve({ url: m[1]!, proc });
    });
    proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    proc.once('exit', (code) => reject(new Error(`server exited with ${code}: ${err}`)));
  });
}

const killed = (proc: ChildProcess) =>
  // A signalled process keeps exitCode null; signalCode tells it has exited.
  new Promise<void>((r) => (proc.exitCode !== null || proc.signalCode !== null ? r() : proc.once('exit', () => r())));

describe.each(BACKENDS)('server durability across kill -9 (%s)', (backend) => {
  let data: { url: string; cleanup(): void };
  beforeAll(async () => {
    data = await testStoreUrl(backend);
    // Compile only what server/main.ts imports.
    execFileSync(
      process.execPath,
      [
        join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'),
        join(ROOT, 'server', 'main.ts'),
        '--outDir', OUT, '--rootDir', ROOT, '--module', 'NodeNext', '--moduleResolution', 'NodeNext',
        '--target', 'ES2022', '--strict', '--skipLibCheck', '--types', 'node', '--esModuleInterop',
      ],
      { stdio: 'inherit' },
    );
  });
  afterAll(() => data.cleanup());

  it('keeps every acknowledged profile', async () => {
    const first = await startProcess(data.url);
    const acked = new Map<number, number>(); // timeMs -> id
    const t0 = Date.now() - 600_000;
    let n = 0;
    let stop = false;
    const pusher = async (w: number) => {
      while (!stop) {
        const i = n++;
        const body = buildProfile({ timeMs: t0 + i, samples: [{ stack: ['main', `w${w}`, `f${i % 50}`], values: [i + 1, (i + 1) * 10] }] });
        try {
          const r = await ingest(first.url, body, { node: `n${w}` });
          if (r.status === 200) acked.set(t0 + i, r.json.id as number);
        } catch {
          // connection died with the server: not acknowledged
        }
      }
    };
    const pushers = [0, 1, 2, 3].map(pusher);
    await new Promise((r) => setTimeout(r, 1500));
    first.proc.kill('SIGKILL');
    stop = true;
    await Promise.all(pushers);
    await killed(first.proc);
    expect(acked.size).toBeGreaterThan(20);

    const second = await startProcess(data.url);
    try {
      const list = await getJson<{ profiles: { id: number; timeMs: number }[] }>(second.url, '/api/v1/profiles', { from: String(t0 - 1), to: 'now', limit: '100000' });
      const stored = new Map(list.body.profiles.map((p) => [p.timeMs, p.id]));
      const missing = [...acked].filter(([time, id]) => stored.get(time) !== id);
      expect(missing).toEqual([]);
      // symbols survived too: the merged flame graph equals the acknowledged sums
      const fg = await getJson<{ total: number }>(second.url, '/api/v1/flamegraph', { from: String(t0 - 1), to: 'now', sampleType: 'samples' });
      const ackedTotal = [...acked.keys()].reduce((a, time) => a + (time - t0 + 1), 0);
      const storedTotal = [...stored.keys()].reduce((a, time) => a + (time - t0 + 1), 0);
      expect(fg.body.total).toBe(storedTotal);
      expect(storedTotal).toBeGreaterThanOrEqual(ackedTotal);
      // and it keeps ingesting with fresh ids
      const r = await ingest(second.url, buildProfile({ samples: [{ stack: ['after'], values: [1, 1] }] }), { node: 'after' });
      expect(r.status).toBe(200);
      expect(r.json.id as number).toBeGreaterThan(Math.max(...stored.values()));
    } finally {
      second.proc.kill('SIGKILL');
    }
  });
});

describe('three servers on one PostgreSQL, one killed with -9 mid-ingest', () => {
  it('serves every acknowledged profile from the other two, and their merged queries agree', async () => {
    const db = await testStoreUrl('postgres');
    const servers = await Promise.all([0, 1, 2].map(() => startProcess(db.url)));
    const acked = new Map<number, number>(); // timeMs -> id
    const t0 = Date.now() - 600_000;
    let n = 0;
    let stop = false;
    // Six agents, each pushing to the three servers in turn.
    const agent = async (a: number) => {
      for (let k = 0; !stop; k++) {
        const i = n++;
        const body = buildProfile({
          timeMs: t0 + i,
          samples: [
            { stack: ['main', `agent${a}`, `f${i % 40}`], values: [i + 1, (i + 1) * 10] },
            { stack: ['main', 'shared', `g${i % 7}`], values: [1, 10] },
          ],
        });
        try {
          const r = await ingest(servers[(a + k) % 3]!.url, body, { node: `n${a}`, service: 'fleet' });
          if (r.status === 200) acked.set(t0 + i, r.json.id as number);
        } catch {
          // the killed server's connection died: not acknowledged
        }
      }
    };
    const agents = [0, 1, 2, 3, 4, 5].map(agent);
    await new Promise((r) => setTimeout(r, 1500));
    servers[0]!.proc.kill('SIGKILL');
    await killed(servers[0]!.proc);
    await new Promise((r) => setTimeout(r, 700)); // the other two keep ingesting
    stop = true;
    await Promise.all(agents);
    try {
      expect(acked.size).toBeGreaterThan(30);
      const range = { from: String(t0 - 1), to: 'now' };
      for (const srv of servers.slice(1)) {
        const list = await getJson<{ profiles: { id: number; timeMs: number }[] }>(srv.url, '/api/v1/profiles', { ...range, limit: '100000' });
        const stored = new Map(list.body.profiles.map((p) => [p.timeMs, p.id]));
        expect([...acked].filter(([time, id]) => stored.get(time) !== id)).toEqual([]);
      }
      const merged = await Promise.all(
        servers.slice(1).map(async (srv) => (await getJson<{ total: number; functions: unknown; tree: unknown }>(srv.url, '/api/v1/flamegraph', { ...range, sampleType: 'samples' })).body),
      );
      expect(merged[0]).toEqual(merged[1]);
      // Profiles written by the killed server before it died are part of the merge too.
      const ackedTotal = [...acked.keys()].reduce((a, time) => a + (time - t0 + 2), 0);
      expect(merged[0]!.total).toBeGreaterThanOrEqual(ackedTotal);
      const tops = await Promise.all(servers.slice(1).map(async (srv) => (await getJson(srv.url, '/api/v1/top', { ...range, query: '{node="n3"}' })).body));
      expect(tops[0]).toEqual(tops[1]);
    } finally {
      for (const srv of servers.slice(1)) srv.proc.kill('SIGKILL');
      await Promise.all(servers.slice(1).map((srv) => killed(srv.proc)));
      db.cleanup();
    }
  });
});

describe.each(BACKENDS)('server retention (%s)', (backend) => {
  let s: Awaited<ReturnType<typeof startTestServer>>;
  beforeAll(async () => {
    s = await startTestServer({ backend, retentionMs: 86_400_000 });
  });
  afterAll(async () => {
    await s.close(); // the restarted server (close is idempotent)
    await s.stop();
  });

  it('deletes profiles older than retentionMs in the background', async () => {
    // Ingest refuses profiles already past retention, so the old one goes in
    // under a 1-day retention, and the server comes back with 1 hour.
    const now = Date.now();
    expect((await ingest(s.url, buildProfile({ timeMs: now - 2 * 3_600_000, samples: [{ stack: ['old'], values: [1, 1] }] }), { node: 'old' })).status).toBe(200);
    expect((await ingest(s.url, buildProfile({ timeMs: now, samples: [{ stack: ['new'], values: [1, 1] }] }), { node: 'new' })).status).toBe(200);
    await s.close();
    const port = Number(new URL(s.url).port);
    const again = await startServer({ store: s.storeUrl, port, retentionMs: 3_600_000, retentionIntervalMs: 100 });
    s = { ...s, ...again };
    const list = () => getJson<{ profiles: { labels: Record<string, string> }[] }>(s.url, '/api/v1/profiles', { from: 'now-1d', to: 'now+1h' });
    const labelValues = async () => (await getJson<{ values: string[] }>(s.url, '/api/v1/labels/node/values')).body.values;
    // Retention runs in the background: it deletes the profiles first and
    // then narrows the series' time bounds, so both are polled for (bounded).
    let nodes: string[] = [];
    let values: string[] = [];
    for (let i = 0; i < 100; i++) {
      nodes = (await list()).body.profiles.map((p) => p.labels.node!);
      values = await labelValues();
      if (nodes.length === 1 && values.length === 1) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(nodes).toEqual(['new']);
    // the series without data left no longer shows up in label values
    expect(values).toEqual(['new']);
  });
});
