// Shared helpers of the server tests: temp data dirs, real servers on
// 127.0.0.1:0, and pprof profiles of known shape built with pprof-format.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Function as PFunction, Line, Location, Mapping, Profile, Sample, StringTable, ValueType } from 'pprof-format';
import { afterAll } from 'vitest';
import { startServer, type RunningServer, type ServerOptions } from '../server/index.js';
import { startPostgres, type TestPostgres } from './helpers/postgres.js';

/** Store backends the server suites run against (describe.each): embedded SQLite, and PostgreSQL 15 started for the test file. */
export const BACKENDS = ['sqlite', 'postgres'] as const;
export type Backend = (typeof BACKENDS)[number];

let cluster: Promise<TestPostgres> | undefined;
/** The test file's PostgreSQL cluster, started on first use and stopped after the file. */
export function testPostgres(): Promise<TestPostgres> {
  cluster ??= startPostgres();
  return cluster;
}
afterAll(async () => {
  if (cluster) (await cluster).stop();
  cluster = undefined;
});

/** A fresh, empty store URL of the backend, and how to clean up after it. */
export async function testStoreUrl(backend: Backend): Promise<{ url: string; cleanup(): void }> {
  if (backend === 'postgres') return { url: (await testPostgres()).newDatabase(), cleanup: () => undefined };
  const t = tempDir();
  return { url: `sqlite:${t.dir}`, cleanup: t.cleanup };
}

export function tempDir(prefix = 'fleetprof-server-'): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export async function startTestServer(
  opts: Partial<ServerOptions> & { backend?: Backend } = {},
): Promise<RunningServer & { storeUrl: string; stop(): Promise<void> }> {
  const { backend = 'sqlite', ...rest } = opts;
  const t = await testStoreUrl(backend);
  const server = await startServer({ store: t.url, port: 0, ...rest });
  return {
    ...server,
    storeUrl: t.url,
    async stop() {
      await server.close();
      t.cleanup();
    },
  };
}

/** A stack as function names, root first; optional inlined groups as arrays (outermost first). */
export type StackSpec = (string | string[])[];

export interface ProfileSpec {
  samples: { stack: StackSpec; values: number[] }[];
  sampleTypes?: [string, string][];
  timeMs?: number;
  binary?: string | null; // null = no mapping at all
  period?: number;
}

/** Builds a pprof whose location/function ids are deliberately non-contiguous. */
export function buildProfile(spec: ProfileSpec): Uint8Array {
  const st = new StringTable();
  const fnIds = new Map<string, number>();
  const functions: PFunction[] = [];
  const locIds = new Map<string, number>();
  const locations: Location[] = [];
  const binary = spec.binary === undefined ? '/usr/bin/app' : spec.binary;
  const mapping = binary === null ? undefined : new Mapping({ id: 7, memoryStart: 0x400000, memoryLimit: 0x800000, filename: st.dedup(binary), hasFunctions: true });
  const fn = (name: string) => {
    let id = fnIds.get(name);
    if (id === undefined) {
      id = 100 + fnIds.size * 3;
      fnIds.set(name, id);
      functions.push(new PFunction({ id, name: st.dedup(name), systemName: st.dedup(name), filename: st.dedup('src.go') }));
    }
    return id;
  };
  const loc = (frame: string | string[]) => {
    const key = Array.isArray(frame) ? frame.join('>') : frame;
    let id = locIds.get(key);
    if (id === undefined) {
      id = 1000 + locIds.size * 5;
      locIds.set(key, id);
      const names = Array.isArray(frame) ? frame : [frame];
      // pprof lists inlined lines innermost first.
      const line = [...names].reverse().map((n, i) => new Line({ functionId: fn(n), line: 10 + i }));
      locations.push(new Location({ id, mappingId: mapping ? 7 : 0, address: 0x401000 + locIds.size * 16, line }));
    }
    return id;
  };
  const types = spec.sampleTypes ?? [
    ['samples', 'count'],
    ['cpu', 'nanoseconds'],
  ];
  const samples = spec.samples.map((s) => new Sample({ locationId: [...s.stack].reverse().map(loc), value: s.values }));
  const p = new Profile({
    sampleType: types.map(([t, u]) => new ValueType({ type: st.dedup(t), unit: st.dedup(u) })),
    sample: samples,
    mapping: mapping ? [mapping] : [],
    location: locations,
    function: functions,
    stringTable: st,
    timeNanos: BigInt(spec.timeMs ?? Date.now()) * 1_000_000n,
    durationNanos: 10_000_000_000,
    periodType: new ValueType({ type: st.dedup('cpu'), unit: st.dedup('nanoseconds') }),
    period: spec.period ?? 10_000_000,
  });
  return p.encode();
}

export async function ingest(url: string, body: Uint8Array, labels: Record<string, string>, opts: { gzip?: boolean; token?: string } = {}) {
  const qs = new URLSearchParams(labels).toString();
  const payload = opts.gzip === false ? body : gzipSync(body);
  const res = await fetch(`${url}/api/v1/ingest?${qs}`, {
    method: 'POST',
    body: payload,
    headers: { 'content-type': 'application/octet-stream', ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}) },
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

export async function getJson<T>(url: string, path: string, params: Record<string, string> = {}, token?: string): Promise<{ status: number; body: T }> {
  const qs = new URLSearchParams(params).toString();
  const res = await fetch(`${url}${path}${qs ? '?' + qs : ''}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  return { status: res.status, body: (await res.json()) as T };
}

/** Sum of values per root-first function path from a FlameTree (keys "a;b;c" -> self). */
export function flameSelfByPath(fg: { functions: { name: string[] }; tree: { func: number[]; parent: number[]; self: number[] } }): Map<string, number> {
  const paths: string[] = [''];
  const out = new Map<string, number>();
  for (let i = 1; i < fg.tree.func.length; i++) {
    const p = paths[fg.tree.parent[i]!]!;
    const path = (p ? p + ';' : '') + fg.functions.name[fg.tree.func[i]!]!;
    paths.push(path);
    if (fg.tree.self[i]! !== 0) out.set(path, (out.get(path) ?? 0) + fg.tree.self[i]!);
  }
  return out;
}
