// HTTPS end to end with a self-signed certificate, and the /healthz probe.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'node:https';
import { gzipSync } from 'node:zlib';
import type { FlameGraphResponse } from '../src/profile/api-types.js';
import { buildProfile, flameSelfByPath, startTestServer, tempDir } from './server-helpers.js';

type Server = Awaited<ReturnType<typeof startTestServer>>;

/** One https request that trusts only `ca`. */
function httpsRequest(url: string, ca: Buffer, method: string, body?: Buffer, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request(url, { method, ca, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('server over TLS', () => {
  const certDir = tempDir('fleetprof-tls-');
  const certPath = join(certDir.dir, 'cert.pem');
  const keyPath = join(certDir.dir, 'key.pem');
  let ca: Buffer;
  let s: Server;
  beforeAll(async () => {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-days', '1', '-keyout', keyPath, '-out', certPath,
    ], { stdio: 'ignore' });
    ca = readFileSync(certPath);
    s = await startTestServer({ tls: { certPath, keyPath }, ingestToken: 'in', queryToken: 'q' });
  });
  afterAll(async () => {
    await s?.stop();
    certDir.cleanup();
  });

  it('listens on https and serves /healthz without auth', async () => {
    expect(s.url.startsWith('https://')).toBe(true);
    const r = await httpsRequest(`${s.url}/healthz`, ca, 'GET');
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ status: 'ok' });
  });

  it('refuses clients that do not trust the certificate', async () => {
    await expect(
      new Promise((resolve, reject) => {
        const req = request(`${s.url}/healthz`, { method: 'GET' }, resolve);
        req.on('error', reject);
        req.end();
      }),
    ).rejects.toThrow(/self.signed|certificate/i);
  });

  it('ingests and queries over https', async () => {
    const now = Date.now();
    const body = gzipSync(buildProfile({ samples: [{ stack: ['main', 'work'], values: [3, 30] }, { stack: ['main'], values: [1, 10] }], timeMs: now }));
    const ing = await httpsRequest(`${s.url}/api/v1/ingest?node=tls`, ca, 'POST', body, { 'content-type': 'application/octet-stream', authorization: 'Bearer in' });
    expect(ing.status).toBe(200);
    const qs = new URLSearchParams({ query: '{node="tls"}', from: String(now - 60_000), to: String(now + 60_000), sampleType: 'cpu' });
    const q = await httpsRequest(`${s.url}/api/v1/flamegraph?${qs}`, ca, 'GET', undefined, { authorization: 'Bearer q' });
    expect(q.status).toBe(200);
    const fg = JSON.parse(q.body) as FlameGraphResponse;
    expect(fg.total).toBe(40);
    expect(Object.fromEntries(flameSelfByPath(fg))).toEqual({ main: 10, 'main;work': 30 });
  });
});

describe('GET /healthz (http)', () => {
  it('answers 200 {"status":"ok"} even when tokens are set', async () => {
    const s = await startTestServer({ ingestToken: 'a', queryToken: 'b' });
    try {
      const res = await fetch(`${s.url}/healthz`);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ status: 'ok' });
    } finally {
      await s.stop();
    }
  });
});
