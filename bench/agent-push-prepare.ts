// What preparing a lean push costs the agent, per interval, in process: the
// real collector (real BPF, whole host) drains every --interval-ms, its
// samples are split into one profile per process name (as the agent's
// series), and each profile is made three ways from the same samples, CPU
// time summed over the run:
//   pprof:        addSample, build(), encode(), gzip (what every agent does for its spool)
//   lean, before: preparePush(profile) + encodePush + request body (hashing the pprof at every push)
//   lean, now:    buildLean() + prepareLeanPush + encodePush + request body, with a
//                 PushIdentityCache kept across intervals (plus what addSample's
//                 identity lookups add, measured as addSample with minus without)
// Both lean paths encode against the same set of acknowledged stacks (every
// stack defined in an earlier interval counts as held), and their push
// bodies must be byte-identical except for which segment of a binary a
// mapping definition's file offset and size come from (not part of any id:
// preparePush takes the first segment used by any stack, prepareLeanPush the
// first used by a stack it defines); the bench stops with an error if not.
//
//   npx tsc -p tsconfig.json && node dist/bench/agent-push-prepare.js [--intervals 20] [--interval-ms 2000] [--frequency 99]
import { gzipSync } from 'node:zlib';
import { Collector, type ResolvedSample } from '../src/agent/collector.js';
import { CpuProfileBuilder } from '../src/profile/builder.js';
import { encodePush, type EncodedPush, prepareLeanPush, preparePush, pushRequestBody } from '../src/profile/push-encode.js';
import { PushIdentityCache } from '../src/profile/push-identity-cache.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const intervals = arg('intervals', 20);
const intervalMs = arg('interval-ms', 2000);
const frequencyHz = arg('frequency', 99);
const periodNs = Math.round(1e9 / frequencyHz);

const cpuMs = (f: () => void): number => {
  const c0 = process.cpuUsage();
  f();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000;
};

const profOut = process.argv.includes('--cpu-prof-out') ? process.argv[process.argv.indexOf('--cpu-prof-out') + 1] : undefined;
const rounds = arg('rounds', 5);

// Phase 1: drains of the real collector, kept as it hands them out (the same
// frame objects drain after drain for what it keeps, new ones for new processes).
const drains: ResolvedSample[][] = [];
const collector = Collector.start({ frequencyHz });
try {
  for (let k = 0; k < intervals; k++) {
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
    drains.push((await collector.collect()).samples);
  }
} finally {
  await collector.stop();
}

// Phase 2: each round replays every drain through fresh builders and a fresh
// identity cache and set of acknowledged stacks, as an agent started with the
// collector would; CPU per interval is the median over rounds.
// --cpu-prof-out FILE: a CPU profile of phase 2 (node --cpu-prof's sampling
// signals make the kernel's verifier give up with EAGAIN in phase 1).
const session = profOut === undefined ? undefined : new (await import('node:inspector')).Session();
if (session) {
  session.connect();
  await new Promise((resolve) => session.post('Profiler.enable', () => session.post('Profiler.start', resolve)));
}
const phases = ['addSample', 'identities', 'pprof', 'pprofGzip', 'pprofGzip1', 'leanBefore', 'leanNow', 'pushGzip', 'pushGzip1'] as const;
const bytes = { push6: 0, push1: 0, pprof6: 0, pprof1: 0, pprofRaw: 0 };
const perRound = Object.fromEntries(phases.map((name) => [name, [] as number[]])) as Record<(typeof phases)[number], number[]>;
let counts = { profiles: 0, samples: 0, defined: 0, referenced: 0, cache: {} as Record<string, number> };
for (let round = 0; round < rounds; round++) {
  const t = { addSample: 0, identities: 0, pprof: 0, pprofGzip: 0, pprofGzip1: 0, leanBefore: 0, leanNow: 0, pushGzip: 0, pushGzip1: 0 };
  for (const key of Object.keys(bytes) as (keyof typeof bytes)[]) bytes[key] = 0;
  counts = { profiles: 0, samples: 0, defined: 0, referenced: 0, cache: {} };
  const known = new Map<number, number>();
  const holds = (id: number, check: number): boolean => known.get(id) === check;
  const identities = new PushIdentityCache();
  for (const [k, drained] of drains.entries()) {
    const bySeries = new Map<string, ResolvedSample[]>();
    for (const s of drained) {
      const name = s.labels.processName ?? s.labels.comm;
      let list = bySeries.get(name);
      if (list === undefined) bySeries.set(name, (list = []));
      list.push(s);
    }
    const startNs = BigInt(k) * BigInt(intervalMs) * 1_000_000n;
    const defined: { id: number; check: number }[] = [];
    for (const list of bySeries.values()) {
      const options = { periodNs, startTimeNs: startNs, durationNs: BigInt(intervalMs) * 1_000_000n };
      const plain = new CpuProfileBuilder(options);
      const withIds = new CpuProfileBuilder({ ...options, identities });
      t.addSample += cpuMs(() => {
        for (const s of list) plain.addSample(s.frames, s.count, s.labels);
      });
      t.identities += cpuMs(() => {
        for (const s of list) withIds.addSample(s.frames, s.count, s.labels);
      });
      let profile = plain.build();
      let encoded: Uint8Array = new Uint8Array(0);
      t.pprof += cpuMs(() => {
        profile = plain.build();
        encoded = profile.encode();
      });
      t.pprofGzip += cpuMs(() => gzipSync(encoded));
      t.pprofGzip1 += cpuMs(() => gzipSync(encoded, { level: 1 }));
      let before: EncodedPush | undefined;
      t.leanBefore += cpuMs(() => {
        before = encodePush(preparePush(profile), holds);
      });
      let push: EncodedPush | undefined;
      t.leanNow += cpuMs(() => {
        push = encodePush(prepareLeanPush(withIds.buildLean(), holds), holds);
      });
      t.pushGzip += cpuMs(() => (bytes.push6 += pushRequestBody(push!).length));
      t.pushGzip1 += cpuMs(() => (bytes.push1 += pushRequestBody(push!, 1).length));
      bytes.pprof6 += gzipSync(encoded).length;
      bytes.pprof1 += gzipSync(encoded, { level: 1 }).length;
      bytes.pprofRaw += encoded.length;
      if (!before!.body.equals(push!.body) && !samePush(before!.body, push!.body)) throw new Error(`interval ${k}: the lean push prepared from the builder differs from preparePush's`);
      defined.push(...push!.defined);
      counts.defined += push!.defined.length;
      counts.referenced += push!.referenced;
      counts.samples += push!.samples;
      counts.profiles++;
    }
    for (const d of defined) known.set(d.id, d.check);
  }
  t.identities -= t.addSample; // what the identity lookups add to addSample
  for (const name of phases) perRound[name].push(t[name] / drains.length);
  counts.cache = { ...identities.counters };
}
const median = (xs: number[]): string => `${[...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!.toFixed(2)} ms`;
console.log(`${intervals} drains of ${intervalMs} ms at ${frequencyHz} Hz, ${rounds} rounds: per round ${counts.profiles} profiles, ${counts.samples} merged samples, ${counts.defined} stacks defined, ${counts.referenced} samples by reference; identity cache ${JSON.stringify(counts.cache)}`);
console.log(`CPU per interval (median of rounds): addSample ${median(perRound.addSample)} + identities ${median(perRound.identities)}; pprof build+encode ${median(perRound.pprof)}, its gzip ${median(perRound.pprofGzip)} (level 1: ${median(perRound.pprofGzip1)}); lean prepare+encode: from the pprof ${median(perRound.leanBefore)}, from the builder ${median(perRound.leanNow)}; gzip of pushes that define ${median(perRound.pushGzip)} (level 1: ${median(perRound.pushGzip1)}); push bodies identical`);
console.log(`bytes per interval (last round): pprof raw ${(bytes.pprofRaw / drains.length).toFixed(0)}, gzipped ${(bytes.pprof6 / drains.length).toFixed(0)} (level 1: ${(bytes.pprof1 / drains.length).toFixed(0)}); lean pushes ${(bytes.push6 / drains.length).toFixed(0)} (level 1: ${(bytes.push1 / drains.length).toFixed(0)})`);
console.log(`load average ${(await import('node:os')).loadavg().map((x) => x.toFixed(2)).join(' ')}`);
if (session && profOut !== undefined) {
  const profile = await new Promise<unknown>((resolve) => session.post('Profiler.stop', (_error, result) => resolve(result.profile)));
  (await import('node:fs')).writeFileSync(profOut, JSON.stringify(profile));
}

/** Push bodies equal but for the file offset and size (fields 4, 5) of mapping definitions (field 9). */
function samePush(a: Buffer, b: Buffer): boolean {
  const strip = (buf: Buffer): string =>
    fields(buf)
      .map(([f, v]) => (f === 9 && Buffer.isBuffer(v) ? `9:${fields(v).filter(([g]) => g !== 4 && g !== 5).map(([g, w]) => `${g}=${String(w)}`).join(',')}` : `${f}:${Buffer.isBuffer(v) ? v.toString('hex') : String(v)}`))
      .join('|');
  return strip(a) === strip(b);
}

/** Top-level protobuf fields: (number, varint value or bytes). */
function fields(buf: Buffer): [number, number | Buffer][] {
  const out: [number, number | Buffer][] = [];
  let i = 0;
  const varint = (): number => {
    let v = 0;
    let scale = 1;
    for (;;) {
      const x = buf[i++]!;
      v += (x & 127) * scale;
      scale *= 128;
      if (x < 128) return v;
    }
  };
  while (i < buf.length) {
    const key = varint();
    const wire = key & 7;
    if (wire === 0) out.push([key >>> 3, varint()]);
    else if (wire === 1 || wire === 5) {
      const n = wire === 1 ? 8 : 4;
      out.push([key >>> 3, buf.subarray(i, i + n)]);
      i += n;
    } else {
      const n = varint();
      out.push([key >>> 3, buf.subarray(i, i + n)]);
      i += n;
    }
  }
  return out;
}
