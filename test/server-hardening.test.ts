// The faults of issue 12 ("safe to expose"), each provoked against a real
// server on 127.0.0.1: catastrophic selector regexes, cross-origin ingest,
// and the other checks at the edge of the API.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProfile, getJson, ingest, startTestServer, tempDir } from './server-helpers.js';
import { startServer } from '../server/index.js';
import { buildApp } from '../server/app.js';
import { createMetrics } from '../server/metrics.js';
import { SqliteStore } from '../server/store/sqlite-store.js';
import { runCli, startCliServer, waitForStderr } from './helpers/cli.js';

describe('selector regexes', () => {
  // A child process: if a pattern blocked its event loop, this test's own
  // timeout would still fire and fail it (in-process, it would hang instead).
  let s: Awaited<ReturnType<typeof startCliServer>>;
  const data = tempDir();
  beforeAll(async () => {
    s = await startCliServer(data.dir);
  });
  afterAll(async () => {
    s.kill();
    await s.exited;
    data.cleanup();
  });

  // On a backtracking engine `(a+)+c` against 30 a's blocked the event loop
  // for 2.5 s, and each two more characters multiplied that by four: against
  // 200 a's it would not finish in this test's timeout (and healthz would
  // wait behind it). On RE2 it is one linear pass per series.
  it('answers a catastrophic pattern while other requests are served', { timeout: 30_000 }, async () => {
    const longName = 'a'.repeat(200);
    expect((await ingest(s.url, buildProfile({ samples: [{ stack: ['main'], values: [1, 1] }] }), { node: 'n', comm: longName })).status).toBe(200);
    expect((await ingest(s.url, buildProfile({ samples: [{ stack: ['main'], values: [1, 1] }] }), { node: 'n', comm: longName + 'c' })).status).toBe(200);
    const [evil, health, labels] = await Promise.all([
      getJson<{ name: string; values: string[] }>(s.url, '/api/v1/labels/comm/values', { query: '{comm=~"(a+)+c"}' }),
      getJson<{ status: string }>(s.url, '/healthz'),
      getJson<{ names: string[] }>(s.url, '/api/v1/labels'),
    ]);
    expect(evil.status).toBe(200);
    expect(evil.body).toEqual({ name: 'comm', values: [longName + 'c'] });
    expect(health.body.status).toBe('ok');
    expect(labels.body.names).toContain('comm');
  });

  it('refuses oversized or unparsable patterns with a 400 that says why', async () => {
    const s = await startTestServer();
    try {
      for (const [pattern, why] of [
        ['x'.repeat(1025), /1025 characters long; the limit is 1024/],
        ['.{1000}.{1000}.{1000}.{1000}.{1000}.{1000}', /compiles to \d+ instructions; the limit is 5000/],
        ['((a{10}){10}){100}', /invalid repeat count/],
        ['(?=x)', /RE2 syntax/],
      ] as const) {
        const r = await getJson<{ code: string; message: string }>(s.url, '/api/v1/labels', { query: `{comm=~"${pattern}"}` });
        expect(r.status, pattern.slice(0, 40)).toBe(400);
        expect(r.body.code).toBe('FP_ERR_BAD_SELECTOR');
        expect(r.body.message).toMatch(why);
      }
      const many = '{' + Array.from({ length: 33 }, (_, k) => `l${k}="x"`).join(',') + '}';
      const r = await getJson<{ message: string }>(s.url, '/api/v1/labels', { query: many });
      expect(r.status).toBe(400);
      expect(r.body.message).toMatch(/more than 32 matchers/);
    } finally {
      await s.stop();
    }
  });
});

describe('ingest media types and CORS', () => {
  let s: Awaited<ReturnType<typeof startTestServer>>;
  const body = buildProfile({ samples: [{ stack: ['main'], values: [1, 1] }] });
  const post = async (headers: Record<string, string>, payload: Uint8Array | string = gzipSync(body)) => {
    const res = await fetch(`${s.url}/api/v1/ingest?node=media`, { method: 'POST', body: payload, headers });
    return { status: res.status, body: (await res.json()) as { code?: string; message?: string } };
  };
  beforeAll(async () => {
    s = await startTestServer();
  });
  afterAll(async () => {
    await s.stop();
  });

  it('refuses the types a web page can send without a preflight, with 415', async () => {
    for (const type of ['text/plain', 'text/plain;charset=UTF-8', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
      const r = await post({ 'content-type': type });
      expect(r.status, type).toBe(415);
      expect(r.body.code).toBe('FP_ERR_UNSUPPORTED_MEDIA_TYPE');
      expect(r.body.message).toContain('application/x-protobuf');
    }
    // fetch with a plain string body and no headers sends text/plain: a browser's simplest cross-origin post.
    expect((await post({}, 'hello')).status).toBe(415);
    const brotli = await post({ 'content-type': 'application/octet-stream', 'content-encoding': 'br' });
    expect(brotli.status).toBe(415);
    expect(brotli.body.message).toMatch(/Content-Encoding/);
  });

  it('takes every protobuf media type, gzipped or not', async () => {
    for (const type of ['application/octet-stream', 'application/x-protobuf', 'application/vnd.google.protobuf', 'Application/X-Protobuf; proto=perftools.profiles.Profile']) {
      expect((await post({ 'content-type': type })).status, type).toBe(200);
      expect((await post({ 'content-type': type, 'content-encoding': 'gzip' })).status, type).toBe(200);
      expect((await post({ 'content-type': type }, body)).status, type).toBe(200);
    }
  });

  it('sends no CORS headers unless origins are configured', async () => {
    const preflight = () =>
      fetch(`${s.url}/api/v1/ingest?node=x`, {
        method: 'OPTIONS',
        headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
      });
    const open = await preflight();
    expect(open.headers.get('access-control-allow-origin')).toBeNull();
    const get = await fetch(`${s.url}/api/v1/labels`, { headers: { origin: 'https://evil.example' } });
    expect(get.headers.get('access-control-allow-origin')).toBeNull();

    const configured = await startTestServer({ corsOrigins: ['https://grafana.example'] });
    try {
      const allowed = await fetch(`${configured.url}/api/v1/ingest?node=x`, {
        method: 'OPTIONS',
        headers: { origin: 'https://grafana.example', 'access-control-request-method': 'POST' },
      });
      expect(allowed.status).toBe(204);
      expect(allowed.headers.get('access-control-allow-origin')).toBe('https://grafana.example');
      expect(allowed.headers.get('access-control-allow-methods')).toContain('POST');
      const other = await fetch(`${configured.url}/api/v1/labels`, { headers: { origin: 'https://evil.example' } });
      expect(other.headers.get('access-control-allow-origin')).toBeNull();
    } finally {
      await configured.stop();
    }
  });
});

describe('secure by default', () => {
  it('refuses to listen beyond loopback without tokens, and says so', async () => {
    const data = tempDir();
    try {
      const cli = runCli(['server', '--host', '0.0.0.0', '--port', '0', '--data-dir', data.dir], { FLEETPROF_INGEST_TOKEN: '', FLEETPROF_QUERY_TOKEN: '' });
      const outcome = await Promise.race([cli.exited, waitForStderr(cli, /listening on/).then(() => 'listening', () => 'exited')]);
      cli.kill();
      expect(outcome).toBe(1);
      expect(cli.stderr()).toMatch(/refusing to listen on 0\.0\.0\.0 without --ingest-token .* and --query-token .*--allow-unauthenticated/);
      // One token is not enough either: the other side stays open.
      await expect(startServer({ dataDir: data.dir, host: '0.0.0.0', port: 0, ingestToken: 'i' })).rejects.toThrow(/without --query-token/);
      await expect(startServer({ dataDir: data.dir, host: '::', port: 0, queryToken: 'q' })).rejects.toThrow(/without --ingest-token/);
    } finally {
      data.cleanup();
    }
  });

  it('starts beyond loopback with both tokens, or when told to run open', async () => {
    for (const opts of [{ ingestToken: 'i', queryToken: 'q' }, { allowUnauthenticated: true }]) {
      const s = await startTestServer({ host: '0.0.0.0', ...opts });
      try {
        expect((await getJson<{ status: string }>(s.url.replace('0.0.0.0', '127.0.0.1'), '/healthz')).body.status).toBe('ok');
      } finally {
        await s.stop();
      }
    }
  });
});

describe('profile timestamps', () => {
  it('refuses a profile dated in the future or past retention, with a 400', async () => {
    const s = await startTestServer({ retentionMs: 86_400_000, maxFutureSkewMs: 5 * 60_000 });
    try {
      const at = (timeMs: number) => ingest(s.url, buildProfile({ timeMs, samples: [{ stack: ['main'], values: [1, 1] }] }), { node: 'clock' });
      const now = Date.now();
      const future = await at(now + 3_600_000);
      expect(future.status).toBe(400);
      expect(future.json.code).toBe('FP_ERR_BAD_TIME_RANGE');
      expect(future.json.message).toMatch(/ahead of the server's clock.*allowed skew is 300 s/);
      const old = await at(now - 2 * 86_400_000);
      expect(old.status).toBe(400);
      expect(old.json.message).toMatch(/older than the retention of 86400 s/);
      // Neither left a series behind (checked before anything is stored), and a
      // profile within the skew is taken.
      expect((await getJson<{ names: string[] }>(s.url, '/api/v1/labels')).body.names).toEqual([]);
      expect((await at(now + 60_000)).status).toBe(200);
      expect((await at(now - 3_600_000)).status).toBe(200);
      const series = await getJson<{ profiles: { timeMs: number }[] }>(s.url, '/api/v1/profiles', { from: 'now-1d', to: 'now+1d' });
      expect(series.body.profiles.map((p) => p.timeMs).sort()).toEqual([now - 3_600_000, now + 60_000].sort());
    } finally {
      await s.stop();
    }
  });
});

describe('health, readiness and 500s', () => {
  it('/readyz follows the store, and a 500 carries a request id while the log carries the detail', async () => {
    const data = tempDir();
    const store = await SqliteStore.open(data.dir);
    const metrics = createMetrics(store);
    const log = new PassThrough();
    let logged = '';
    log.on('data', (chunk: Buffer) => (logged += chunk.toString()));
    const app = await buildApp({
      store,
      metrics,
      maxBodyBytes: 1 << 20,
      maxDecompressedBytes: 1 << 20,
      timeLimits: { retentionMs: 86_400_000, maxFutureSkewMs: 300_000 },
      ready: () => store.getProfile(0),
      logStream: log,
    });
    const url = await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      expect((await ingest(url, buildProfile({ samples: [{ stack: ['main'], values: [1, 1] }] }), { node: 'r' })).status).toBe(200);
      expect((await getJson<{ status: string }>(url, '/readyz')).body.status).toBe('ready');
      expect((await getJson(url, '/api/v1/profiles', { from: 'now-1h', to: 'now+1m' })).status).toBe(200);

      await store.close(); // the store stops answering: a real SQLite error on every read
      const ready = await getJson<{ status: string }>(url, '/readyz');
      expect(ready.status).toBe(503);
      expect((await getJson<{ status: string }>(url, '/healthz')).body.status).toBe('ok'); // alive all the same

      const res = await fetch(`${url}/api/v1/profiles?from=now-1h&to=now%2B1m`);
      const body = (await res.json()) as { statusCode: number; code: string; message: string; requestId: string };
      expect(res.status).toBe(500);
      expect(body.code).toBe('FP_ERR_INTERNAL');
      expect(body.requestId).toMatch(/^[0-9a-f-]{36}$/);
      expect(res.headers.get('x-request-id')).toBe(body.requestId);
      expect(body.message).toContain(body.requestId);
      expect(body.message).not.toMatch(/SQLITE|closed|at .*\.js/i); // no internals to the client
      // ...they are in the log, under the same id.
      const line = logged.split('\n').find((l) => l.includes(body.requestId) && l.includes('request failed'));
      expect(line, logged).toBeDefined();
      expect(line).toMatch(/SQLITE_MISUSE|closed/i);
    } finally {
      await app.close();
      await metrics.shutdown();
      data.cleanup();
    }
  });
});

describe('viewer missing', () => {
  it('says at start that the viewer is not built and how to build it', async () => {
    const web = tempDir('fleetprof-web-');
    const warnings: string[] = [];
    const s = await startTestServer({ webDir: web.dir, onWarning: (m) => warnings.push(m) });
    try {
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(/web viewer is not built .*index\.html is missing.*npm run build/);
    } finally {
      await s.stop();
    }
    writeFileSync(join(web.dir, 'index.html'), '<html></html>');
    const built = await startTestServer({ webDir: web.dir, onWarning: (m) => warnings.push(m) });
    await built.stop();
    expect(warnings).toHaveLength(1);
    web.cleanup();
  });
});
