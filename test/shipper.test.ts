// The shipper against real servers: a fleetprof server that goes away and
// comes back, one that accepts connections and never answers, and an https
// server with a private CA that asks for a client certificate.
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { startServer } from '../server/index.js';
import { Shipper } from '../src/agent/shipper.js';
import { DiskSpool } from '../src/agent/spool.js';
import { buildProfile, getJson, tempDir } from './server-helpers.js';
import { hangingServer } from './helpers/hanging-server.js';

const spoolDir = () => mkdtempSync(join(tmpdir(), 'fleetprof-shipper-spool-'));
const profile = (n: number) => gzipSync(buildProfile({ timeMs: Date.now() - 60_000 + n, samples: [{ stack: ['main', `f${n}`], values: [n + 1, (n + 1) * 10] }] }));

/** Polls `condition` every 20 ms (the test's own timeout bounds the wait). */
async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await sleep(20);
}

describe('shipper', () => {
  it('delivers a backlog of 50 profiles across 5 series at the first wake-up after the server returns', { timeout: 60_000 }, async () => {
    const data = tempDir();
    // Find a free port, then leave it closed: the server is "down".
    const probe = await startServer({ dataDir: data.dir, port: 0 });
    const port = Number(new URL(probe.url).port);
    await probe.close();
    const spool = new DiskSpool(spoolDir(), 64 << 20);
    for (let n = 0; n < 50; n++) spool.put({ node: 'n', comm: `series${n % 5}` }, profile(n));
    // A long backoff: only the next interval's profile may wake the sender.
    const shipper = new Shipper({ serverUrl: `http://127.0.0.1:${port}`, spool, initialBackoffMs: 600_000, maxBackoffMs: 600_000 });
    shipper.kick();
    await until(() => shipper.failed > 0);
    expect(spool.list()).toHaveLength(50);

    const server = await startServer({ dataDir: data.dir, port });
    try {
      shipper.enqueue({ node: 'n', comm: 'series0' }, profile(50)); // the next interval
      await shipper.whenIdle();
      expect(spool.list()).toHaveLength(0);
      expect(shipper.sent).toBe(51);
      const stored = await getJson<{ profiles: { labels: Record<string, string> }[] }>(server.url, '/api/v1/profiles', { from: 'now-1h', to: 'now', limit: '1000' });
      expect(stored.body.profiles).toHaveLength(51);
      expect(new Set(stored.body.profiles.map((p) => p.labels.comm)).size).toBe(5);
    } finally {
      await shipper.stop();
      await server.close();
      data.cleanup();
    }
  });

  it('sends profiles spooled while a pass is running in that same pass', { timeout: 30_000 }, async () => {
    // A server that holds the first push until the test lets it go.
    const received: string[] = [];
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const server = createHttpServer((req, res) => {
      received.push(new URL(req.url!, 'http://x').searchParams.get('comm')!);
      req.resume();
      const answer = () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      if (received.length === 1) void released.then(answer);
      else answer();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const spool = new DiskSpool(spoolDir(), 64 << 20);
    const shipper = new Shipper({ serverUrl: `http://127.0.0.1:${(server.address() as { port: number }).port}`, spool, concurrency: 2 });
    try {
      shipper.enqueue({ node: 'n', comm: 'first' }, profile(0));
      await until(() => received.length === 1); // a pass is running, its push held
      for (let n = 1; n < 5; n++) shipper.enqueue({ node: 'n', comm: `later${n}` }, profile(n));
      release();
      await shipper.whenIdle();
      expect(spool.list()).toEqual([]);
      expect(shipper.sent).toBe(5);
      expect(received.sort()).toEqual(['first', 'later1', 'later2', 'later3', 'later4']);
    } finally {
      await shipper.stop();
      server.close();
    }
  });

  it('against a server that never answers: bounded concurrency, a deadline on every push, nothing lost', { timeout: 30_000 }, async () => {
    const hang = await hangingServer();
    const spool = new DiskSpool(spoolDir(), 64 << 20);
    for (let n = 0; n < 10; n++) spool.put({ node: 'n', comm: 'c' }, profile(n));
    const outcomes: { ok: boolean; error?: string }[] = [];
    const shipper = new Shipper({ serverUrl: hang.url, spool, concurrency: 3, requestTimeoutMs: 300, initialBackoffMs: 600_000, onPush: (o) => outcomes.push(o) });
    try {
      shipper.kick();
      await until(() => shipper.failed >= 3); // the three pushes in flight ran out of time
      expect(hang.stats().maxOpen).toBe(3);
      expect(outcomes.every((o) => !o.ok && /no answer in 300 ms/.test(o.error ?? ''))).toBe(true);
      expect(spool.list()).toHaveLength(10);
      // Woken by a new profile, it probes with one push, not three.
      const acceptedBefore = hang.stats().accepted;
      shipper.enqueue({ node: 'n', comm: 'c' }, profile(10));
      await until(() => shipper.failed >= 4);
      expect(hang.stats().accepted - acceptedBefore).toBeLessThanOrEqual(1);
    } finally {
      await shipper.stop();
      await hang.close();
    }
    expect(spool.list()).toHaveLength(11);
  });

  it('stop() aborts pushes in flight at once; their profiles stay spooled', { timeout: 30_000 }, async () => {
    const hang = await hangingServer();
    const spool = new DiskSpool(spoolDir(), 64 << 20);
    for (let n = 0; n < 4; n++) spool.put({ node: 'n', comm: 'c' }, profile(n));
    // A push deadline far longer than this test's timeout: only stop() can end them.
    const shipper = new Shipper({ serverUrl: hang.url, spool, concurrency: 4, requestTimeoutMs: 3_600_000 });
    shipper.kick();
    await until(() => hang.stats().open === 4);
    await shipper.stop();
    expect(spool.list()).toHaveLength(4);
    expect(shipper.sent).toBe(0);
    await until(() => hang.stats().open === 0); // the sockets were closed, not left hanging
    await hang.close();
  });

  it('trusts a private CA and presents a client certificate', { timeout: 30_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fleetprof-shipper-tls-'));
    const pem = (name: string) => join(dir, name);
    const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });
    // A private CA, a server certificate and a client certificate it signs.
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=fleetprof test CA', '-days', '1', '-keyout', pem('ca.key'), '-out', pem('ca.pem'));
    for (const [name, subject, ext] of [
      ['server', '/CN=localhost', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
      ['client', '/CN=agent-node-7', 'extendedKeyUsage=clientAuth'],
    ] as const) {
      openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', subject, '-keyout', pem(`${name}.key`), '-out', pem(`${name}.csr`));
      const extFile = pem(`${name}.ext`);
      execFileSync('sh', ['-c', `printf '%s\\n' '${ext}' > ${extFile}`]);
      openssl('x509', '-req', '-in', pem(`${name}.csr`), '-CA', pem('ca.pem'), '-CAkey', pem('ca.key'), '-CAcreateserial', '-days', '1', '-extfile', extFile, '-out', pem(`${name}.pem`));
    }
    const clients: string[] = [];
    const server = createHttpsServer(
      { cert: readFileSync(pem('server.pem')), key: readFileSync(pem('server.key')), ca: readFileSync(pem('ca.pem')), requestCert: true, rejectUnauthorized: true },
      (req, res) => {
        clients.push(String((req.socket as import('node:tls').TLSSocket).getPeerCertificate().subject?.CN));
        req.resume();
        req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
      },
    );
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const url = `https://127.0.0.1:${(server.address() as { port: number }).port}`;
    try {
      const spool = new DiskSpool(spoolDir(), 64 << 20);
      const errors: string[] = [];
      const untrusting = new Shipper({ serverUrl: url, spool, initialBackoffMs: 600_000, onPush: (o) => o.error && errors.push(o.error) });
      untrusting.enqueue({ node: 'n' }, profile(0));
      await until(() => untrusting.failed > 0);
      await untrusting.stop();
      expect(errors[0]).toMatch(/certificate/i); // the system CAs do not know ours

      const trusting = new Shipper({ serverUrl: url, spool, tls: { caFile: pem('ca.pem'), certFile: pem('client.pem'), keyFile: pem('client.key') } });
      trusting.kick();
      await trusting.whenIdle();
      await trusting.stop();
      expect(trusting.sent).toBe(1);
      expect(clients).toEqual(['agent-node-7']);
    } finally {
      server.close();
    }
  });
});
