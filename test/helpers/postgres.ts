// A throwaway PostgreSQL 15 cluster from Debian's `postgresql` package:
// initdb (trust auth) into a temporary directory as the `postgres` user, its
// own port and unix socket directory, stopped and removed afterwards.
import { execFileSync } from 'node:child_process';
import { chownSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const PG_BIN = '/usr/lib/postgresql/15/bin';

export interface TestPostgres {
  /** postgres://... of a fresh database (one per call of newDatabase): over TCP on 127.0.0.1, or over the Unix socket. */
  newDatabase(options?: { unixSocket?: boolean }): string;
  /** Pid of the postmaster (benchmarks add its and its backends' CPU time). */
  postmasterPid(): number;
  stop(): void;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

const uid = () => Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
const gid = () => Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());

/** Runs a PostgreSQL binary as the postgres user (initdb refuses root). */
function asPostgres(bin: string, args: string[]): string {
  return execFileSync('runuser', ['-u', 'postgres', '--', join(PG_BIN, bin), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export async function startPostgres(): Promise<TestPostgres> {
  const root = mkdtempSync(join(tmpdir(), 'fleetprof-pg-'));
  chownSync(root, uid(), gid());
  const data = join(root, 'data');
  const port = await freePort();
  asPostgres('initdb', ['-A', 'trust', '-U', 'postgres', '-D', data, '--no-sync']);
  asPostgres('pg_ctl', [
    'start',
    '-w',
    '-D',
    data,
    '-l',
    join(root, 'log'),
    '-o',
    `-p ${port} -k ${root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`,
  ]);
  let n = 0;
  return {
    newDatabase(options) {
      const name = `fleetprof_${process.pid}_${n++}`;
      asPostgres('createdb', ['-h', root, '-p', String(port), '-U', 'postgres', name]);
      if (options?.unixSocket) return `postgres://postgres@localhost:${port}/${name}?host=${encodeURIComponent(root)}`;
      return `postgres://postgres@127.0.0.1:${port}/${name}`;
    },
    postmasterPid() {
      return Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
    },
    stop() {
      try {
        asPostgres('pg_ctl', ['stop', '-w', '-m', 'immediate', '-D', data]);
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    },
  };
}
