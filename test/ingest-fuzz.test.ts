// Property-based fuzzing of ingest (fast-check) against the real server as
// its own process: thousands of mutations of real pprofs (fleetprof's own
// BPF recording, Go's runtime/pprof, @datadog/pprof) — bit flips,
// truncations, huge varints, dangling and cyclic ids, deep stacks,
// decompression bombs. Every answer must be a 2xx or a 4xx, never a 5xx or
// a dropped connection; the same for lean pushes (src/profile/push-format.ts)
// made from those profiles by the agent's encoder; afterwards the server still ingests and answers, and
// its memory stayed bounded.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { Label, Profile } from 'pprof-format';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_PATH, startCliServer } from './helpers/cli.js';
import { encodePush, preparePush, type PreparedPush } from '../src/profile/push-encode.js';
import { PUSH_MEDIA_TYPE } from '../src/profile/push-format.js';
import { buildProfile, getJson, ingest, tempDir } from './server-helpers.js';

/** Runs per mutation family; the families together make several thousand requests. */
const RUNS = 700;
/**
 * Peak RSS the server may reach over the whole run. Measured peaks were 390
 * and 986 MiB (V8 grows its heap lazily, and accepted mutants intern new
 * symbols and deep stacks); an uncapped gunzip of the 2 GiB bomb below
 * would have to hold 2 GiB, past this bound.
 */
const MAX_PEAK_RSS_BYTES = 1536 * 1024 * 1024;

function rssBytes(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)![1]) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

const unzip = (b: Buffer) => (b[0] === 0x1f && b[1] === 0x8b ? gunzipSync(b) : b);

/** Real profiles from three producers, as raw (uncompressed) protobuf. */
function realProfiles(dir: string): { name: string; raw: Buffer }[] {
  const out: { name: string; raw: Buffer }[] = [];
  // fleetprof's own recording of this host (real BPF).
  const recorded = join(dir, 'record.pb.gz');
  execFileSync(process.execPath, [CLI_PATH, 'record', '-d', '1', '-F', '199', '-o', recorded], { stdio: 'ignore', timeout: 60_000 });
  out.push({ name: 'fleetprof record', raw: unzip(readFileSync(recorded)) });
  // Go's runtime/pprof.
  const goDir = join(dir, 'go');
  mkdirSync(goDir, { recursive: true });
  writeFileSync(
    join(goDir, 'main.go'),
    `package main
import ("os"; "runtime/pprof"; "time")
//go:noinline
func spin(n int) int { x := 0; for i := 0; i < n; i++ { x += i * i % 7 }; return x }
func main() {
	f, _ := os.Create(os.Args[1])
	pprof.StartCPUProfile(f)
	s := 0
	for end := time.Now().Add(400 * time.Millisecond); time.Now().Before(end); { s += spin(100000) }
	pprof.StopCPUProfile()
	f.Close()
	if s == 42 { println(s) }
}
`,
  );
  const goEnv = { ...process.env, HOME: process.env.HOME ?? '/tmp', GOCACHE: join(dir, 'gocache'), GO111MODULE: 'off' };
  execFileSync('go', ['build', '-o', join(goDir, 'prog'), join(goDir, 'main.go')], { env: goEnv, stdio: 'ignore', timeout: 120_000 });
  execFileSync(join(goDir, 'prog'), [join(goDir, 'cpu.pb.gz')], { timeout: 30_000 });
  out.push({ name: 'go runtime/pprof', raw: unzip(readFileSync(join(goDir, 'cpu.pb.gz'))) });
  // @datadog/pprof (Node wall profile).
  const entry = createRequire(import.meta.url).resolve('@datadog/pprof');
  const script = join(dir, 'dd.mjs');
  writeFileSync(
    script,
    `const pprof = (await import(${JSON.stringify(pathToFileURL(entry).href)})).default;
import { writeFileSync } from 'node:fs';
function busy(ms) { const end = Date.now() + ms; let x = 0; while (Date.now() < end) x += Math.sqrt(x + 1); return x; }
pprof.time.start({ intervalMicros: 1000, durationMillis: 60000 });
busy(300);
writeFileSync(process.argv[2], await pprof.encode(pprof.time.stop()));
`,
  );
  execFileSync(process.execPath, [script, join(dir, 'dd.pb')], { timeout: 60_000 });
  out.push({ name: '@datadog/pprof', raw: unzip(readFileSync(join(dir, 'dd.pb'))) });
  return out;
}

/** A protobuf varint of up to 10 bytes; `over` adds continuation bytes past what any 64-bit value needs. */
function varint(value: bigint, over = 0): Buffer {
  const bytes: number[] = [];
  let v = value;
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n || over > 0) b |= 0x80;
    bytes.push(b);
  } while (v > 0n);
  for (let i = 0; i < over; i++) bytes.push(i === over - 1 ? 0x01 : 0x80);
  return Buffer.from(bytes);
}

describe('ingest fuzzing', () => {
  const work = tempDir('fleetprof-fuzz-');
  let server: Awaited<ReturnType<typeof startCliServer>>;
  let seeds: { name: string; raw: Buffer }[];
  const statuses = new Map<number, number>();
  const failures: string[] = [];

  beforeAll(async () => {
    seeds = realProfiles(work.dir);
    server = await startCliServer(join(work.dir, 'data'), ['--retention', '3650d', '--max-future-skew', '3650d']);
  }, 300_000);
  afterAll(async () => {
    server?.kill();
    await server?.exited;
    work.cleanup();
  });

  /** Posts one body; records the status; a 5xx or a network failure is a finding. */
  async function post(body: Buffer, what: string, opts: { overBodyLimit?: boolean; lean?: boolean } = {}): Promise<void> {
    let status: number;
    try {
      const type = opts.lean ? PUSH_MEDIA_TYPE : 'application/octet-stream';
      const res = await fetch(`${server.url}/api/v1/ingest?node=fuzz&comm=c`, { method: 'POST', body, headers: { 'content-type': type } });
      await res.arrayBuffer();
      status = res.status;
    } catch (error) {
      // A body past the body limit is answered 413 and the connection closed
      // while the client may still be writing: the client then sees EPIPE or
      // ECONNRESET instead of the 413 (a race the machine's load decides).
      // That is a refusal, not a finding; the server's liveness is checked below.
      const code = (error as { cause?: { code?: string } }).cause?.code;
      if (opts.overBodyLimit && (code === 'EPIPE' || code === 'ECONNRESET')) {
        statuses.set(413, (statuses.get(413) ?? 0) + 1);
        return;
      }
      failures.push(`${what}: ${error instanceof Error ? error.message : String(error)}`);
      throw error;
    }
    statuses.set(status, (statuses.get(status) ?? 0) + 1);
    if (status >= 500 || status < 200) failures.push(`${what}: HTTP ${status}`);
    expect(status, what).toBeGreaterThanOrEqual(200);
    expect(status, what).toBeLessThan(500);
  }

  const seedIndex = () => fc.nat({ max: 2 });
  const maybeGzip = (b: Buffer, gz: boolean) => (gz ? gzipSync(b) : b);

  it('answers every mutation with a 2xx or a 4xx and stays up with bounded memory', { timeout: 900_000 }, async () => {
    // Every seed is accepted as it is.
    for (const s of seeds) {
      const r = await ingest(server.url, s.raw, { node: 'seed', comm: s.name.replace(/\W/g, '_') });
      expect(r.status, `${s.name}: ${JSON.stringify(r.json)}`).toBe(200);
    }
    const baseline = rssBytes(server.child.pid!);

    // Bit flips anywhere in the protobuf (and in the gzip stream).
    await fc.assert(
      fc.asyncProperty(
        seedIndex(),
        fc.array(fc.tuple(fc.nat(), fc.nat({ max: 7 })), { minLength: 1, maxLength: 16 }),
        fc.constantFrom('protobuf', 'protobuf then gzip', 'gzip stream'),
        async (k, flips, where) => {
          const b = Buffer.from(where === 'gzip stream' ? gzipSync(seeds[k]!.raw) : seeds[k]!.raw);
          for (const [at, bit] of flips) b[at % b.length]! ^= 1 << bit;
          await post(where === 'protobuf then gzip' ? gzipSync(b) : b, `bitflip (${where}) ${seeds[k]!.name}`);
        },
      ),
      { numRuns: RUNS },
    );
    // Truncations, of the protobuf and of its gzip stream.
    await fc.assert(
      fc.asyncProperty(seedIndex(), fc.double({ min: 0, max: 1, noNaN: true }), fc.boolean(), async (k, frac, gzFirst) => {
        const whole = gzFirst ? gzipSync(seeds[k]!.raw) : seeds[k]!.raw;
        await post(whole.subarray(0, Math.floor(whole.length * frac)), `truncate ${seeds[k]!.name}`);
      }),
      { numRuns: RUNS },
    );
    // Huge and overlong varints spliced in at field boundaries or anywhere: lengths past the end, 10+ byte varints.
    await fc.assert(
      fc.asyncProperty(
        seedIndex(),
        fc.nat(),
        fc.integer({ min: 1, max: 15 }),
        fc.integer({ min: 0, max: 7 }), // wire types, including the invalid 6 and 7
        fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        fc.integer({ min: 0, max: 6 }),
        async (k, at, field, wire, value, over) => {
          const raw = seeds[k]!.raw;
          const pos = at % (raw.length + 1);
          const inserted = Buffer.concat([varint(BigInt((field << 3) | wire)), varint(value, over)]);
          await post(Buffer.concat([raw.subarray(0, pos), inserted, raw.subarray(pos)]), `varint ${seeds[k]!.name}`);
        },
      ),
      { numRuns: RUNS },
    );
    // Structural mutations through a real decode/encode: dangling, duplicate
    // (cyclic) and zero ids, string indexes out of range, deep stacks.
    await fc.assert(
      fc.asyncProperty(
        seedIndex(),
        fc.constantFrom('danglingLocation', 'danglingFunction', 'danglingMapping', 'duplicateLocation', 'selfReferencingIds', 'zeroId', 'badString', 'deepStack', 'hugeValues', 'manyLabels'),
        fc.nat(),
        fc.boolean(),
        async (k, kind, n, gz) => {
          const p = Profile.decode(seeds[k]!.raw);
          const pick = <T>(xs: T[]): T | undefined => (xs.length === 0 ? undefined : xs[n % xs.length]);
          const maxId = (xs: { id: unknown }[]) => xs.reduce((m, x) => Math.max(m, Number(x.id)), 0);
          switch (kind) {
            case 'danglingLocation': {
              const s = pick(p.sample);
              if (s) s.locationId = [...s.locationId, maxId(p.location) + 1 + (n % 1000)];
              break;
            }
            case 'danglingFunction': {
              const line = pick(p.location.flatMap((l) => l.line));
              if (line) line.functionId = maxId(p.function) + 1 + (n % 1000);
              break;
            }
            case 'danglingMapping': {
              const l = pick(p.location);
              if (l) l.mappingId = maxId(p.mapping) + 1 + (n % 1000);
              break;
            }
            case 'duplicateLocation': {
              const l = pick(p.location);
              if (l) p.location.push(l);
              break;
            }
            case 'selfReferencingIds': {
              // A location whose id is also a function's and a mapping's, and which lists itself as its function.
              const l = pick(p.location);
              if (l) {
                const f = pick(p.function);
                if (f) f.id = l.id;
                for (const line of l.line) line.functionId = l.id;
                const m = pick(p.mapping);
                if (m) l.mappingId = m.id = l.id;
              }
              break;
            }
            case 'zeroId': {
              const l = pick(p.location);
              if (l) l.id = 0;
              break;
            }
            case 'badString': {
              const f = pick(p.function);
              if (f) f.name = p.stringTable.strings.length + (n % 100);
              else p.dropFrames = p.stringTable.strings.length + 5;
              break;
            }
            case 'deepStack': {
              const s = pick(p.sample);
              if (s && s.locationId.length > 0) s.locationId = Array.from({ length: 20_000 + (n % 50_000) }, (_, i) => s.locationId[i % s.locationId.length]!);
              break;
            }
            case 'hugeValues': {
              const s = pick(p.sample);
              if (s) s.value = s.value.map((_, i) => (i % 2 === 0 ? Number.MAX_SAFE_INTEGER : -Number.MAX_SAFE_INTEGER));
              break;
            }
            case 'manyLabels': {
              const s = pick(p.sample);
              if (s) for (let i = 0; i < 5000; i++) s.label.push(new Label({ key: n % p.stringTable.strings.length, str: i % p.stringTable.strings.length, num: i }));
              break;
            }
          }
          await post(maybeGzip(Buffer.from(p.encode()), gz), `${kind} ${seeds[k]!.name}`);
        },
      ),
      { numRuns: RUNS },
    );
    // Lean pushes of the same profiles, by the agent's encoder: first with
    // every definition (accepted), then by reference only (accepted: the
    // server holds them now), then mutated like the pprofs above, and
    // structurally: ids that do not match their content, indices out of
    // range, references the store does not hold.
    const prepared = seeds.map((s) => preparePush(Profile.decode(s.raw)));
    const leanSeeds: Buffer[] = [];
    for (const [k, p] of prepared.entries()) {
      const full = encodePush(p, () => false).body;
      const r = await fetch(`${server.url}/api/v1/ingest?node=lean&comm=c`, { method: 'POST', body: full, headers: { 'content-type': PUSH_MEDIA_TYPE } });
      expect(r.status, `${seeds[k]!.name}: ${await r.text()}`).toBe(200);
      const refs = encodePush(p, () => true).body;
      const r2 = await fetch(`${server.url}/api/v1/ingest?node=lean&comm=c`, { method: 'POST', body: refs, headers: { 'content-type': PUSH_MEDIA_TYPE } });
      expect(r2.status, `${seeds[k]!.name} by reference: ${await r2.text()}`).toBe(200);
      leanSeeds.push(full, refs);
    }
    const leanIndex = () => fc.nat({ max: leanSeeds.length - 1 });
    await fc.assert(
      fc.asyncProperty(leanIndex(), fc.array(fc.tuple(fc.nat(), fc.nat({ max: 7 })), { minLength: 1, maxLength: 16 }), fc.boolean(), async (k, flips, gz) => {
        const b = Buffer.from(leanSeeds[k]!);
        for (const [at, bit] of flips) b[at % b.length]! ^= 1 << bit;
        await post(maybeGzip(b, gz), `lean bitflip ${k}`, { lean: true });
      }),
      { numRuns: RUNS / 2 },
    );
    await fc.assert(
      fc.asyncProperty(leanIndex(), fc.double({ min: 0, max: 1, noNaN: true }), async (k, frac) => {
        const whole = leanSeeds[k]!;
        await post(whole.subarray(0, Math.floor(whole.length * frac)), `lean truncate ${k}`, { lean: true });
      }),
      { numRuns: RUNS / 2 },
    );
    await fc.assert(
      fc.asyncProperty(
        leanIndex(),
        fc.nat(),
        fc.integer({ min: 1, max: 18 }),
        fc.integer({ min: 0, max: 7 }),
        fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        fc.integer({ min: 0, max: 6 }),
        async (k, at, field, wire, value, over) => {
          const raw = leanSeeds[k]!;
          const pos = at % (raw.length + 1);
          const inserted = Buffer.concat([varint(BigInt((field << 3) | wire)), varint(value, over)]);
          await post(Buffer.concat([raw.subarray(0, pos), inserted, raw.subarray(pos)]), `lean varint ${k}`, { lean: true });
        },
      ),
      { numRuns: RUNS / 2 },
    );
    await fc.assert(
      fc.asyncProperty(
        seedIndex(),
        fc.constantFrom('wrongStackId', 'locationNotItsId', 'mappingNotItsId', 'badLocationIndex', 'badFunctionIndex', 'badString', 'unknownReference', 'badLabelSet', 'deepStack'),
        fc.nat(),
        async (k, kind, n) => {
          const p: PreparedPush = structuredClone(prepared[k]!);
          const pick = <T>(xs: T[]): T | undefined => (xs.length === 0 ? undefined : xs[n % xs.length]);
          let holds = (): boolean => false;
          switch (kind) {
            case 'wrongStackId': {
              const st = pick(p.stacks);
              if (st) st.id = (st.id + 1 + (n % 1000)) % 2 ** 53;
              break;
            }
            case 'locationNotItsId': {
              const l = pick(p.locations);
              if (l) l.addrLo = (l.addrLo ^ (1 + (n % 255))) >>> 0;
              break;
            }
            case 'mappingNotItsId': {
              const m = pick(p.mappings);
              if (m) [m.buildId, m.filename] = [m.filename, m.buildId];
              break;
            }
            case 'badLocationIndex': {
              const st = pick(p.stacks);
              if (st) st.locations = [...st.locations, p.locations.length + (n % 100)];
              break;
            }
            case 'badFunctionIndex': {
              const l = pick(p.locations.filter((x) => x.lines.length > 0));
              if (l) l.lines[0] = p.functions.length + (n % 100);
              break;
            }
            case 'badString': {
              const f = pick(p.functions);
              if (f) f.name = p.strings.length + (n % 100);
              break;
            }
            case 'unknownReference': {
              const st = pick(p.stacks);
              if (st) st.id = 1 + (n % 1_000_000);
              holds = () => true;
              break;
            }
            case 'badLabelSet':
              if (p.nSamples > 0) p.sampleLabelSet[n % p.nSamples] = p.labelSets.length + (n % 100);
              break;
            case 'deepStack': {
              const st = pick(p.stacks);
              if (st) st.locations = Array.from({ length: 20_000 + (n % 30_000) }, (_, i) => st.locations[i % st.locations.length]!);
              break;
            }
          }
          let body: Buffer;
          try {
            body = encodePush(p, holds).body;
          } catch {
            return; // the encoder itself refuses (an index past its tables): nothing to send
          }
          await post(body, `lean ${kind} ${seeds[k]!.name}`, { lean: true });
        },
      ),
      { numRuns: RUNS / 2 },
    );

    // Bombs: gzip streams that inflate past the limit, a body past the body
    // limit, gzip inside gzip, and a protobuf declaring a huge repeated field.
    const zerosMember = gzipSync(Buffer.alloc(64 * 1024 * 1024), { level: 9 });
    const bombs: [string, Buffer][] = [
      ['gzip of 100 MiB of zeros', gzipSync(Buffer.alloc(100 * 1024 * 1024), { level: 9 })],
      // 32 gzip members of 64 MiB of zeros each: 2 GiB once inflated, 2 MB as sent.
      ['gzip members inflating to 2 GiB', Buffer.concat(Array.from({ length: 32 }, () => zerosMember))],
      ['a string field declaring 1 GiB', Buffer.concat([varint(BigInt((6 << 3) | 2)), varint(1n << 30n)])],
      ['gzip inside gzip', gzipSync(gzipSync(Buffer.alloc(50 * 1024 * 1024)))],
      ['40 MiB body', Buffer.alloc(40 * 1024 * 1024, 0x0a)],
      ['a million empty samples', Buffer.concat(Array.from({ length: 1_000_000 }, () => Buffer.from([0x12, 0x00])))],
    ];
    for (const [what, body] of bombs) await post(body, what, { overBodyLimit: body.length > 32 * 1024 * 1024 });

    // Still up: a good profile goes in and comes out.
    const after = rssBytes(server.child.pid!);
    const good = await ingest(server.url, buildProfile({ samples: [{ stack: ['after', 'fuzz'], values: [3, 30] }] }), { node: 'after' });
    expect(good.status).toBe(200);
    const top = await getJson<{ rows: { name: string }[] }>(server.url, '/api/v1/top', { query: '{node="after"}', from: 'now-1h', to: 'now+1m' });
    expect(top.status).toBe(200);
    expect(top.body.rows.map((r) => r.name)).toContain('fuzz');
    expect((await getJson<{ status: string }>(server.url, '/readyz')).body.status).toBe('ready');
    expect(failures).toEqual([]);
    const total = [...statuses.values()].reduce((a, b) => a + b, 0);
    console.log(
      `ingest fuzz: ${total} requests, statuses ${JSON.stringify(Object.fromEntries(statuses))}; server RSS ${(baseline.rss / 2 ** 20).toFixed(0)} MiB after the seeds, ` +
        `${(after.rss / 2 ** 20).toFixed(0)} MiB after fuzzing, peak ${(after.peak / 2 ** 20).toFixed(0)} MiB`,
    );
    expect(total).toBeGreaterThan(2500);
    expect(after.peak).toBeLessThan(MAX_PEAK_RSS_BYTES);
  });

});
