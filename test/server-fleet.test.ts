// The server holds a fleet: real programs sampled by the real BPF program,
// uploaded, stored by fleet-wide identity and downloaded again.
// - Five runs of one PIE program (five ASLR bases) store the code they ran
//   once: symbol rows equal the distinct code of the five profiles.
// - A stripped binary's frames are stored by (binary, file offset), shown as
//   `binary+0x...`, and `go tool pprof`, given the unstripped binary, names them.
// - A whole-host profile keeps each sample's comm through ingest and
//   download (-tagfocus, -tagroot); a Go program's pprof labels select data.
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { once } from 'node:events';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Profile } from 'pprof-format';
import type { FlameGraphResponse, LabelValuesResponse } from '../src/profile/api-types.js';
import { record } from '../src/agent/record.js';
import { frameKindOfMapping } from '../src/profile/frame-kind.js';
import { FIXTURES_DIR } from './helpers/fixtures.js';
import { flattenProfile, sumCounts } from './helpers/pprof.js';
import { BACKENDS, getJson, ingest, startTestServer, tempDir } from './server-helpers.js';

type Server = Awaited<ReturnType<typeof startTestServer>>;
const ALL_TIME = { from: '0', to: String(Date.now() + 86_400_000) };
const FP_FLAGS = ['-O1', '-g', '-fno-omit-frame-pointer', '-mno-omit-leaf-frame-pointer', '-fPIE', '-pie', '-Wl,--build-id'];
const goEnv = (home: string) => ({ ...process.env, HOME: home, GOCACHE: join(home, 'gocache'), GOPATH: join(home, 'gopath'), GOFLAGS: '-mod=mod', GOTOOLCHAIN: 'local' });

/** Records one process (pid) for durationMs with the real BPF program. */
async function recordRun(work: string, binary: string, seconds: number, name: string): Promise<Profile> {
  const out = join(work, `${name}.pb.gz`);
  const child = spawn(binary, [String(seconds)], { stdio: 'ignore' });
  const exited = once(child, 'exit');
  await record({ durationMs: seconds * 1000 + 300, frequencyHz: 499, pid: child.pid!, outputPath: out, drainIntervalMs: 60_000 });
  await exited;
  return Profile.decode(gunzipSync(readFileSync(out)));
}

/**
 * The server's identity rules, computed independently from raw profiles: the
 * rows the store must hold for them (server/ingest.ts explains the rules).
 */
function distinctCode(profiles: Profile[]) {
  const mappings = new Set<string>();
  const functions = new Set<string>();
  const locations = new Set<string>();
  const stacks = new Set<string>();
  for (const p of profiles) {
    const str = (i: unknown) => p.stringTable.strings[Number(i)] ?? '';
    const fns = new Map(p.function.map((f) => [Number(f.id), `${str(f.name)}|${str(f.systemName)}|${str(f.filename)}|${Number(f.startLine)}`]));
    const maps = new Map(p.mapping.map((m) => [Number(m.id), m]));
    const locKey = new Map<number, string>();
    for (const l of p.location) {
      const m = maps.get(Number(l.mappingId));
      const file = m ? str(m.filename) : '';
      const kind = frameKindOfMapping(file);
      let address = BigInt(l.address);
      if (m && kind === 'native' && address >= BigInt(m.memoryStart) && address < BigInt(m.memoryLimit)) address = address - BigInt(m.memoryStart) + BigInt(m.fileOffset);
      if (m && (kind === 'kernel' || kind === 'jit') && l.line.length > 0) address = 0n;
      const lines = l.line.map((ln) => `${fns.get(Number(ln.functionId))}@${Number(ln.line)}`).join(',');
      locKey.set(Number(l.id), `${m ? str(m.buildId) || file : ''}|${address}|${lines}`);
    }
    for (const s of p.sample) {
      let stack = '';
      for (const id of s.locationId) {
        const l = p.location.find((x) => Number(x.id) === Number(id))!;
        const m = maps.get(Number(l.mappingId));
        if (m) mappings.add(str(m.buildId) || str(m.filename));
        for (const ln of l.line) functions.add(fns.get(Number(ln.functionId))!);
        locations.add(locKey.get(Number(id))!);
        stack += locKey.get(Number(id))! + ';';
      }
      if (s.locationId.length > 0) stacks.add(stack);
    }
  }
  return { mapping: mappings.size, function: functions.size, location: locations.size, stack: stacks.size };
}

async function symbolRows(s: Server) {
  const text = await (await fetch(`${s.url}/metrics`)).text();
  const gauge = (kind: string) => Number(new RegExp(`fleetprof_store_symbol_rows\\{kind="${kind}"[^}]*\\} (\\d+)`).exec(text)?.[1]);
  return { mapping: gauge('mapping'), function: gauge('function'), location: gauge('location'), stack: gauge('stack') };
}

async function download(s: Server, file: string, params: Record<string, string>): Promise<string> {
  const res = await fetch(`${s.url}/api/v1/profile?${new URLSearchParams({ query: '{}', ...ALL_TIME, ...params })}`);
  expect(res.status).toBe(200);
  writeFileSync(file, Buffer.from(await res.arrayBuffer()));
  return file;
}

function goPprof(args: string[], env: NodeJS.ProcessEnv): string {
  return execFileSync('go', ['tool', 'pprof', ...args], { encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 256 * 1024 * 1024 });
}

describe.each(BACKENDS)('a server that holds a fleet (real BPF, real binaries, go tool pprof; %s)', (backend) => {
  const work = tempDir('fleetprof-fleet-');
  const bin = join(work.dir, 'bin');
  const run = join(work.dir, 'run');
  let s: Server;

  beforeAll(async () => {
    mkdirSync(bin);
    mkdirSync(run);
    execFileSync('clang', [...FP_FLAGS, '-o', join(bin, 'fleet-burn'), join(FIXTURES_DIR, 'fleet-burn.c')]);
    // Go 1.19's pprof misreads 8-byte-aligned note segments and then sees no
    // build ID at all (it would ignore the binary as a mismatch); the build-id
    // note itself stays.
    execFileSync('objcopy', ['--remove-section=.note.gnu.property', join(bin, 'fleet-burn')]);
    s = await startTestServer({ backend });
  });
  afterAll(async () => {
    await s.stop();
    work.cleanup();
  });

  it('stores five runs of one PIE program (five ASLR bases) as the distinct code they ran', async () => {
    const runs: Profile[] = [];
    for (let i = 0; i < 5; i++) runs.push(await recordRun(work.dir, join(bin, 'fleet-burn'), 1, `run${i}`));
    // The runs really were at different addresses.
    const bases = new Set(runs.map((p) => String(p.mapping.find((m) => p.stringTable.strings[Number(m.filename)]!.endsWith('/fleet-burn'))?.memoryStart)));
    expect(bases.size).toBe(5);
    for (const [i, p] of runs.entries()) {
      expect((await ingest(s.url, p.encode(), { service: 'burn', node: `n${i}` })).status).toBe(200);
      if (i === 0) expect(await symbolRows(s)).toEqual(distinctCode(runs.slice(0, 1)));
    }
    const expected = distinctCode(runs);
    expect(await symbolRows(s)).toEqual(expected);
    // Per-process copies would be about five times that; the program's own code is one set of rows.
    const fg = await getJson<FlameGraphResponse>(s.url, '/api/v1/flamegraph', { query: '{service="burn"}', ...ALL_TIME });
    const burn = fg.body.functions.name.filter((n) => n === 'burn_fleetprof');
    expect(burn).toHaveLength(1);
    const total = runs.reduce((sum, p) => sum + sumCounts(flattenProfile(p).map((x) => ({ ...x, values: [x.values[1]!] }))), 0);
    expect(fg.body.total).toBe(total);
    // The first run again at four more ASLR bases (every user mapping and its addresses moved by whole
    // pages, as a restart does): the gauges stay exactly where they were.
    const before = await symbolRows(s);
    for (let k = 1; k <= 4; k++) {
      const moved = Profile.decode(runs[0]!.encode());
      const shift = BigInt(k) * 0x7000000n;
      const user = new Set<number>();
      for (const m of moved.mapping) {
        if (frameKindOfMapping(moved.stringTable.strings[Number(m.filename)]) !== 'native') continue;
        user.add(Number(m.id));
        m.memoryStart = BigInt(m.memoryStart) + shift;
        m.memoryLimit = BigInt(m.memoryLimit) + shift;
      }
      for (const l of moved.location) if (user.has(Number(l.mappingId))) l.address = BigInt(l.address) + shift;
      expect((await ingest(s.url, moved.encode(), { service: 'burn', node: `moved${k}` })).status).toBe(200);
      expect(await symbolRows(s)).toEqual(before);
    }
  }, 120_000);

  it('keeps a stripped binary re-symbolizable: frames show as binary+offset and go tool pprof names them from the binary', async () => {
    // Its own build ID, so no other test's unstripped copy of the program is known to the server under it.
    const buildId = randomBytes(20).toString('hex');
    const symbols = join(work.dir, 'symbols');
    mkdirSync(symbols);
    const unstripped = join(symbols, 'fleet-burn');
    execFileSync('clang', [...FP_FLAGS, `-Wl,--build-id=0x${buildId}`, '-o', unstripped, join(FIXTURES_DIR, 'fleet-burn.c')]);
    execFileSync('objcopy', ['--remove-section=.note.gnu.property', unstripped]);
    const stripped = join(run, 'fleet-burn');
    execFileSync('strip', ['-s', '-o', stripped, unstripped]);
    expect(execFileSync('nm', [stripped], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).includes('burn_fleetprof')).toBe(false);
    const p = await recordRun(work.dir, stripped, 1.5, 'stripped');
    expect(flattenProfile(p).some((x) => x.stack.includes('burn_fleetprof'))).toBe(false);
    expect((await ingest(s.url, p.encode(), { service: 'stripped' })).status).toBe(200);

    const fg = await getJson<FlameGraphResponse>(s.url, '/api/v1/flamegraph', { query: '{service="stripped"}', ...ALL_TIME });
    const names = fg.body.functions.name.filter((n) => n.startsWith('fleet-burn+0x'));
    expect(names.length).toBeGreaterThan(0);
    // File offsets inside a small PIE, not runtime addresses (those sit at 0x55... or 0x7f...).
    for (const n of names) expect(Number.parseInt(n.split('+0x')[1]!, 16)).toBeLessThan(0x10000);

    const file = await download(s, join(work.dir, 'stripped-download.pb.gz'), { query: '{service="stripped"}' });
    const downloaded = Profile.decode(gunzipSync(readFileSync(file)));
    const m = downloaded.mapping.find((x) => downloaded.stringTable.strings[Number(x.buildId)] === buildId)!;
    expect(downloaded.stringTable.strings[Number(m.filename)]).toBe(stripped);
    expect(m.hasFunctions).toBe(false);
    // Without the binary, pprof has nothing to name them with.
    rmFile(stripped);
    const bare = goPprof(['-top', '-nodecount=50', file], goEnv(work.dir));
    expect(bare).not.toContain('burn_fleetprof');
    // Given the unstripped binary where the mapping says, it names the program's frames from it (at the
    // file offsets the server kept). PPROF_BINARY_PATH is not used: Go 1.19's pprof reads no build ID
    // from this toolchain's binaries and then refuses any file it finds there as a build-ID mismatch.
    copyFileSync(unstripped, stripped);
    const top = goPprof(['-top', '-nodecount=50', file], goEnv(work.dir));
    expect(top).toContain('burn_fleetprof');
    expect(top).toContain('outer_fleetprof');
  }, 120_000);

  it('round-trips a whole-host record profile with comm intact (per-comm totals equal; -tagfocus and -tagroot work)', async () => {
    const alpha = join(bin, 'fp-alpha');
    const beta = join(bin, 'fp-beta');
    copyFileSync(join(bin, 'fleet-burn'), alpha);
    copyFileSync(join(bin, 'fleet-burn'), beta);
    const out = join(work.dir, 'host.pb.gz');
    // The programs start once sampling runs (loading BPF can take a while on a busy machine).
    let started: (() => void) | undefined;
    const sampling = new Promise<void>((resolve) => (started = resolve));
    const recording = record({ durationMs: 3500, frequencyHz: 199, outputPath: out, drainIntervalMs: 250, onProgress: () => started?.() });
    await sampling;
    const kids = [spawn(alpha, ['1.5'], { stdio: 'ignore' }), spawn(beta, ['1'], { stdio: 'ignore' })];
    await Promise.all(kids.map((k) => once(k, 'exit')));
    await recording;
    const raw = Profile.decode(gunzipSync(readFileSync(out)));
    const rawByComm = new Map<string, number>();
    for (const x of flattenProfile(raw)) rawByComm.set(String(x.labels.comm), (rawByComm.get(String(x.labels.comm)) ?? 0) + x.values[0]!);
    expect(rawByComm.get('fp-alpha')).toBeGreaterThan(0);
    expect(rawByComm.get('fp-beta')).toBeGreaterThan(0);
    expect((await ingest(s.url, raw.encode(), { service: 'host' })).status).toBe(200);

    const file = await download(s, join(work.dir, 'host-download.pb.gz'), { query: '{service="host"}' });
    const back = flattenProfile(Profile.decode(gunzipSync(readFileSync(file))));
    const backByComm = new Map<string, number>();
    for (const x of back) backByComm.set(String(x.labels.comm), (backByComm.get(String(x.labels.comm)) ?? 0) + x.values[0]!);
    expect(backByComm).toEqual(rawByComm);
    // pid/tid are dropped by default (numeric here, and --drop-sample-labels pid,tid)
    expect(back.every((x) => x.labels.pid === undefined && x.labels.tid === undefined)).toBe(true);

    const env = goEnv(work.dir);
    const focused = goPprof(['-top', '-nodecount=20', '-tagfocus=comm=fp-alpha', file], env);
    expect(focused).toContain('burn_fleetprof');
    const tags = goPprof(['-tags', '-sample_index=samples', '-tagfocus=comm=fp-alpha', file], env);
    expect(Number(/comm: Total (\d+)/.exec(tags)?.[1])).toBe(rawByComm.get('fp-alpha'));
    // -tagroot puts each sample's comm at the root of its stack: the last frame of every trace is its comm.
    const traces = goPprof(['-traces', '-tagroot=comm', '-tagfocus=comm=^fp-', file], env)
      .split(/-+\+-+/)
      .slice(1)
      .filter((t) => t.trim() !== '');
    const roots = new Set<string>();
    for (const t of traces) {
      const lines = t.split('\n').map((l) => l.trim()).filter((l) => l !== '');
      const comm = /^comm:\s+(.+)$/.exec(lines.find((l) => l.startsWith('comm:')) ?? '')?.[1];
      expect(comm).toBeDefined();
      expect(lines[lines.length - 1]).toBe(comm);
      roots.add(comm!);
    }
    expect([...roots].sort()).toEqual(['fp-alpha', 'fp-beta']);
    // And the series can be selected by comm in the query API.
    const fg = await getJson<FlameGraphResponse>(s.url, '/api/v1/flamegraph', { query: '{service="host",comm="fp-beta"}', ...ALL_TIME, sampleType: 'samples' });
    expect(fg.body.total).toBe(rawByComm.get('fp-beta'));
  }, 120_000);

  it('selects a Go profile by its pprof labels', async () => {
    const dir = join(work.dir, 'goapp');
    mkdirSync(dir);
    writeFileSync(join(dir, 'go.mod'), 'module fleetproftest\n\ngo 1.19\n');
    writeFileSync(join(dir, 'main.go'), GO_LABELS_PROGRAM);
    const env = goEnv(work.dir);
    execFileSync('go', ['build', '-o', join(dir, 'app'), '.'], { cwd: dir, env });
    const out = join(dir, 'cpu.pprof');
    execFileSync(join(dir, 'app'), [out], { env });
    expect((await ingest(s.url, gunzipSync(readFileSync(out)), { service: 'goapp' })).status).toBe(200);

    const values = await getJson<LabelValuesResponse>(s.url, '/api/v1/labels/handler/values', { query: '{service="goapp"}' });
    expect(values.body.values).toEqual(['fast', 'slow']);
    const fnNames = async (handler: string) => {
      const fg = await getJson<FlameGraphResponse>(s.url, '/api/v1/flamegraph', { query: `{service="goapp",handler="${handler}"}`, ...ALL_TIME });
      expect(fg.body.total).toBeGreaterThan(0);
      return fg.body.functions.name;
    };
    const slow = await fnNames('slow');
    const fast = await fnNames('fast');
    expect(slow).toContain('main.burnSlow');
    expect(slow).not.toContain('main.burnFast');
    expect(fast).toContain('main.burnFast');
    expect(fast).not.toContain('main.burnSlow');
    // The download carries the label back.
    const file = await download(s, join(work.dir, 'go-download.pb.gz'), { query: '{service="goapp"}' });
    const focused = goPprof(['-top', '-tagfocus=handler=slow', file], env);
    expect(focused).toContain('main.burnSlow');
    expect(focused).not.toContain('main.burnFast');
  }, 180_000);
});

function rmFile(path: string): void {
  execFileSync('rm', ['-f', path]);
}

const GO_LABELS_PROGRAM = `package main

import (
	"context"
	"os"
	"runtime/pprof"
	"sync"
	"time"
)

var sink int

//go:noinline
func burnFast(d time.Duration) {
	x := 0
	for end := time.Now().Add(d); time.Now().Before(end); {
		for i := 0; i < 10000; i++ {
			x += i * i
		}
	}
	sink += x
}

//go:noinline
func burnSlow(d time.Duration) {
	x := 0
	for end := time.Now().Add(d); time.Now().Before(end); {
		for i := 0; i < 10000; i++ {
			x ^= i * 7
		}
	}
	sink += x
}

func main() {
	f, err := os.Create(os.Args[1])
	if err != nil {
		panic(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		panic(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go pprof.Do(context.Background(), pprof.Labels("handler", "fast"), func(context.Context) { burnFast(800 * time.Millisecond); wg.Done() })
	go pprof.Do(context.Background(), pprof.Labels("handler", "slow"), func(context.Context) { burnSlow(800 * time.Millisecond); wg.Done() })
	wg.Wait()
	pprof.StopCPUProfile()
	f.Close()
}
`;
