// The lean push (src/profile/push-format.ts) against real servers on both
// backends: the same agent profile ingested as pprof and as a lean push
// gives the same stored rows and the same answers (labels, series, flame
// graphs, downloads); later pushes reference stored stacks by id; a
// reference the store does not hold (never stored, collected by retention)
// is a 409 naming the missing ids, and re-sending their definitions works; a
// definition whose id does not match its content is a 400.
import { gunzipSync } from 'node:zlib';
import { Profile } from 'pprof-format';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CpuProfileBuilder, type ProfileFrame } from '../src/profile/builder.js';
import { encodePush, preparePush, type PreparedPush } from '../src/profile/push-encode.js';
import { PUSH_MEDIA_TYPE } from '../src/profile/push-format.js';
import type { ApiErrorResponse, LabelNamesResponse } from '../src/profile/api-types.js';
import { ingestPush } from '../server/ingest-push.js';
import { openStore } from '../server/store/open.js';
import { MARK_EPOCH_MS } from '../server/store/store.js';
import { BACKENDS, getJson, ingest, startTestServer, testStoreUrl } from './server-helpers.js';

type Server = Awaited<ReturnType<typeof startTestServer>>;
const ALL_TIME = { from: '0', to: String(Date.now() + 86_400_000) };

/**
 * A whole-host profile as the agent builds it: several processes (pid, tid,
 * comm, process and pod labels), one shared library at two ASLR bases,
 * kernel frames, named and unnamed JIT frames, and unresolved addresses.
 */
function agentProfile(timeMs: number, extraStacks = 0): Profile {
  const b = new CpuProfileBuilder({ periodNs: 10_000_000, startTimeNs: BigInt(timeMs) * 1_000_000n, durationNs: 10_000_000_000n });
  const lib = (base: bigint, off: bigint, name: string | null): ProfileFrame => ({
    address: base + off,
    functionName: name,
    kind: 'native',
    mappingFile: '/usr/lib/libwork.so',
    buildId: 'abcdef0123456789',
    mappingStart: base,
    mappingEnd: base + 0x100000n,
    mappingFileOffset: 0x1000n,
  });
  const exe = (base: bigint, off: bigint, name: string): ProfileFrame => ({
    address: base + off,
    functionName: name,
    kind: 'native',
    mappingFile: '/usr/bin/server',
    buildId: null,
    mappingStart: base,
    mappingEnd: base + 0x200000n,
    mappingFileOffset: 0n,
  });
  const kernel = (addr: bigint, name: string | null): ProfileFrame => ({
    address: addr,
    functionName: name,
    kind: 'kernel',
    mappingFile: '[kernel.kallsyms]',
    buildId: null,
    mappingStart: 0n,
    mappingEnd: 0n,
    mappingFileOffset: 0n,
  });
  const jit = (addr: bigint, name: string): ProfileFrame => ({ address: addr, functionName: name, kind: 'jit', mappingFile: '[jit]', buildId: null, mappingStart: 0n, mappingEnd: 0n, mappingFileOffset: 0n, sourceFile: 'app.js:12' });
  const procs = [
    { pid: 101, base: 0x7f0000000000n, comm: 'api', attribution: { pod: 'api-1', namespace: 'prod' } },
    { pid: 202, base: 0x7f1000000000n, comm: 'api', attribution: { pod: 'api-2', namespace: 'prod' } },
    { pid: 303, base: 0x7f2000000000n, comm: 'worker', attribution: { systemd_unit: 'worker.service' } },
  ];
  const k1 = kernel(0xffffffff81001000n, 'do_syscall_64');
  const k2 = kernel(0xffffffff81002000n, 'entry_SYSCALL_64');
  const kUnresolved = kernel(0xffffffffc0123456n, null);
  for (const p of procs) {
    const main = exe(0x55000000n + BigInt(p.pid) * 0x1000000n, 0x1234n, 'main');
    const handle = exe(0x55000000n + BigInt(p.pid) * 0x1000000n, 0x2345n, 'handle');
    const work = lib(p.base, 0x4000n, 'work');
    const hash = lib(p.base, 0x5000n, 'hash');
    const unresolved = lib(p.base, 0x6789n, null);
    for (const tid of [p.pid, p.pid + 1]) {
      const labels = { pid: p.pid, tid, comm: p.comm, processName: p.comm, attribution: p.attribution };
      b.addSample([hash, work, handle, main], 3 + (tid % 2), labels);
      b.addSample([work, handle, main], 2, labels);
      b.addSample([k1, k2, unresolved, work, main], 1, labels);
      b.addSample([kUnresolved, k1, main], 1, labels);
      b.addSample([jit(0x3000n + BigInt(p.pid), 'processRequest'), jit(0x4000n, 'runMicrotasks'), main], 2, labels);
      b.addSample([], 1, labels);
      for (let i = 0; i < extraStacks; i++) b.addSample([exe(0x55000000n + BigInt(p.pid) * 0x1000000n, 0x8000n + BigInt(i) * 16n, `extra${i}`), main], 1, labels);
    }
  }
  return b.build();
}

async function pushLean(url: string, body: Buffer, labels: Record<string, string>) {
  const res = await fetch(`${url}/api/v1/ingest?${new URLSearchParams(labels)}`, { method: 'POST', body, headers: { 'content-type': PUSH_MEDIA_TYPE } });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> & Partial<ApiErrorResponse> };
}

const never = () => false;

/** Everything a client can read back about what is stored, for comparing two stores. */
async function storedAnswers(url: string) {
  const labels = await getJson<LabelNamesResponse>(url, '/api/v1/labels', ALL_TIME);
  const values: Record<string, unknown> = {};
  for (const name of labels.body.names) {
    values[name] = (await getJson(url, `/api/v1/labels/${name}/values`, ALL_TIME)).body;
  }
  const flame = (await getJson(url, '/api/v1/flamegraph', { ...ALL_TIME, query: '{}', groupBy: 'comm,pod,process' })).body;
  const top = (await getJson(url, '/api/v1/top', { ...ALL_TIME, query: '{comm="api"}' })).body;
  const download = Profile.decode(gunzipSync(Buffer.from(await (await fetch(`${url}/api/v1/profile?${new URLSearchParams({ ...ALL_TIME, query: '{}' })}`)).arrayBuffer())));
  const metrics = await (await fetch(`${url}/metrics`)).text();
  const rows = [...metrics.matchAll(/fleetprof_store_symbol_rows\{kind="(\w+)"[^}]*\} (\d+)/g)].map((m) => `${m[1]}=${m[2]}`).sort();
  return { labels: labels.body, values, flame, top, download: downloadKey(download), rows };
}

/** A download's samples as sorted (labels, frames, values) strings: independent of row order in the file. */
function downloadKey(p: Profile): string[] {
  const s = (i: unknown) => p.stringTable.strings[Number(i)] ?? '';
  const fns = new Map(p.function.map((f) => [Number(f.id), `${s(f.name)}/${s(f.filename)}`]));
  const maps = new Map(p.mapping.map((m) => [Number(m.id), `${s(m.filename)}@${s(m.buildId)}+${m.fileOffset}`]));
  const locs = new Map(p.location.map((l) => [Number(l.id), `${maps.get(Number(l.mappingId)) ?? '-'}:${BigInt(l.address) - 0n}:${l.line.map((ln) => fns.get(Number(ln.functionId))).join('>')}`]));
  return p.sample
    .map((x) => `${x.label.map((l) => `${s(l.key)}=${s(l.str)}`).sort().join(',')}|${x.locationId.map((id) => locs.get(Number(id))).join(';')}|${x.value.join(',')}`)
    .sort();
}

describe.each(BACKENDS)('lean push (%s)', (backend) => {
  let viaPprof: Server;
  let viaPush: Server;
  let prepared: PreparedPush;
  const timeMs = Date.now() - 60_000;
  beforeAll(async () => {
    // Both drop `process` too, so the drop list is exercised on both paths.
    viaPprof = await startTestServer({ backend, dropSampleLabels: ['pid', 'tid', 'process'] });
    viaPush = await startTestServer({ backend, dropSampleLabels: ['pid', 'tid', 'process'] });
    prepared = preparePush(agentProfile(timeMs));
  });
  afterAll(async () => {
    await viaPprof?.stop();
    await viaPush?.stop();
  });

  it('stores the same rows and answers the same as the pprof of the same agent profile', async () => {
    const profile = agentProfile(timeMs);
    const a = await ingest(viaPprof.url, profile.encode(), { node: 'n1' });
    expect(a.status).toBe(200);
    const lean = encodePush(prepared, never);
    expect(lean.referenced).toBe(0);
    const b = await pushLean(viaPush.url, lean.body, { node: 'n1' });
    expect(b.status, JSON.stringify(b.json)).toBe(200);
    expect(b.json.ids).toHaveLength((a.json.ids as number[]).length);
    const [x, y] = [await storedAnswers(viaPprof.url), await storedAnswers(viaPush.url)];
    expect(y).toEqual(x);
    // The series split by the kept labels (comm, pod, namespace, systemd_unit), not by pid, tid or the dropped process.
    expect((a.json.ids as number[]).length).toBe(3);
    expect(JSON.stringify(x.labels)).not.toContain('"process"');
    expect(x.rows.join(' ')).toMatch(/stack=[1-9]/);
  });

  it('references stored stacks by id: a smaller push, the same data', async () => {
    const first = encodePush(prepared, never);
    const known = new Map(first.defined.map((d) => [d.id, d.check]));
    const lean = encodePush(prepared, (id, check) => known.get(id) === check);
    expect(lean.defined).toHaveLength(0);
    expect(lean.referenced).toBeGreaterThan(0);
    expect(lean.body.length * 2).toBeLessThan(first.body.length);
    // The same profile again on both servers: pprof on one, references on the other.
    expect((await ingest(viaPprof.url, agentProfile(timeMs).encode(), { node: 'n1' })).status).toBe(200);
    const r = await pushLean(viaPush.url, lean.body, { node: 'n1' });
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(await storedAnswers(viaPush.url)).toEqual(await storedAnswers(viaPprof.url));
  });

  it('answers a reference it does not hold with 409 and the missing ids; the definitions then go through', async () => {
    const fresh = await startTestServer({ backend });
    const reference = await startTestServer({ backend });
    try {
      const first = encodePush(prepared, never);
      const all = new Set(first.defined.map((d) => d.id));
      const refsOnly = encodePush(prepared, () => true);
      const r = await pushLean(fresh.url, refsOnly.body, { node: 'n2' });
      expect(r.status).toBe(409);
      expect(r.json.code).toBe('FP_ERR_UNKNOWN_STACKS');
      expect(new Set(r.json.missingStacks)).toEqual(all);
      // Nothing of the refused push was stored.
      const fg = await getJson<{ total: number }>(fresh.url, '/api/v1/flamegraph', { ...ALL_TIME, query: '{}' });
      expect(fg.body.total).toBe(0);
      const again = encodePush(prepared, () => true, new Set(r.json.missingStacks));
      expect(again.defined.map((d) => d.id).sort()).toEqual([...all].sort());
      const ok = await pushLean(fresh.url, again.body, { node: 'n2' });
      expect(ok.status, JSON.stringify(ok.json)).toBe(200);
      expect((await ingest(reference.url, agentProfile(timeMs).encode(), { node: 'n2' })).status).toBe(200);
      expect(await storedAnswers(fresh.url)).toEqual(await storedAnswers(reference.url));
    } finally {
      await fresh.stop();
      await reference.stop();
    }
  });

  it('refuses a definition whose id does not match its content (400), and a bad check', async () => {
    // A function named differently from what its stacks' ids were computed from.
    const p = preparePush(agentProfile(timeMs));
    p.functions[0]!.name = p.functions[0]!.filename;
    const r = await pushLean(viaPush.url, encodePush(p, never).body, { node: 'bad' });
    expect(r.status).toBe(400);
    expect(r.json.code).toBe('FP_ERR_BAD_PROFILE');
    expect(r.json.message).toMatch(/stack \d+: content id \d+ does not match its content/);
    const q = preparePush(agentProfile(timeMs));
    q.stacks[0]!.check ^= 1;
    const r2 = await pushLean(viaPush.url, encodePush(q, never).body, { node: 'bad' });
    expect(r2.status).toBe(400);
    expect(r2.json.message).toMatch(/check .* does not match its content/);
  });

  it('a reference keeps its rows through retention; rows retention collected are a 409', async () => {
    const t = await testStoreUrl(backend);
    const store = await openStore(t.url);
    try {
      const T0 = Date.parse('2026-01-01T00:00:00Z');
      const p0 = preparePush(agentProfile(T0, 5));
      const first = encodePush(p0, never);
      await ingestPush(store, first.body, { node: 'a' }, T0);
      // Three epochs later, by reference only: the store raises the marks of the stacks and what they use.
      const T1 = T0 + 3 * MARK_EPOCH_MS;
      const p1 = preparePush(agentProfile(T1, 5));
      await ingestPush(store, encodePush(p1, () => true).body, { node: 'a' }, T1);
      const before = await store.symbolRowCounts();
      await store.retain(T0 + MARK_EPOCH_MS, T1 + 30 * 60_000);
      expect(await store.symbolRowCounts()).toEqual(before);
      // Everything dropped: a reference is now answered with the missing ids, never stored silently.
      await store.retain(T1 + 10 * MARK_EPOCH_MS, T1 + 12 * MARK_EPOCH_MS);
      expect(Object.values(await store.symbolRowCounts()).every((n) => n === 0)).toBe(true);
      const T2 = T1 + 12 * MARK_EPOCH_MS;
      const p2 = preparePush(agentProfile(T2, 5));
      const err = await ingestPush(store, encodePush(p2, () => true).body, { node: 'a' }, T2).catch((e: unknown) => e);
      expect((err as { code?: string }).code).toBe('FP_ERR_UNKNOWN_STACKS');
      expect(new Set((err as { details?: { missingStacks?: number[] } }).details?.missingStacks)).toEqual(new Set(p2.stacks.map((s) => s.id)));
    } finally {
      await store.close();
      t.cleanup();
    }
  });
});

