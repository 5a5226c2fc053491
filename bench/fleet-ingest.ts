// Fleet ingest benchmark: N agents each push, every intervalS seconds, a
// profile of `stacks` unique stacks drawn (Zipf) from a shared pool, for
// `minutes` of simulated time, over real HTTP to a real server process
// (node dist/server/main.js). Reports ingest speed vs real time, bytes on
// disk per stack-value pair, and merged flame-graph latency over the range.
//
//   npx tsc -p tsconfig.json && node dist/bench/fleet-ingest.js [--minutes 60] [--agents 100]
//     [--interval-s 10] [--stacks 2000] [--pool 50000] [--functions 20000] [--concurrency 16] [--data-dir DIR] [--keep]
import { spawn, type ChildProcess } from 'node:child_process';
import { Agent, request } from 'node:http';
import { mkdtempSync, readFileSync, rmSync, statSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '60' },
    agents: { type: 'string', default: '100' },
    'interval-s': { type: 'string', default: '10' },
    stacks: { type: 'string', default: '2000' },
    pool: { type: 'string', default: '50000' },
    functions: { type: 'string', default: '20000' },
    concurrency: { type: 'string', default: '16' },
    'data-dir': { type: 'string' },
    keep: { type: 'boolean', default: false },
    seed: { type: 'string', default: '1' },
  },
});
const MINUTES = Number(args.minutes);
const AGENTS = Number(args.agents);
const INTERVAL_S = Number(args['interval-s']);
const STACKS = Number(args.stacks);
const POOL = Number(args.pool);
const FUNCTIONS = Number(args.functions);
const CONCURRENCY = Number(args.concurrency);
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

// ---- a small protobuf writer: pprof-format would cost more CPU than the server ----
class Writer {
  buf = Buffer.allocUnsafe(1 << 20);
  pos = 0;
  ensure(n: number) {
    if (this.pos + n > this.buf.length) {
      const b = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
      this.buf.copy(b, 0, 0, this.pos);
      this.buf = b;
    }
  }
  varint(v: number) {
    this.ensure(10);
    while (v >= 128) {
      this.buf[this.pos++] = (v % 128) | 128;
      v = Math.floor(v / 128);
    }
    this.buf[this.pos++] = v;
  }
  key(field: number, wt: number) {
    this.varint(field * 8 + wt);
  }
  /** Writes a length-delimited field whose body `fn` writes. */
  message(field: number, fn: () => void) {
    this.key(field, 2);
    this.ensure(5);
    const lenPos = this.pos;
    this.pos += 5; // fixed 5-byte length slot, padded varint
    const start = this.pos;
    fn();
    let len = this.pos - start;
    for (let i = 0; i < 5; i++) {
      this.buf[lenPos + i] = (len & 127) | (i < 4 ? 128 : 0);
      len >>>= 7;
    }
  }
  string(field: number, s: string) {
    const n = Buffer.byteLength(s);
    this.key(field, 2);
    this.varint(n);
    this.ensure(n);
    this.buf.write(s, this.pos);
    this.pos += n;
  }
}

const fnName = (f: number) => `github.com/acme/svc${f % 97}/pkg${f % 13}.(*Type${f % 31}).Method${f}`;
const binaryOf = (f: number) => f % BINARIES;
const binName = (b: number) => (b === 0 ? '[kernel.kallsyms]' : `/usr/lib/acme/libsvc${b}.so`);

function encodeProfile(pool: Int32Array[], stackIdx: number[], counts: number[]): Buffer {
  const w = new Writer();
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
      w.varint(0x7f0000000000 + b * 0x10000000);
      w.key(3, 0);
      w.varint(0x7f0000000000 + (b + 1) * 0x10000000);
      w.key(5, 0);
      w.varint(str(binName(b)));
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
      w.varint(0x7f0000000000 + binaryOf(f) * 0x10000000 + f * 64);
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
  return w.buf.subarray(0, w.pos);
}

// ---- server process ----
async function startServerProcess(dataDir: string): Promise<{ url: string; proc: ChildProcess; stop(): Promise<void> }> {
  const main = join(dirname(fileURLToPath(import.meta.url)), '..', 'server', 'main.js');
  const nodeArgs = (process.env.FLEETPROF_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean); // e.g. --cpu-prof
  const proc = spawn(process.execPath, [...nodeArgs, main, '--data-dir', dataDir, '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
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

/** CPU seconds (user + system) used so far by a process, from /proc. */
function cpuSeconds(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (100 Hz)
  } catch {
    return NaN;
  }
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

function dirBytes(dir: string): number {
  let total = 0;
  for (const f of readdirSync(dir)) total += statSync(join(dir, f)).size;
  return total;
}

async function timeQuery(url: string, params: Record<string, string>): Promise<{ ms: number; nodes: number; total: number }> {
  const t = performance.now();
  const res = await fetch(`${url}/api/v1/flamegraph?${new URLSearchParams(params)}`);
  const body = (await res.json()) as { total: number; tree: { func: number[] } };
  if (res.status !== 200) throw new Error(`query failed: ${res.status} ${JSON.stringify(body)}`);
  return { ms: performance.now() - t, nodes: body.tree.func.length, total: body.total };
}

async function main() {
  const dataDir = args['data-dir'] ?? mkdtempSync(join(tmpdir(), 'fleetprof-bench-'));
  console.log(`fleet-ingest: ${AGENTS} agents x every ${INTERVAL_S}s x ${MINUTES} min, ${STACKS} stacks/profile from a pool of ${POOL}, data ${dataDir}`);
  let t = performance.now();
  const pool = buildPool();
  const cdf = zipfCdf(POOL, 1.0);
  const avgDepth = pool.reduce((a, s) => a + s.length, 0) / pool.length;
  console.log(`pool built in ${((performance.now() - t) / 1000).toFixed(1)} s, avg depth ${avgDepth.toFixed(1)}`);

  const server = await startServerProcess(dataDir);
  const rounds = Math.round((MINUTES * 60) / INTERVAL_S);
  const startMs = Date.now() - MINUTES * 60_000 - 60_000;
  let sent = 0;
  let pairs = 0;
  let bodyBytes = 0;
  // Pre-generate DISTINCT distinct profiles (encoding + gzip cost more CPU
  // than the server spends on them, and client and server share 2 cores).
  // Each push appends a second gzip member holding only time_nanos: gunzip
  // concatenates members, and in protobuf a later scalar field wins, so every
  // push carries its own timestamp without re-encoding.
  const DISTINCT = Math.min(rounds * AGENTS, 300);
  t = performance.now();
  const bodies: Buffer[] = [];
  for (let i = 0; i < DISTINCT; i++) {
    const chosen = new Set<number>();
    while (chosen.size < STACKS) chosen.add(sample(cdf));
    const idx = [...chosen];
    const counts = idx.map((k) => 1 + Math.floor(rnd() * Math.max(1, 40 / Math.sqrt(k + 1))));
    bodies.push(gzipSync(encodeProfile(pool, idx, counts), { level: 6 }));
  }
  console.log(`${DISTINCT} distinct profiles generated in ${((performance.now() - t) / 1000).toFixed(1)} s, ${(bodies.reduce((a, b) => a + b.length, 0) / DISTINCT / 1024).toFixed(1)} KiB gzipped each`);
  const timeMember = (timeMs: number) => {
    const w = new Writer();
    w.key(9, 0);
    w.varint(timeMs * 1e6);
    return gzipSync(w.buf.subarray(0, w.pos), { level: 1 });
  };
  // node:http with keep-alive: cheaper per request than fetch (the client
  // shares the 2 cores with the server), body written as two chunks.
  const base = new URL(server.url);
  const agentPool = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const post = (path: string, head: Buffer, tail: Buffer) =>
    new Promise<void>((resolve, reject) => {
      const req = request(
        {
          host: base.hostname,
          port: base.port,
          path,
          method: 'POST',
          agent: agentPool,
          headers: { 'content-type': 'application/octet-stream', 'content-length': head.length + tail.length },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`ingest failed: ${res.statusCode} ${Buffer.concat(chunks).toString()}`))));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.write(head);
      req.end(tail);
    });
  const jobs: (() => Promise<void>)[] = [];
  const make = (round: number, agent: number) => async () => {
    const timeMs = startMs + round * INTERVAL_S * 1000 + agent * Math.floor((INTERVAL_S * 1000) / AGENTS);
    const head = bodies[(round * AGENTS + agent * 7) % DISTINCT]!;
    const tail = timeMember(timeMs);
    await post(`/api/v1/ingest?node=agent-${String(agent).padStart(3, '0')}&service=bench`, head, tail);
    sent++;
    pairs += STACKS;
    bodyBytes += head.length + tail.length;
  };
  for (let r = 0; r < rounds; r++) for (let a = 0; a < AGENTS; a++) jobs.push(make(r, a));

  t = performance.now();
  const cpu0 = cpuSeconds(server.proc.pid!);
  const clientCpu0 = process.cpuUsage();
  let next = 0;
  let lastReport = t;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < jobs.length) {
        const job = jobs[next++]!;
        await job();
        const now = performance.now();
        if (now - lastReport > 10_000) {
          lastReport = now;
          const sim = (sent * INTERVAL_S) / AGENTS;
          console.log(`  ${sent}/${jobs.length} profiles, ${(sim / ((now - t) / 1000)).toFixed(1)}x real time`);
        }
      }
    }),
  );
  const ingestS = (performance.now() - t) / 1000;
  const serverCpuS = cpuSeconds(server.proc.pid!) - cpu0;
  const clientCpu = process.cpuUsage(clientCpu0);
  const clientCpuS = (clientCpu.user + clientCpu.system) / 1e6;
  const ingestRssMiB = peakRssMiB(server.proc.pid!);
  agentPool.destroy();
  const simulatedS = MINUTES * 60;
  console.log(`ingest: ${sent} profiles, ${pairs.toLocaleString()} stack-value pairs, ${(bodyBytes / sent / 1024).toFixed(1)} KiB gzipped per profile`);
  console.log(`ingest: ${ingestS.toFixed(1)} s wall for ${simulatedS} s of fleet time = ${(simulatedS / ingestS).toFixed(1)}x real time, ${(sent / ingestS).toFixed(1)} profiles/s, ${Math.round(pairs / ingestS).toLocaleString()} pairs/s; server CPU ${serverCpuS.toFixed(1)} s = ${((serverCpuS / sent) * 1000).toFixed(1)} ms per profile; bench client CPU ${clientCpuS.toFixed(1)} s; server peak RSS ${ingestRssMiB.toFixed(0)} MiB`);

  await server.stop();
  const bytes = dirBytes(dataDir);
  console.log(`disk: ${(bytes / 1048576).toFixed(1)} MiB = ${(bytes / pairs).toFixed(2)} bytes per stack-value pair (2 values each: samples/count + cpu/nanoseconds; incl. symbols, stacks, indexes)`);

  // Fresh process: measures startup (symbol load) and cold-ish queries.
  t = performance.now();
  const s2 = await startServerProcess(dataDir);
  const restartS = (performance.now() - t) / 1000;
  console.log(`restart: ready in ${restartS.toFixed(2)} s`);
  const range = { from: String(startMs - 1000), to: String(startMs + MINUTES * 60_000 + 60_000) };
  const allMs: number[] = [];
  const oneMs: number[] = [];
  let allNodes = 0;
  let oneNodes = 0;
  for (let i = 0; i < 5; i++) {
    const all = await timeQuery(s2.url, { query: '{}', ...range });
    allMs.push(all.ms);
    allNodes = all.nodes;
    console.log(`query all nodes (${MINUTES} min): ${all.ms.toFixed(0)} ms, ${all.nodes} flame nodes, total ${all.total}`);
  }
  for (let i = 0; i < 5; i++) {
    const one = await timeQuery(s2.url, { query: '{node="agent-007"}', ...range });
    oneMs.push(one.ms);
    oneNodes = one.nodes;
    console.log(`query one node (${MINUTES} min): ${one.ms.toFixed(0)} ms, ${one.nodes} flame nodes`);
  }
  const queryRssMiB = peakRssMiB(s2.proc.pid!);
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const sim = simulatedS / ingestS;
  console.log('');
  console.log(`| fleet-ingest (${AGENTS} agents x ${STACKS} stacks every ${INTERVAL_S} s, ${MINUTES} min, ${sent} profiles, ${(pairs / 1e6).toFixed(1)} M pairs) | value |`);
  console.log('|---|---|');
  console.log(`| ingest speed | ${sim.toFixed(1)}x real time (${(sent / ingestS).toFixed(1)} profiles/s, ${ingestS.toFixed(0)} s wall) |`);
  console.log(`| server CPU per profile | ${((serverCpuS / sent) * 1000).toFixed(1)} ms |`);
  console.log(`| disk per stack-value pair | ${(bytes / pairs).toFixed(2)} bytes (${(bytes / 1048576).toFixed(0)} MiB) |`);
  console.log(`| flame graph, all nodes, ${MINUTES} min (median of ${allMs.length}) | ${median(allMs).toFixed(0)} ms (${allNodes} flame nodes) |`);
  console.log(`| flame graph, one node, ${MINUTES} min (median of ${oneMs.length}) | ${median(oneMs).toFixed(0)} ms (${oneNodes} flame nodes) |`);
  console.log(`| server peak RSS (ingest / query process) | ${ingestRssMiB.toFixed(0)} MiB / ${queryRssMiB.toFixed(0)} MiB |`);
  console.log(`| server restart (symbol load) | ${restartS.toFixed(2)} s |`);
  await s2.stop();
  if (!args.keep && !args['data-dir']) rmSync(dataDir, { recursive: true, force: true });
}

await main();
