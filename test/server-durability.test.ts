// Durability: the server runs as its own process (compiled with tsc), gets
// profiles pushed concurrently, is killed with SIGKILL mid-stream, restarts on
// the same data dir, and must still have every profile it acknowledged (2xx).
// Also: retention deletes old profiles from a live server.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { startServer } from '../server/index.js';
import { buildProfile, getJson, ingest, startTestServer, tempDir } from './server-helpers.js';

const ROOT = join(import.meta.dirname, '..');
const OUT = join(ROOT, 'dist', '.server-durability-test');

function startProcess(dataDir: string): Promise<{ url: string; proc: ChildProcess }> {
  const proc = spawn(process.execPath, [join(OUT, 'server', 'main.js'), '--data-dir', dataDir, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
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

describe('server durability across kill -9', () => {
  const data = tempDir('fleetprof-durable-');
  beforeAll(() => {
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
    const first = await startProcess(data.dir);
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
    // A signalled process keeps exitCode null; signalCode tells it has exited.
    await new Promise<void>((r) => (first.proc.exitCode !== null || first.proc.signalCode !== null ? r() : first.proc.once('exit', () => r())));
    expect(acked.size).toBeGreaterThan(20);

    const second = await startProcess(data.dir);
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

describe('server retention', () => {
  let s: Awaited<ReturnType<typeof startTestServer>>;
  beforeAll(async () => {
    s = await startTestServer({ retentionMs: 86_400_000 });
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
    const again = await startServer({ dataDir: s.dataDir, port, retentionMs: 3_600_000, retentionIntervalMs: 100 });
    s = { ...s, ...again };
    const list = () => getJson<{ profiles: { labels: Record<string, string> }[] }>(s.url, '/api/v1/profiles', { from: 'now-1d', to: 'now+1h' });
    let nodes: string[] = [];
    for (let i = 0; i < 50; i++) {
      nodes = (await list()).body.profiles.map((p) => p.labels.node!);
      if (nodes.length === 1) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(nodes).toEqual(['new']);
    // the series without data left no longer shows up in label values
    expect((await getJson<{ values: string[] }>(s.url, '/api/v1/labels/node/values')).body.values).toEqual(['new']);
  });
});
