// Fleet ingest benchmark: N agents each push, every intervalS seconds, a
// profile of `stacks` unique stacks drawn (Zipf) from a shared pool, for
// `minutes` of simulated time, over real HTTP to real server processes
// (node dist/server/main.js) on SQLite or PostgreSQL (1 or more servers
// sharing the database, agents spread over them).
//
// The fleet churns: every process restarts every --restart-min simulated
// minutes and gets a new ASLR base (one of --aslr-slots per binary), and the
// run is split into --days simulated days; each day a --churn share of the
// binaries is rebuilt (new build ID, its code moves), so that much of the
// code is new. A simulated day is a churn epoch, not 24 hours of profiles:
// the --minutes of profile time are cut into --days equal parts (60 minutes,
// 3 days: 20 minutes each, 10 restarts of every process per day at the
// default --restart-min 2). The bench counts the distinct code the fleet ran (binaries,
// locations, functions, stacks; by the server's identity rules) and compares
// the server's symbol row gauges with it after the first day and at the end.
//
// Push format (--format): `lean` (default) pushes what the real agent
// pushes, through the same encoder (src/profile/push-encode.ts): each
// simulated agent keeps the set of stacks the server acknowledged, references
// those by content id and defines the others (new code every day, new
// stacks as the Zipf tail is drawn); agents restart --agent-restarts-per-day
// times a day (a rolling restart: each agent's set starts empty again, so its
// next push defines everything), and a 409 (a stack the store does not hold)
// is answered with the definitions, as the agent does. `pprof` pushes the
// whole gzipped pprof every time, for comparison.
//
// Reports server CPU per profile (server processes, plus PostgreSQL's own
// processes), bytes on the wire per push, symbol rows against distinct code, bytes on disk per
// stack-value pair, merged flame-graph latency over the last hour (all nodes,
// one node, one service) and server peak RSS. --compare runs SQLite,
// PostgreSQL with 1 server and PostgreSQL with 3 servers in one invocation,
// so the ratios are between peers measured on the same machine at the same time.
//
//   npx tsc -p tsconfig.json && node dist/bench/fleet-ingest.js [--minutes 60] [--agents 100] [--compare] [--format lean|pprof] [--agent-restarts-per-day 1]
//     [--backend sqlite|postgres] [--servers N] [--push-servers N] [--pg-unix-socket] [--days 3] [--churn 0.1] [--restart-min 2] [--aslr-slots 4]
//     [--services 10] [--interval-s 10] [--stacks 2000] [--pool 50000] [--functions 20000] [--concurrency 16]
import { spawn, type ChildProcess } from 'node:child_process';
import { Agent, request } from 'node:http';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, readdirSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { Profile } from 'pprof-format';
import { startPostgres, type TestPostgres } from '../test/helpers/postgres.js';
import { encodePush, preparePush, pushRequestBody, type PreparedPush } from '../src/profile/push-encode.js';
import { ProtoWriter, PUSH_MEDIA_TYPE } from '../src/profile/push-format.js';
const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '60' },
    agents: { type: 'string', default: '100' },
    'interval-s': { type: 'string', default: '10' },
    stacks: { type: 'string', default: '2000' },
    pool: { type: 'string', default: '50000' },
    functions: { type: 'string', default: '20000' },
    concurrency: { type: 'string', default: '16' },
    backend: { type: 'string', default: 'sqlite' },
    servers: { type: 'string', default: '1' },
    // Agents push to the first N servers only (default: all); the others only answer the queries at the end.
    // A diagnostic: it separates what several server processes cost from what splitting the pushes between them costs.
    'push-servers': { type: 'string' },
    // Servers reach PostgreSQL over its Unix socket instead of TCP on 127.0.0.1 (both on this machine).
    'pg-unix-socket': { type: 'boolean', default: false },
    compare: { type: 'boolean', default: false },
    days: { type: 'string', default: '3' },
    churn: { type: 'string', default: '0.1' },
    'restart-min': { type: 'string', default: '2' },
    'aslr-slots': { type: 'string', default: '4' },
    services: { type: 'string', default: '10' },
    'bodies-per-slot': { type: 'string', default: '40' },
    seed: { type: 'string', default: '1' },
    format: { type: 'string', default: 'lean' },
    'agent-restarts-per-day': { type: 'string', default: '1' },
    // The servers' --commit-linger-ms (default: the server's own default).
    'commit-linger-ms': { type: 'string' },
    // Keep the SQLite store of the (single) SQLite configuration in this directory, for bench/flame-query.ts.
    'keep-store': { type: 'string' },
  },
});
const MINUTES = Number(args.minutes);
const AGENTS = Number(args.agents);
const INTERVAL_S = Number(args['interval-s']);
const STACKS = Number(args.stacks);
const POOL = Number(args.pool);
const FUNCTIONS = Number(args.functions);
const CONCURRENCY = Number(args.concurrency);
const DAYS = Math.max(1, Number(args.days));
const CHURN = Number(args.churn);
const RESTART_MS = Number(args['restart-min']) * 60_000;
const ASLR_SLOTS = Math.max(1, Number(args['aslr-slots']));
const SERVICES = Math.max(1, Number(args.services));
const BODIES_PER_SLOT = Number(args['bodies-per-slot']);
const FORMAT: 'lean' | 'pprof' = args.format === 'pprof' ? 'pprof' : 'lean';
if (args.format !== 'lean' && args.format !== 'pprof') throw new Error(`--format must be lean or pprof, not ${args.format}`);
const AGENT_RESTARTS_PER_DAY = Math.max(0, Number(args['agent-restarts-per-day']));
const PERIOD_NS = 10_101_010; // 99 Hz
const BINARIES = 24;

// ---- deterministic PRNG + Zipf sampler ----
let seed = Number(args.seed) >>> 0 || 1;
function rnd(): number {
  // xorshift32
  seed ^= seed << 13;
  seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  seed >>>= 0;
  return seed / 4294967296;
}
const randInt = (lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));

function zipfCdf(n: number, s: number): Float64Array {
  const cdf = new Float64Array(n);
  let acc = 0;
  for (let i = 0; i < n; i++) {
    acc += 1 / Math.pow(i + 1, s);
    cdf[i] = acc;
  }
  for (let i = 0; i < n; i++) cdf[i]! /= acc;
  return cdf;
}
function sample(cdf: Float64Array): number {
  const u = rnd();
  let lo = 0;
  let hi = cdf.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cdf[mid]! < u) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// ---- the stack pool: prefix-sharing call chains, 10..60 frames, root first ----
function buildPool(): Int32Array[] {
  // Real call trees share long prefixes (main -> runtime -> event loop ->
  // handler ...) and differ near the leaves: most new stacks branch off an
  // earlier one a few frames above its leaf.
  const fnCdf = zipfCdf(FUNCTIONS, 1.05);
  const pool: Int32Array[] = [];
  const seen = new Set<string>();
  while (pool.length < POOL) {
    const frames: number[] = [];
    let depth = randInt(10, 60);
    if (pool.length > 50 && rnd() < 0.97) {
      const base = pool[Math.floor(Math.pow(rnd(), 1.5) * pool.length)]!;
      const keep = Math.max(3, base.length - randInt(1, 10));
      for (let i = 0; i < keep; i++) frames.push(base[i]!);
      depth = Math.min(60, Math.max(10, keep + randInt(1, 10)));
    }
    while (frames.length < depth) frames.push(sample(fnCdf));
    const key = frames.join(',');
    if (seen.has(key)) continue;
    seen.add(key);
    pool.push(Int32Array.from(frames));
  }
  return pool;
}

// Profiles are written with the lean push's protobuf writer (src/profile/push-format.ts): pprof-format would cost more CPU than the server.

const fnName = (f: number) => `github.com/acme/svc${f % 97}/pkg${f % 13}.(*Type${f % 31}).Method${f}`;
const binaryOf = (f: number) => f % BINARIES;
const binName = (b: number) => (b === 0 ? '[kernel.kallsyms]' : `/usr/lib/acme/libsvc${b}.so`);
/** How many times binary b was rebuilt by day d (the kernel never is): a CHURN share of the binaries each day. */
function version(b: number, day: number): number {
  if (b === 0 || CHURN <= 0) return 0;
  const every = Math.max(1, Math.round(1 / CHURN));
  let v = 0;
  for (let d = 1; d <= day; d++) if ((b * 7 + d) % every === 0) v++;
  return v;
}
const buildId = (b: number, v: number) => `${(b * 2654435761 + v * 40503 + 1).toString(16).padStart(8, '0')}${'ab'.repeat(16)}`;
/** Runtime base of binary b in ASLR slot `slot` (the kernel is at its fixed address). */
const baseOf = (b: number, slot: number) => (b === 0 ? 0xffffffff81000000 : 0x7f0000000000 + b * 0x10000000 + slot * 0x1000000);
/** File offset of function f's code in binary version v: a rebuild moves the code. */
const offsetOf = (f: number, v: number) => 0x1000 + ((f * 64 + v * 4096) % 0xf00000);

/** The code a profile ran, as the server identifies it (binary version, file offset, function, stack). */
interface CodeKeys {
  mappings: string[];
  functions: number[];
  locations: string[];
  stacks: string[];
}

function codeKeys(pool: Int32Array[], stackIdx: number[], day: number): CodeKeys {
  const fns = new Set<number>();
  const stacks: string[] = [];
  for (const i of stackIdx) {
    const frames = pool[i]!;
    for (let j = 0; j < frames.length; j++) fns.add(frames[j]!);
    // A stack is new when any binary it runs through was rebuilt.
    const versions = new Set<string>();
    for (let j = 0; j < frames.length; j++) versions.add(`${binaryOf(frames[j]!)}.${version(binaryOf(frames[j]!), day)}`);
    stacks.push(`${i}|${[...versions].sort().join(',')}`);
  }
  const bins = new Set<string>();
  const locations: string[] = [];
  for (const f of fns) {
    const b = binaryOf(f);
    const v = version(b, day);
    bins.add(`${b}.${v}`);
    // Resolved kernel frames keep no address: one location per function.
    locations.push(b === 0 ? `k${f}` : `${b}.${v}|${f}`);
  }
  return { mappings: [...bins], functions: [...fns], locations, stacks };
}

function encodeProfile(pool: Int32Array[], stackIdx: number[], counts: number[], day: number, slot: number): Buffer {
  const w = new ProtoWriter(1 << 20);
  const strings = new Map<string, number>([['', 0]]);
  const str = (s: string) => {
    let i = strings.get(s);
    if (i === undefined) {
      i = strings.size;
      strings.set(s, i);
    }
    return i;
  };
  const sCount = str('samples');
  const sUnitCount = str('count');
  const sCpu = str('cpu');
  const sNs = str('nanoseconds');
  for (const [t, u] of [
    [sCount, sUnitCount],
    [sCpu, sNs],
  ] as const) {
    w.message(1, () => {
      w.key(1, 0);
      w.varint(t);
      w.key(2, 0);
      w.varint(u);
    });
  }
  const usedFns = new Set<number>();
  for (let i = 0; i < stackIdx.length; i++) {
    const frames = pool[stackIdx[i]!]!;
    for (let j = 0; j < frames.length; j++) usedFns.add(frames[j]!);
    w.message(2, () => {
      w.message(1, () => {
        for (let j = frames.length - 1; j >= 0; j--) w.varint(frames[j]! + 1); // leaf first; location id = fn + 1
      });
      w.message(2, () => {
        w.varint(counts[i]!);
        w.varint(counts[i]! * PERIOD_NS);
      });
    });
  }
  const usedBins = new Set<number>();
  for (const f of usedFns) usedBins.add(binaryOf(f));
  for (const b of usedBins) {
    w.message(3, () => {
      w.key(1, 0);
      w.varint(b + 1);
      w.key(2, 0);
      w.varint(baseOf(b, slot));
      w.key(3, 0);
      w.varint(baseOf(b, slot) + 0x1000000);
      w.key(5, 0);
      w.varint(str(binName(b)));
      w.key(6, 0);
      w.varint(str(b === 0 ? buildId(0, 0) : buildId(b, version(b, day))));
      w.key(7, 0);
      w.varint(1);
    });
  }
  for (const f of usedFns) {
    w.message(4, () => {
      w.key(1, 0);
      w.varint(f + 1);
      w.key(2, 0);
      w.varint(binaryOf(f) + 1);
      w.key(3, 0);
      w.varint(baseOf(binaryOf(f), slot) + offsetOf(f, version(binaryOf(f), day)));
      w.message(4, () => {
        w.key(1, 0);
        w.varint(f + 1);
        w.key(2, 0);
        w.varint(10 + (f % 500));
      });
    });
  }
  const fileIdx = str('acme.go');
  for (const f of usedFns) {
    w.message(5, () => {
      const n = str(fnName(f));
      w.key(1, 0);
      w.varint(f + 1);
      w.key(2, 0);
      w.varint(n);
      w.key(3, 0);
      w.varint(n);
      w.key(4, 0);
      w.varint(fileIdx);
    });
  }
  for (const s of strings.keys()) w.string(6, s);
  w.key(10, 0);
  w.varint(INTERVAL_S * 1e9);
  w.message(11, () => {
    w.key(1, 0);
    w.varint(sCpu);
    w.key(2, 0);
    w.varint(sNs);
  });
  w.key(12, 0);
  w.varint(PERIOD_NS);
  return w.bytes();
}

// ---- servers, their store, and what they cost ----
interface ServerProc {
  url: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

/** Server processes not yet exited: killed if the bench itself exits early (a failed push, Ctrl-C), so none outlives it. */
const liveServers = new Set<ChildProcess>();
/** The bench's PostgreSQL cluster while it runs (stopped on an early exit too). */
let benchPostgres: TestPostgres | undefined;
process.on('exit', () => {
  for (const p of liveServers) p.kill('SIGKILL');
  benchPostgres?.stop();
});
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));

/** How many of `nServers` take pushes (--push-servers, default all of them): the first ones. */
function pushServerCount(nServers: number): number {
  const v = args['push-servers'];
  if (v === undefined) return nServers;
  if (!/^[1-9]\d*$/.test(v)) throw new Error(`--push-servers: expected a whole number of servers, at least 1, got ${v}`);
  return Math.min(nServers, Number(v));
}

/** What the run's label says of --push-servers: nothing when every server takes pushes. */
function pushServersNote(nServers: number): string {
  const n = pushServerCount(nServers);
  return n < nServers ? `, pushes to ${n} of them` : '';
}

async function startServerProcess(store: string): Promise<ServerProc> {
  const main = join(dirname(fileURLToPath(import.meta.url)), '..', 'server', 'main.js');
  const nodeArgs = (process.env.FLEETPROF_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean); // e.g. --cpu-prof
  const linger = args['commit-linger-ms'] !== undefined ? ['--commit-linger-ms', args['commit-linger-ms']] : [];
  const proc = spawn(process.execPath, [...nodeArgs, main, '--store', store, '--port', '0', ...linger], { stdio: ['ignore', 'pipe', 'inherit'] });
  liveServers.add(proc);
  proc.once('exit', () => liveServers.delete(proc));
  // FLEETPROF_BENCH_SERVER_LOG=FILE keeps the servers' stdout (e.g. with --trace-gc in FLEETPROF_BENCH_NODE_ARGS).
  const serverLog = process.env.FLEETPROF_BENCH_SERVER_LOG;
  if (serverLog) proc.stdout!.on('data', (d: Buffer) => appendFileSync(serverLog, d));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening (\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    proc.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  return {
    url,
    proc,
    stop: () =>
      new Promise<void>((resolve) => {
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
      }),
  };
}

/** CPU seconds (user + system, plus reaped children) used so far by a process, from /proc. */
function cpuSeconds(pid: number, withChildren = false): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    // utime, stime, cutime, cstime in clock ticks (100 Hz)
    return (Number(f[11]) + Number(f[12]) + (withChildren ? Number(f[13]) + Number(f[14]) : 0)) / 100;
  } catch {
    return 0;
  }
}

/** CPU seconds of a PostgreSQL cluster: the postmaster, its live backends and those already reaped. */
function postgresCpuSeconds(postmaster: number): number {
  let total = cpuSeconds(postmaster, true);
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const f = readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1]!.split(' ');
      if (Number(f[1]) === postmaster) total += cpuSeconds(Number(d), true);
    } catch {
      // exited meanwhile
    }
  }
  return total;
}

/** Peak resident set (VmHWM) of a process in MiB, from /proc. */
function peakRssMiB(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

async function gauges(url: string): Promise<{ rows: Record<string, number>; sizeBytes: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const rows: Record<string, number> = {};
  for (const kind of ['mapping', 'function', 'location', 'stack']) {
    rows[kind] = Number(new RegExp(`fleetprof_store_symbol_rows\\{kind="${kind}"[^}]*\\} (\\d+)`).exec(text)?.[1]);
  }
  return { rows, sizeBytes: Number(/fleetprof_store_size_bytes(?:\{[^}]*\})? (\d+)/.exec(text)?.[1]) };
}

/** A server's group commits so far and the ingests they held. */
async function commitCounts(url: string): Promise<{ commits: number; ingests: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const counter = (name: string) => Number(new RegExp(`^${name}(?:_total)?(?:\\{[^}]*\\})? (\\d+)`, 'm').exec(text)?.[1]);
  return { commits: counter('fleetprof_store_commits'), ingests: counter('fleetprof_store_committed_ingests') };
}

async function timeQuery(url: string, params: Record<string, string>): Promise<{ ms: number; nodes: number; total: number }> {
  const t = performance.now();
  const res = await fetch(`${url}/api/v1/flamegraph?${new URLSearchParams(params)}`);
  const body = (await res.json()) as { total: number; tree: { func: number[] } };
  if (res.status !== 200) throw new Error(`query failed: ${res.status} ${JSON.stringify(body)}`);
  return { ms: performance.now() - t, nodes: body.tree.func.length, total: body.total };
}

interface Result {
  label: string;
  sent: number;
  pairs: number;
  ingestS: number;
  cpuMsPerProfile: number;
  serverCpuMsPerProfile: number;
  bytesPerPair: number;
  sizeMiB: number;
  firstDay: { rows: Record<string, number>; distinct: Record<string, number> };
  end: { rows: Record<string, number>; distinct: Record<string, number> };
  queries: { name: string; ms: number; nodes: number }[];
  rssMiB: number;
  /** Group commits of all servers and the ingests they held (their /metrics). */
  commits: { commits: number; ingests: number };
  /** 1-minute load average, sampled every 5 s while this configuration ran: min and max. */
  load: [number, number];
  /** Request bodies as sent, summed over all pushes. */
  wireBytes: number;
  /** Lean: stacks defined in full, 409 answers, and stacks defined again after one. */
  defined: number;
  misses: number;
  resent: number;
  agentRestarts: number;
  /** Server CPU per profile within each simulated day (ms). */
  cpuMsPerProfileByDay: number[];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const KINDS = ['mapping', 'function', 'location', 'stack'] as const;

async function runConfig(
  label: string,
  backend: 'sqlite' | 'postgres',
  nServers: number,
  pg: TestPostgres | undefined,
  data: { pool: Int32Array[]; bodies: Buffer[][]; keys: CodeKeys[][]; prepared: PreparedPush[][] },
): Promise<Result> {
  let sqliteDir: string | undefined;
  let store: string;
  if (backend === 'postgres') store = pg!.newDatabase({ unixSocket: args['pg-unix-socket'] });
  else {
    sqliteDir = args['keep-store'] ?? mkdtempSync(join(tmpdir(), 'fleetprof-bench-'));
    mkdirSync(sqliteDir, { recursive: true });
    store = `sqlite:${sqliteDir}`;
  }
  const servers: ServerProc[] = [];
  for (let i = 0; i < nServers; i++) servers.push(await startServerProcess(store));
  const pushServers = pushServerCount(servers.length);
  console.log(`${label}: ${servers.length} server(s) on ${backend}`);
  const rounds = Math.round((MINUTES * 60) / INTERVAL_S);
  const roundsPerDay = Math.max(1, Math.ceil(rounds / DAYS));
  const startMs = Date.now() - MINUTES * 60_000 - 60_000;
  const timeMember = (timeMs: number) => {
    const w = new ProtoWriter(1 << 20);
    w.key(9, 0);
    w.varint(timeMs * 1e6);
    return gzipSync(w.bytes(), { level: 1 });
  };
  // node:http with keep-alive: cheaper per request than fetch (the client
  // shares the cores with the servers), body written as two chunks.
  const agentPools = servers.map(() => new Agent({ keepAlive: true, maxSockets: CONCURRENCY }));
  const post = async (si: number, path: string, chunks: Buffer[], contentType: string): Promise<{ status: number; body: string }> => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await postOnce(si, path, chunks, contentType);
      } catch (e) {
        // A kept-alive socket the server closed as the request went out (Node's
        // documented keep-alive race: the request never reached the server) is
        // retried once on a new socket, as the agent's spool would retry it.
        if (attempt === 0 && (e as { reusedSocket?: boolean }).reusedSocket && (e as { code?: string }).code === 'ECONNRESET') continue;
        throw e;
      }
    }
  };
  const postOnce = (si: number, path: string, chunks: Buffer[], contentType: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const base = new URL(servers[si]!.url);
      const length = chunks.reduce((a, c) => a + c.length, 0);
      const req = request(
        { host: base.hostname, port: base.port, path, method: 'POST', agent: agentPools[si], headers: { 'content-type': contentType, 'content-length': length } },
        (res) => {
          const parts: Buffer[] = [];
          res.on('data', (c: Buffer) => parts.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString() }));
          res.on('error', reject);
        },
      );
      req.on('error', (e) => reject(Object.assign(e, { reusedSocket: req.reusedSocket })));
      for (let i = 0; i < chunks.length - 1; i++) req.write(chunks[i]!);
      req.end(chunks[chunks.length - 1]);
    });
  const ok = (r: { status: number; body: string }) => {
    if (r.status !== 200) throw new Error(`ingest failed: ${r.status} ${r.body}`);
  };
  // Each simulated agent's stacks the server acknowledged (the shipper's `known`), as the real agent keeps them.
  const known = Array.from({ length: AGENTS }, () => new Map<number, number>());
  let wireBytes = 0;
  let defined = 0;
  let misses = 0;
  let resent = 0;
  let agentRestarts = 0;
  const restartEvery = AGENT_RESTARTS_PER_DAY > 0 ? Math.max(1, Math.floor(roundsPerDay / AGENT_RESTARTS_PER_DAY)) : Infinity;
  /** One push as the agent's shipper makes it (src/agent/shipper.ts pushLean): references, definitions, a 409 answered with them. */
  const pushLean = async (a: number, si: number, path: string, prep: PreparedPush): Promise<void> => {
    const set = known[a]!;
    const holds = (id: number, check: number) => set.get(id) === check;
    let define: Set<number> | undefined;
    for (let attempt = 0; attempt < 2; attempt++) {
      const push = encodePush(prep, holds, define);
      const body = pushRequestBody(push);
      wireBytes += body.length;
      const r = await post(si, path, [body], PUSH_MEDIA_TYPE);
      if (r.status === 409) {
        const missing = (JSON.parse(r.body) as { missingStacks: number[] }).missingStacks;
        misses++;
        resent += missing.length;
        for (const id of missing) set.delete(id);
        define = new Set(missing);
        continue;
      }
      ok(r);
      for (const d of push.defined) set.set(d.id, d.check);
      defined += push.defined.length;
      return;
    }
    throw new Error('a push was refused twice for unknown stacks');
  };
  const distinct = { mapping: new Set<string>(), function: new Set<number>(), location: new Set<string>(), stack: new Set<string>() };
  const count = () => ({ mapping: distinct.mapping.size, function: distinct.function.size, location: distinct.location.size, stack: distinct.stack.size });
  let sent = 0;
  let pairs = 0;
  const cpuNow = () => servers.reduce((a, s) => a + cpuSeconds(s.proc.pid!), 0) + (pg && backend === 'postgres' ? postgresCpuSeconds(pg.postmasterPid()) : 0);
  const serverCpuNow = () => servers.reduce((a, s) => a + cpuSeconds(s.proc.pid!), 0);
  const cpu0 = cpuNow();
  const serverCpu0 = serverCpuNow();
  // The machine is shared: say how loaded it was while this ran.
  const loads: number[] = [loadavg()[0]!];
  const loadTimer = setInterval(() => loads.push(loadavg()[0]!), 5000);
  const t0 = performance.now();
  let firstDay: Result['firstDay'] | undefined;
  const cpuMsPerProfileByDay: number[] = [];
  for (let day = 0; day < DAYS; day++) {
    const dayCpu0 = serverCpuNow();
    const daySent0 = sent;
    const jobs: (() => Promise<void>)[] = [];
    for (let r = day * roundsPerDay; r < Math.min(rounds, (day + 1) * roundsPerDay); r++) {
      for (let a = 0; a < AGENTS; a++) {
        const timeMs = startMs + r * INTERVAL_S * 1000 + a * Math.floor((INTERVAL_S * 1000) / AGENTS);
        // Every process restarts every RESTART_MS (agents out of phase) and lands on another ASLR base.
        const generation = Math.floor((timeMs - startMs + a * 7919) / RESTART_MS);
        const slot = (a * 3 + generation) % ASLR_SLOTS;
        const k = (r * AGENTS + a * 7) % BODIES_PER_SLOT;
        // Rolling agent restarts: each agent AGENT_RESTARTS_PER_DAY times a day, out of phase.
        const restart = FORMAT === 'lean' && r > 0 && (r + a * 13) % restartEvery === 0;
        jobs.push(async () => {
          const keys = data.keys[day]![k]!;
          const path = `/api/v1/ingest?node=agent-${String(a).padStart(3, '0')}&service=svc${a % SERVICES}`;
          if (FORMAT === 'lean') {
            if (restart) {
              known[a]!.clear();
              agentRestarts++;
            }
            const prep = data.prepared[day]![slot * BODIES_PER_SLOT + k]!;
            await pushLean(a, a % pushServers, path, { ...prep, timeNanos: BigInt(timeMs) * 1_000_000n });
          } else {
            const head = data.bodies[day]![slot * BODIES_PER_SLOT + k]!;
            const tail = timeMember(timeMs);
            wireBytes += head.length + tail.length;
            ok(await post(a % pushServers, path, [head, tail], 'application/octet-stream'));
          }
          for (const x of keys.mappings) distinct.mapping.add(x);
          for (const x of keys.functions) distinct.function.add(x);
          for (const x of keys.locations) distinct.location.add(x);
          for (const x of keys.stacks) distinct.stack.add(x);
          sent++;
          pairs += STACKS;
        });
      }
    }
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < jobs.length) await jobs[next++]!();
      }),
    );
    cpuMsPerProfileByDay.push(((serverCpuNow() - dayCpu0) / Math.max(1, sent - daySent0)) * 1000);
    if (day === 0) firstDay = { rows: (await gauges(servers[0]!.url)).rows, distinct: count() };
    console.log(`  day ${day + 1}/${DAYS}: ${sent} profiles, ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
  const ingestS = (performance.now() - t0) / 1000;
  const cpuS = cpuNow() - cpu0;
  const serverCpuS = serverCpuNow() - serverCpu0;
  agentPools.forEach((p) => p.destroy());
  const end = await gauges(servers[0]!.url);
  const last = { from: String(startMs + MINUTES * 60_000 - 3_600_000), to: String(startMs + MINUTES * 60_000 + 60_000) };
  const queries: Result['queries'] = [];
  const q = servers[servers.length - 1]!.url; // with several servers, ask one that did not take every push
  for (const [name, query] of [
    ['all nodes', '{}'],
    ['one node', '{node="agent-007"}'],
    ['one service', '{service="svc3"}'],
  ] as const) {
    const ms: number[] = [];
    let nodes = 0;
    for (let i = 0; i < 5; i++) {
      const r = await timeQuery(q, { query, ...last });
      ms.push(r.ms);
      nodes = r.nodes;
    }
    queries.push({ name, ms: median(ms), nodes });
  }
  const rssMiB = Math.max(...servers.map((s) => peakRssMiB(s.proc.pid!)));
  const commitsBy = await Promise.all(servers.map((s) => commitCounts(s.url)));
  const commits = { commits: commitsBy.reduce((a, c) => a + c.commits, 0), ingests: commitsBy.reduce((a, c) => a + c.ingests, 0) };
  clearInterval(loadTimer);
  loads.push(loadavg()[0]!);
  for (const s of servers) await s.stop();
  if (sqliteDir && args['keep-store'] === undefined) rmSync(sqliteDir, { recursive: true, force: true });
  else if (sqliteDir) console.log(`  store kept: sqlite:${sqliteDir} (last hour: from=${last.from} to=${last.to})`);
  return {
    label,
    sent,
    pairs,
    ingestS,
    cpuMsPerProfile: (cpuS / sent) * 1000,
    serverCpuMsPerProfile: (serverCpuS / sent) * 1000,
    bytesPerPair: end.sizeBytes / pairs,
    sizeMiB: end.sizeBytes / 1048576,
    firstDay: firstDay!,
    end: { rows: end.rows, distinct: count() },
    queries,
    rssMiB,
    commits,
    load: [Math.min(...loads), Math.max(...loads)],
    wireBytes,
    defined,
    misses,
    resent,
    agentRestarts,
    cpuMsPerProfileByDay,
  };
}

async function main() {
  const configs: [string, 'sqlite' | 'postgres', number][] = args.compare
    ? [
        ['SQLite', 'sqlite', 1],
        ['PostgreSQL, 1 server', 'postgres', 1],
        [`PostgreSQL, 3 servers${pushServersNote(3)}`, 'postgres', 3],
      ]
    : [[`${args.backend === 'postgres' ? 'PostgreSQL' : 'SQLite'}, ${args.servers} server(s)${pushServersNote(Number(args.servers))}`, args.backend === 'postgres' ? 'postgres' : 'sqlite', Number(args.servers)]];
  console.log(
    `fleet-ingest: ${AGENTS} agents (${SERVICES} services) x every ${INTERVAL_S}s x ${MINUTES} min in ${DAYS} simulated days, ${STACKS} stacks/profile from a pool of ${POOL}; ` +
      `restarts every ${RESTART_MS / 60_000} min onto ${ASLR_SLOTS} ASLR bases, ${(CHURN * 100).toFixed(0)}% of binaries rebuilt per day`,
  );
  let t = performance.now();
  const pool = buildPool();
  const cdf = zipfCdf(POOL, 1.0);
  console.log(`pool built in ${((performance.now() - t) / 1000).toFixed(1)} s, avg depth ${(pool.reduce((a, s) => a + s.length, 0) / pool.length).toFixed(1)}`);
  // Pre-encoded bodies per (day, ASLR slot): the client shares the cores with
  // the servers. Each push appends a second gzip member holding only
  // time_nanos (gunzip concatenates members, a later scalar field wins).
  t = performance.now();
  const bodies: Buffer[][] = [];
  const keys: CodeKeys[][] = [];
  const prepared: PreparedPush[][] = [];
  const choices: { idx: number[]; counts: number[] }[] = [];
  for (let i = 0; i < BODIES_PER_SLOT; i++) {
    const chosen = new Set<number>();
    while (chosen.size < STACKS) chosen.add(sample(cdf));
    const idx = [...chosen];
    choices.push({ idx, counts: idx.map((k) => 1 + Math.floor(rnd() * Math.max(1, 40 / Math.sqrt(k + 1)))) });
  }
  for (let day = 0; day < DAYS; day++) {
    const perDay: Buffer[] = [];
    const preparedDay: PreparedPush[] = [];
    for (let slot = 0; slot < ASLR_SLOTS; slot++) {
      for (const c of choices) {
        const raw = encodeProfile(pool, c.idx, c.counts, day, slot);
        if (FORMAT === 'pprof') perDay.push(gzipSync(raw, { level: 6 }));
        // The agent's encoder, from the very pprof this agent would have sent (its ASLR base included).
        else preparedDay.push(preparePush(Profile.decode(raw)));
      }
    }
    bodies.push(perDay);
    prepared.push(preparedDay);
    keys.push(choices.map((c) => codeKeys(pool, c.idx, day)));
  }
  console.log(`${DAYS * ASLR_SLOTS * BODIES_PER_SLOT} ${FORMAT === 'lean' ? 'profiles prepared for lean pushes' : 'pprof bodies'} generated in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  const pg = configs.some((c) => c[1] === 'postgres') ? await startPostgres() : undefined;
  benchPostgres = pg;
  const results: Result[] = [];
  try {
    for (const [label, backend, n] of configs) results.push(await runConfig(label, backend, n, pg, { pool, bodies, keys, prepared }));
  } finally {
    benchPostgres = undefined;
    pg?.stop();
  }
  const sent = results[0]!.sent;
  console.log('');
  console.log(`| fleet-ingest: ${AGENTS} agents x ${STACKS} stacks every ${INTERVAL_S} s, ${MINUTES} min = ${DAYS} simulated days, ${sent} profiles, ${(results[0]!.pairs / 1e6).toFixed(1)} M pairs | ${results.map((r) => r.label).join(' | ')} |`);
  console.log(`|---|${results.map(() => '---').join('|')}|`);
  const row = (name: string, f: (r: Result) => string) => console.log(`| ${name} | ${results.map(f).join(' | ')} |`);
  row('push format', () => (FORMAT === 'lean' ? `lean (${PUSH_MEDIA_TYPE})` : 'pprof, gzipped'));
  row('bytes on the wire per push (mean)', (r) => `${(r.wireBytes / r.sent / 1024).toFixed(1)} KiB`);
  if (FORMAT === 'lean') {
    row('stacks defined per push (mean; agent restarts)', (r) => `${(r.defined / r.sent).toFixed(1)} (${r.agentRestarts} restarts)`);
    row('409 answers (stacks defined again after one)', (r) => `${r.misses} (${r.resent})`);
  }
  row('ingest wall time (speed vs real time)', (r) => `${r.ingestS.toFixed(0)} s (${((MINUTES * 60) / r.ingestS).toFixed(1)}x)`);
  row('ingests per commit (commits; --commit-linger-ms)', (r) => `${(r.commits.ingests / r.commits.commits).toFixed(2)} (${r.commits.commits}; ${args['commit-linger-ms'] ?? 'default'})`);
  row('CPU per profile: server processes', (r) => `${r.serverCpuMsPerProfile.toFixed(1)} ms`);
  row('CPU per profile: server processes, by simulated day', (r) => r.cpuMsPerProfileByDay.map((x) => `${x.toFixed(1)}`).join(' / ') + ' ms');
  row('CPU per profile: servers + PostgreSQL', (r) => `${r.cpuMsPerProfile.toFixed(1)} ms${results[0] && r !== results[0] ? ` (${(r.cpuMsPerProfile / results[0].cpuMsPerProfile).toFixed(2)}x SQLite)` : ''}`);
  const rows = (x: Result['firstDay']) => KINDS.map((k) => `${k} ${x.rows[k]}/${x.distinct[k]}`).join(', ');
  row('symbol rows / distinct code after day 1', (r) => rows(r.firstDay));
  row(`symbol rows / distinct code after ${DAYS} days`, (r) => rows(r.end));
  row('bytes on disk per stack-value pair', (r) => `${r.bytesPerPair.toFixed(2)} (${r.sizeMiB.toFixed(0)} MiB)`);
  for (const name of ['all nodes', 'one node', 'one service']) {
    row(`flame graph, last hour, ${name} (median of 5)`, (r) => {
      const q = r.queries.find((x) => x.name === name)!;
      return `${q.ms.toFixed(0)} ms (${q.nodes} nodes)`;
    });
  }
  row('server peak RSS (largest server)', (r) => `${r.rssMiB.toFixed(0)} MiB`);
  row('load average (1 min) while it ran, min-max', (r) => `${r.load[0].toFixed(1)}-${r.load[1].toFixed(1)}`);
}

await main();
