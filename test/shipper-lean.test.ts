// The shipper's lean pushes (src/profile/push-format.ts) against real
// servers: the second profile of the same code goes by reference; a server
// that lost the stacks (here: another store behind the same address) answers
// 409 and the shipper defines them at once; a server that predates the lean
// push (415 for its media type) gets the pprof, and keeps getting it.
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { startServer } from '../server/index.js';
import { Shipper } from '../src/agent/shipper.js';
import { DiskSpool } from '../src/agent/spool.js';
import { PUSH_MEDIA_TYPE } from '../src/profile/push-format.js';
import { buildProfile, getJson, tempDir } from './server-helpers.js';

const spoolDir = () => mkdtempSync(join(tmpdir(), 'fleetprof-shipper-lean-'));
const stacks = Array.from({ length: 40 }, (_, i) => ({ stack: ['main', 'loop', `work${i}`], values: [i + 1, (i + 1) * 10] }));
const profile = (n: number) => gzipSync(buildProfile({ timeMs: Date.now() - 60_000 + n, samples: stacks }));
const total = (n: number) => n * stacks.reduce((a, s) => a + s.values[1]!, 0);

async function cpuTotal(url: string): Promise<number> {
  const fg = await getJson<{ total: number }>(url, '/api/v1/flamegraph', { query: '{}', from: 'now-1h', to: 'now+1m' });
  return fg.body.total;
}

describe('shipper, lean push', () => {
  it('references what the server acknowledged, and defines again what a server does not hold (409)', { timeout: 60_000 }, async () => {
    const first = tempDir();
    let server = await startServer({ dataDir: first.dir, port: 0 });
    const port = Number(new URL(server.url).port);
    const spool = new DiskSpool(spoolDir(), 64 << 20);
    const shipper = new Shipper({ serverUrl: server.url, spool, lean: true });
    try {
      shipper.enqueue({ node: 'n', comm: 'c' }, profile(1));
      await shipper.whenIdle();
      expect([shipper.leanPushes, shipper.fullPushes, shipper.stacksResent]).toEqual([1, 0, 0]);
      expect(shipper.knownStacks).toBe(stacks.length);
      // The server takes lean pushes: the agent may spool the pprof uncompressed.
      expect(shipper.spoolsRaw).toBe(true);
      const firstBytes = shipper.leanBytes;
      shipper.enqueue({ node: 'n', comm: 'c' }, profile(2));
      await shipper.whenIdle();
      expect(shipper.leanPushes).toBe(2);
      // By reference: well under half the bytes of the push that defined the stacks.
      expect((shipper.leanBytes - firstBytes) * 2).toBeLessThan(firstBytes);
      expect(await cpuTotal(server.url)).toBe(total(2));

      // Another store behind the same address: it holds none of those stacks. Meanwhile the server is down:
      // a push fails, and the agent spools gzipped again (a backlog may build up).
      await server.close();
      shipper.enqueue({ node: 'n', comm: 'c' }, profile(3));
      while (shipper.failed === 0) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(shipper.spoolsRaw).toBe(false);
      const second = tempDir();
      server = await startServer({ dataDir: second.dir, port });
      await shipper.whenIdle();
      expect(shipper.spoolsRaw).toBe(true);
      expect(shipper.stacksResent).toBe(stacks.length);
      expect([shipper.leanPushes, shipper.fullPushes, shipper.rejected]).toEqual([3, 0, 0]);
      expect(spool.list()).toHaveLength(0);
      expect(await cpuTotal(server.url)).toBe(total(1));
      second.cleanup();
    } finally {
      await shipper.stop();
      await server.close();
      first.cleanup();
    }
  });

  it('sends the pprof to a server that refuses the lean media type (415), without asking again', { timeout: 30_000 }, async () => {
    // A stand-in for a server from before the lean push: pprof types only, as such a server answers.
    const seen: string[] = [];
    const gzipped: boolean[] = [];
    const old = createServer((req, res) => {
      const type = req.headers['content-type'] ?? '';
      seen.push(type);
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        gzipped.push(body[0] === 0x1f && body[1] === 0x8b);
        if (type === 'application/octet-stream') {
          res.writeHead(200, { 'content-type': 'application/json' }).end('{"id":1}');
        } else {
          res.writeHead(415, { 'content-type': 'application/json' }).end('{"statusCode":415,"code":"FP_ERR_UNSUPPORTED_MEDIA_TYPE","error":"Unsupported Media Type","message":"no"}');
        }
      });
    });
    old.listen(0, '127.0.0.1');
    await once(old, 'listening');
    const { port } = old.address() as { port: number };
    const spool = new DiskSpool(spoolDir(), 64 << 20);
    const shipper = new Shipper({ serverUrl: `http://127.0.0.1:${port}`, spool, lean: true });
    try {
      shipper.enqueue({ node: 'n' }, profile(1));
      await shipper.whenIdle();
      expect(shipper.spoolsRaw).toBe(false); // pprof it is: spooled gzipped
      // A pprof spooled uncompressed (while the server took lean pushes) goes gzipped.
      shipper.enqueue({ node: 'n' }, Buffer.from(buildProfile({ timeMs: Date.now() - 60_000 + 2, samples: stacks })));
      await shipper.whenIdle();
      expect(seen).toEqual([PUSH_MEDIA_TYPE, 'application/octet-stream', 'application/octet-stream']);
      expect(gzipped.slice(1)).toEqual([true, true]);
      expect([shipper.leanPushes, shipper.fullPushes, shipper.rejected]).toEqual([0, 2, 0]);
      expect(spool.list()).toHaveLength(0);
    } finally {
      await shipper.stop();
      old.close();
    }
  });
});
