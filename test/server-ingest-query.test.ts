import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { Profile } from 'pprof-format';
import type { DiffFlameGraphResponse, FlameGraphResponse, LabelNamesResponse, LabelValuesResponse, TimelineResponse, TopResponse } from '../src/profile/api-types.js';
import { BACKENDS, buildProfile, flameSelfByPath, getJson, ingest, startTestServer, tempDir, type StackSpec } from './server-helpers.js';

type Server = Awaited<ReturnType<typeof startTestServer>>;

const T0 = Date.parse('2026-01-01T00:00:00Z');
const RANGE = { from: String(T0 - 60_000), to: String(T0 + 3_600_000) };
const PERIOD = 10_000_000;

/** samples/count + cpu/nanoseconds values for a count. */
const v = (n: number) => [n, n * PERIOD];

function goPprofTop(file: string, sampleIndex: string): Map<string, { flat: number; cum: number }> {
  const out = execFileSync('go', ['tool', 'pprof', '-top', '-nodecount=1000', `-sample_index=${sampleIndex}`, file], {
    encoding: 'utf8',
    env: { ...process.env, HOME: process.env.HOME ?? '/tmp' },
  });
  const rows = new Map<string, { flat: number; cum: number }>();
  for (const line of out.split('\n')) {
    const m = /^\s*(\d+)\s+[\d.]+%\s+[\d.]+%\s+(\d+)\s+[\d.]+%\s+(.+?)\s*$/.exec(line);
    if (m) rows.set(m[3]!, { flat: Number(m[1]), cum: Number(m[2]) });
  }
  return rows;
}

describe.each(BACKENDS)('server ingest + query (%s)', (backend) => {
  let s: Server;
  const work = tempDir('fleetprof-server-files-');

  beforeAll(async () => {
    // T0 is a fixed date: retention long enough that its profiles are neither refused nor deleted.
    s = await startTestServer({ backend, retentionMs: 100 * 365 * 86_400_000 });
    const a = buildProfile({
      timeMs: T0,
      samples: [
        { stack: ['main', 'foo', 'bar'], values: v(3) },
        { stack: ['main', 'foo'], values: v(2) },
        { stack: ['main', 'baz'], values: v(5) },
        // duplicate stack in the same profile (e.g. another tid): summed
        { stack: ['main', 'baz'], values: v(1) },
      ],
    });
    const b = buildProfile({ timeMs: T0 + 10_000, samples: [{ stack: ['main', 'foo', 'bar'], values: v(4) }] });
    const c = buildProfile({ timeMs: T0 + 20_000, samples: [{ stack: ['main', ['qux', 'inlined']], values: v(7) }] });
    expect((await ingest(s.url, a, { node: 'a', comm: 'app' })).status).toBe(200);
    expect((await ingest(s.url, b, { node: 'b', comm: 'app' }, { gzip: false })).status).toBe(200);
    expect((await ingest(s.url, c, { node: 'c', comm: 'postgres' })).status).toBe(200);
  });
  afterAll(async () => {
    await s.stop();
    work.cleanup();
  });

  it('merges a flame graph over all series in pre-order with sorted siblings', async () => {
    const { status, body } = await getJson<FlameGraphResponse>(s.url, '/api/v1/flamegraph', { query: '{}', ...RANGE });
    expect(status).toBe(200);
    expect(body.version).toBe(1);
    expect(body.sampleType).toEqual({ type: 'cpu', unit: 'nanoseconds' });
    expect(body.total).toBe(22 * PERIOD);
    expect(body.tree.total[0]).toBe(body.total);
    expect(body.tree.func[0]).toBe(-1);
    expect(body.tree.parent[0]).toBe(-1);
    for (let i = 1; i < body.tree.parent.length; i++) expect(body.tree.parent[i]!).toBeLessThan(i);
    expect(Object.fromEntries(flameSelfByPath(body))).toEqual({
      'main;foo;bar': 7 * PERIOD,
      'main;foo': 2 * PERIOD,
      'main;baz': 6 * PERIOD,
      'main;qux;inlined': 7 * PERIOD,
    });
    // children of main: bar-less order baz, foo, qux
    const main = body.tree.func.findIndex((f) => body.functions.name[f] === 'main');
    const kids = body.tree.parent.map((p, i) => (p === main ? body.functions.name[body.tree.func[i]!] : null)).filter((x) => x !== null);
    expect(kids).toEqual(['baz', 'foo', 'qux']);
    expect(body.functions.binary[body.tree.func[main]!]).toBe('/usr/bin/app');
    expect(body.functions.kind[body.tree.func[main]!]).toBe('native');
  });

  it('keeps samples without frames, also when one comes first (the root has a value of its own)', async () => {
    // Its own server: the shared one's series are counted by the other tests.
    // T0 is a fixed date: a retention long enough that ingest does not refuse it.
    const own = await startTestServer({ backend, retentionMs: 100 * 365 * 86_400_000 });
    try {
      const p = buildProfile({ timeMs: T0 + 30_000, samples: [{ stack: [], values: v(2) }, { stack: ['main', 'only'], values: v(3) }] });
      expect((await ingest(own.url, p, { node: 'frameless' })).status).toBe(200);
      const fg = await getJson<FlameGraphResponse>(own.url, '/api/v1/flamegraph', { query: '{node="frameless"}', ...RANGE });
      expect(fg.body.total).toBe(5 * PERIOD);
      expect(fg.body.tree.self[0]).toBe(2 * PERIOD);
      const res = await fetch(`${own.url}/api/v1/profile?${new URLSearchParams({ query: '{node="frameless"}', ...RANGE })}`);
      const back = Profile.decode(gunzipSync(Buffer.from(await res.arrayBuffer())));
      expect(back.sample.reduce((a, x) => a + Number(x.value[0]), 0)).toBe(5);
    } finally {
      await own.stop();
    }
  });

  it('selects series with =, !=, =~, !~ (anchored regexes)', async () => {
    const total = async (query: string) => (await getJson<FlameGraphResponse>(s.url, '/api/v1/flamegraph', { query, ...RANGE, sampleType: 'samples' })).body.total;
    expect(await total('{node="a"}')).toBe(11);
    expect(await total('{node!="a"}')).toBe(11);
    expect(await total('{comm=~"app"}')).toBe(15);
    expect(await total('{comm=~"ap"}')).toBe(0);
    expect(await total('{comm=~"post.*"}')).toBe(7);
    expect(await total('{node!~"a|b"}')).toBe(7);
    expect(await total('{comm="app", node=~"b"}')).toBe(4);
    expect(await total('{missing=""}')).toBe(22);
  });

  it('serves top, timeline and diff in the api-types shapes', async () => {
    const top = (await getJson<TopResponse>(s.url, '/api/v1/top', { ...RANGE, sampleType: 'samples:count' })).body;
    expect(top.total).toBe(22);
    expect(top.rows[0]).toMatchObject({ name: 'bar', self: 7, total: 7 });
    expect(top.rows.find((r) => r.name === 'main')).toMatchObject({ self: 0, total: 22 });
    expect(top.rows.find((r) => r.name === 'foo')).toMatchObject({ self: 2, total: 9 });
    const limited = (await getJson<TopResponse>(s.url, '/api/v1/top', { ...RANGE, limit: '2' })).body;
    expect(limited.rows).toHaveLength(2);

    const tl = (await getJson<TimelineResponse>(s.url, '/api/v1/timeline', { from: String(T0), to: String(T0 + 30_000), stepMs: '10000', sampleType: 'samples' })).body;
    expect(tl).toMatchObject({ sampleType: { type: 'samples', unit: 'count' }, stepMs: 10000, timestampsMs: [T0, T0 + 10_000, T0 + 20_000], values: [11, 4, 7] });

    const diff = (
      await getJson<DiffFlameGraphResponse>(s.url, '/api/v1/diff', {
        leftQuery: '{node="a"}',
        leftFrom: RANGE.from,
        leftTo: RANGE.to,
        rightQuery: '{node="b"}',
        rightFrom: RANGE.from,
        rightTo: RANGE.to,
        sampleType: 'samples',
      })
    ).body;
    expect(diff.baselineTotal).toBe(11);
    expect(diff.total).toBe(4);
    expect(diff.tree.baselineTotal[0]).toBe(11);
    const bar = diff.tree.func.findIndex((f) => diff.functions.name[f] === 'bar');
    expect(diff.tree.self[bar]).toBe(4);
    expect(diff.tree.baselineSelf[bar]).toBe(3);
    const baz = diff.tree.func.findIndex((f) => diff.functions.name[f] === 'baz');
    expect(diff.tree.self[baz]).toBe(0);
    expect(diff.tree.baselineSelf[baz]).toBe(6);
  });

  it('lists label names and values, filtered by selector', async () => {
    expect((await getJson<LabelNamesResponse>(s.url, '/api/v1/labels')).body).toEqual({ names: ['comm', 'node'] });
    expect((await getJson<LabelValuesResponse>(s.url, '/api/v1/labels/node/values')).body).toEqual({ name: 'node', values: ['a', 'b', 'c'] });
    expect((await getJson<LabelValuesResponse>(s.url, '/api/v1/labels/node/values', { query: '{comm="app"}' })).body.values).toEqual(['a', 'b']);
    // time filter: only profile c is after T0+15s
    expect((await getJson<LabelValuesResponse>(s.url, '/api/v1/labels/node/values', { from: String(T0 + 15_000), to: String(T0 + 60_000) })).body.values).toEqual(['c']);
  });

  it('serves a merged pprof that go tool pprof reads with the expected values', async () => {
    const res = await fetch(`${s.url}/api/v1/profile?${new URLSearchParams({ query: '{comm="app"}', ...RANGE })}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/octet-stream');
    expect(res.headers.get('content-disposition')).toContain('attachment');
    const file = join(work.dir, 'merged.pb.gz');
    writeFileSync(file, Buffer.from(await res.arrayBuffer()));
    const top = goPprofTop(file, 'samples');
    expect(top.get('bar')).toEqual({ flat: 7, cum: 7 });
    expect(top.get('baz')).toEqual({ flat: 6, cum: 6 });
    expect(top.get('foo')).toEqual({ flat: 2, cum: 9 });
    expect(top.get('main')).toEqual({ flat: 0, cum: 15 });
    // both sample types survive
    const p = Profile.decode(gunzipSync(readFileSync(file)));
    expect(p.sampleType.map((t) => p.stringTable.strings[Number(t.type)])).toEqual(['samples', 'cpu']);
  });

  it('lists stored profiles and returns one as ingested', async () => {
    const list = (await getJson<{ profiles: { id: number; labels: Record<string, string>; timeMs: number }[] }>(s.url, '/api/v1/profiles', { ...RANGE })).body;
    expect(list.profiles.map((p) => [p.labels.node, p.timeMs])).toEqual([
      ['a', T0],
      ['b', T0 + 10_000],
      ['c', T0 + 20_000],
    ]);
    const c = list.profiles[2]!;
    const res = await fetch(`${s.url}/api/v1/profiles/${c.id}`);
    expect(res.status).toBe(200);
    const p = Profile.decode(gunzipSync(Buffer.from(await res.arrayBuffer())));
    expect(Number(p.timeNanos) / 1e6).toBe(T0 + 20_000);
    expect(p.sample).toHaveLength(1);
    expect(p.sample[0]!.value.map(Number)).toEqual(v(7));
    // inlined location keeps its two lines (innermost first)
    const leaf = p.location.find((l) => Number(l.id) === Number(p.sample[0]!.locationId[0]))!;
    expect(leaf.line.map((l) => p.stringTable.strings[Number(p.function.find((f) => f.id === l.functionId)!.name)])).toEqual(['inlined', 'qux']);
    expect((await fetch(`${s.url}/api/v1/profiles/999999`)).status).toBe(404);
  });

  it('merging N random profiles equals the sum of their samples', async () => {
    const pool: StackSpec[] = [];
    for (let i = 0; i < 40; i++) pool.push(['root', `f${i % 7}`, `g${i % 5}`, `h${i}`].slice(0, 2 + (i % 3)));
    const expected = new Map<string, number>();
    let seed = 42;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const t1 = T0 + 7_200_000;
    for (let n = 0; n < 25; n++) {
      const samples = [];
      for (let k = 0; k < 15; k++) {
        const stack = pool[Math.floor(rnd() * pool.length)]!;
        const count = 1 + Math.floor(rnd() * 50);
        samples.push({ stack, values: v(count) });
        const key = stack.join(';');
        expected.set(key, (expected.get(key) ?? 0) + count);
      }
      expect((await ingest(s.url, buildProfile({ timeMs: t1 + n * 1000, samples }), { node: `n${n % 4}`, job: 'sum' })).status).toBe(200);
    }
    const fg = (await getJson<FlameGraphResponse>(s.url, '/api/v1/flamegraph', { query: '{job="sum"}', from: String(t1), to: String(t1 + 60_000), sampleType: 'samples' })).body;
    expect(Object.fromEntries(flameSelfByPath(fg))).toEqual(Object.fromEntries(expected));
    expect(fg.total).toBe([...expected.values()].reduce((a, b) => a + b, 0));
  });

  it('ingests a real Go CPU profile (runtime/pprof)', async () => {
    const dir = join(work.dir, 'goprog');
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, 'main.go'),
      `package main

import (
	"os"
	"runtime/pprof"
	"time"
)

//go:noinline
func busyWork(n int) int {
	x := 0
	for i := 0; i < n; i++ {
		x += i * i % 7
	}
	return x
}

func main() {
	f, err := os.Create(os.Args[1])
	if err != nil {
		panic(err)
	}
	pprof.StartCPUProfile(f)
	deadline := time.Now().Add(700 * time.Millisecond)
	s := 0
	for time.Now().Before(deadline) {
		s += busyWork(1000000)
	}
	pprof.StopCPUProfile()
	f.Close()
	if s == 42 {
		println(s)
	}
}
`,
    );
    const out = join(dir, 'cpu.pb.gz');
    execFileSync('go', ['run', 'main.go', out], {
      cwd: dir,
      env: { ...process.env, GOCACHE: join(dir, 'cache'), GOPATH: join(dir, 'gopath'), GO111MODULE: 'off', GOFLAGS: '', HOME: dir },
      timeout: 240_000,
    });
    const raw = readFileSync(out);
    const r = await ingest(s.url, raw, { node: 'go', service: 'gobusy' }, { gzip: false }); // already gzipped by runtime/pprof
    expect(r.status).toBe(200);
    const top = (await getJson<TopResponse>(s.url, '/api/v1/top', { query: '{service="gobusy"}', from: 'now-1d', to: 'now+1h' })).body;
    expect(top.sampleType).toEqual({ type: 'cpu', unit: 'nanoseconds' });
    expect(top.total).toBeGreaterThan(0);
    const busy = top.rows.find((row) => row.name === 'main.busyWork');
    expect(busy, JSON.stringify(top.rows.slice(0, 5))).toBeDefined();
    expect(busy!.self).toBeGreaterThan(top.total * 0.5);
    // and go tool pprof agrees with what we serve back
    const res = await fetch(`${s.url}/api/v1/profile?${new URLSearchParams({ query: '{service="gobusy"}', from: 'now-1d', to: 'now+1h' })}`);
    const file = join(work.dir, 'go-merged.pb.gz');
    writeFileSync(file, Buffer.from(await res.arrayBuffer()));
    const orig = goPprofTop(out, 'samples');
    const ours = goPprofTop(file, 'samples');
    expect(ours.get('main.busyWork')).toEqual(orig.get('main.busyWork'));
  });

  it('ingests a real @datadog/pprof wall profile (no mappings, line numbers)', async () => {
    const entry = createRequire(import.meta.url).resolve('@datadog/pprof');
    const script = join(work.dir, 'dd.mjs');
    const out = join(work.dir, 'dd.pb.gz');
    writeFileSync(
      script,
      `const pprof = (await import(${JSON.stringify(pathToFileURL(entry).href)})).default;
import { writeFileSync } from 'node:fs';
function busyLoopForTest(ms) { const end = Date.now() + ms; let x = 0; while (Date.now() < end) x += Math.sqrt(x + 1); return x; }
pprof.time.start({ intervalMicros: 1000, durationMillis: 60000 });
busyLoopForTest(500);
writeFileSync(process.argv[2], await pprof.encode(pprof.time.stop()));
`,
    );
    execFileSync(process.execPath, [script, out], { timeout: 60_000 });
    const r = await ingest(s.url, readFileSync(out), { node: 'nodejs', service: 'dd' }, { gzip: false });
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    const top = (await getJson<TopResponse>(s.url, '/api/v1/top', { query: '{service="dd"}', from: 'now-1d', to: 'now+1h' })).body;
    expect(top.sampleType).toEqual({ type: 'wall', unit: 'nanoseconds' });
    const busy = top.rows.find((row) => row.name === 'busyLoopForTest')!;
    expect(busy, JSON.stringify(top.rows.slice(0, 5))).toBeDefined();
    expect(busy.self).toBeGreaterThan(top.total * 0.5);
    expect(busy.kind).toBe('unknown'); // no mapping at all
    const res = await fetch(`${s.url}/api/v1/profile?${new URLSearchParams({ query: '{service="dd"}', from: 'now-1d', to: 'now+1h' })}`);
    const file = join(work.dir, 'dd-merged.pb.gz');
    writeFileSync(file, Buffer.from(await res.arrayBuffer()));
    expect(goPprofTop(file, 'sample').get('busyLoopForTest')).toEqual(goPprofTop(out, 'sample').get('busyLoopForTest'));
  });
});
