// A PostgreSQL commit whose answer never reaches the server: the transaction
// stored all of its profiles or none, and the server finds out which instead
// of failing the ingest (or storing it twice on a blind retry). A TCP proxy
// between the server and a real PostgreSQL cuts the connection at the chosen
// protocol message; the database really commits (or never sees the statement).
import { createServer, connect, type Server, type Socket } from 'node:net';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { startServer } from '../server/index.js';
import { buildProfile, ingest, testPostgres } from './server-helpers.js';

type Cut = 'after-commit' | 'before-send';

interface Trap {
  /** Text in a client message that springs the trap: COMMIT, or the profile statement's name (in its Parse and every Bind; a prepared statement's text is sent once). */
  match: string;
  cut: Cut;
  sprung: boolean;
  /** Whether the backend was in a transaction when the message was sent (its last ReadyForQuery said so). */
  inTransaction?: boolean;
}

/**
 * Forwards TCP to PostgreSQL. While a trap is armed, the first client message
 * holding its text is either dropped with the connection ('before-send'), or
 * forwarded, and the connection is cut when the backend's next ReadyForQuery
 * arrives ('after-commit': PostgreSQL sends it after committing), before the
 * server reads any answer to it.
 */
class CuttingProxy {
  trap: Trap | undefined;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly target: { host: string; port: number }) {
    this.server = createServer((client) => this.relay(client));
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return (this.server.address() as { port: number }).port;
  }

  close(): void {
    for (const s of this.sockets) s.destroy();
    this.server.close();
  }

  private relay(client: Socket): void {
    const backend = connect(this.target.port, this.target.host);
    this.sockets.add(client).add(backend);
    let pending = Buffer.alloc(0); // backend bytes not yet split into messages
    let transactionStatus = 'I';
    let waitingForReady = false;
    const cut = () => {
      client.destroy();
      backend.destroy();
    };
    client.on('data', (chunk: Buffer) => {
      const trap = this.trap;
      if (trap && !trap.sprung && chunk.includes(trap.match)) {
        trap.sprung = true;
        trap.inTransaction = transactionStatus !== 'I';
        if (trap.cut === 'before-send') return cut();
        waitingForReady = true;
      }
      backend.write(chunk);
    });
    backend.on('data', (chunk: Buffer) => {
      // Messages are a type byte and a length that counts itself (the startup
      // exchange included, without SSL). ReadyForQuery ('Z') carries the
      // transaction status: 'I' idle, 'T' in a transaction, 'E' failed one.
      pending = Buffer.concat([pending, chunk]);
      let at = 0;
      for (; at + 5 <= pending.length && at + 1 + pending.readUInt32BE(at + 1) <= pending.length; at += 1 + pending.readUInt32BE(at + 1)) {
        if (pending[at] !== 'Z'.charCodeAt(0)) continue;
        if (waitingForReady) return cut(); // nothing of the answer reaches the server
        transactionStatus = String.fromCharCode(pending[at + 5]!);
      }
      pending = pending.subarray(at);
      client.write(chunk);
    });
    client.on('close', () => backend.destroy());
    backend.on('close', () => client.destroy());
    client.on('error', () => undefined);
    backend.on('error', () => undefined);
  }
}

describe('server on PostgreSQL, a commit whose answer is lost', () => {
  async function withProxiedServer(fn: (ctx: { url: string; proxy: CuttingProxy; db: pg.Client }) => Promise<void>): Promise<void> {
    const direct = new URL((await testPostgres()).newDatabase());
    const proxy = new CuttingProxy({ host: direct.hostname, port: Number(direct.port) });
    const proxied = new URL(direct);
    proxied.port = String(await proxy.listen());
    const server = await startServer({ store: proxied.toString(), port: 0 });
    const db = new pg.Client({ connectionString: direct.toString() });
    await db.connect();
    try {
      await fn({ url: server.url, proxy, db });
    } finally {
      await db.end().catch(() => undefined);
      await server.close().catch(() => undefined);
      proxy.close();
    }
  }

  const profileAt = (timeMs: number) => buildProfile({ timeMs, samples: [{ stack: ['main', 'serve', 'parse'], values: [3, 30] }] });
  const storedProfiles = async (db: pg.Client) => (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM profiles')).rows[0]!.n;

  const cases: { name: string; match: string; cut: Cut; firstKnown: boolean }[] = [
    // The second push of known code is the steady state: one statement, which commits itself.
    { name: 'the steady state statement committed, its answer lost', match: 'fleetprof_profiles_', cut: 'after-commit', firstKnown: true },
    { name: 'the steady state statement never reached the database', match: 'fleetprof_profiles_', cut: 'before-send', firstKnown: true },
    // A first push defines its code: a transaction, and the answer to its COMMIT is lost.
    { name: 'a COMMIT that committed, its answer lost', match: 'COMMIT', cut: 'after-commit', firstKnown: false },
  ];
  for (const c of cases) {
    it(`acknowledges and stores once: ${c.name}`, { timeout: 60_000 }, async () => {
      await withProxiedServer(async ({ url, proxy, db }) => {
        const t0 = Date.now() - 60_000;
        if (c.firstKnown) expect((await ingest(url, profileAt(t0), { node: 'a' })).status).toBe(200);
        const before = await storedProfiles(db);
        proxy.trap = { match: c.match, cut: c.cut, sprung: false };
        const answer = await ingest(url, profileAt(t0 + 10_000), { node: 'a' });
        expect(proxy.trap.sprung, 'the proxy cut the connection').toBe(true);
        expect(proxy.trap.inTransaction, 'sent inside BEGIN ... COMMIT').toBe(!c.firstKnown);
        expect(answer.status, JSON.stringify(answer.json)).toBe(200);
        const ids = answer.json.ids as number[];
        expect(ids).toHaveLength(1);
        expect(await storedProfiles(db)).toBe(before + 1);
        const row = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM profiles WHERE id = $1 AND time_ms = $2', [ids[0], t0 + 10_000]);
        expect(row.rows[0]!.n).toBe(1);
        // And the server goes on: the next push is stored as well.
        expect((await ingest(url, profileAt(t0 + 20_000), { node: 'a' })).status).toBe(200);
        expect(await storedProfiles(db)).toBe(before + 2);
      });
    });
  }
});
