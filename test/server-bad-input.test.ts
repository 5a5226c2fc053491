// Every kind of bad input gets a 4xx naming the problem, and the server keeps serving.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gzipSync } from 'node:zlib';
import { Function as PFunction, Line, Location, Profile, Sample, StringTable, ValueType } from 'pprof-format';
import { BACKENDS, buildProfile, getJson, ingest, startTestServer } from './server-helpers.js';

type Server = Awaited<ReturnType<typeof startTestServer>>;

async function post(url: string, body: Uint8Array, qs = 'node=a') {
  const res = await fetch(`${url}/api/v1/ingest?${qs}`, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
  return { status: res.status, body: (await res.json()) as { statusCode: number; code: string; error: string; message: string } };
}

/** A profile with one sample whose references we can break. */
function profileWith(mut: { sampleLoc?: number; lineFn?: number; locMapping?: number; fnName?: number }): Uint8Array {
  const st = new StringTable();
  const name = st.dedup('main');
  const p = new Profile({
    sampleType: [new ValueType({ type: st.dedup('samples'), unit: st.dedup('count') })],
    sample: [new Sample({ locationId: [mut.sampleLoc ?? 1], value: [1] })],
    location: [new Location({ id: 1, mappingId: mut.locMapping ?? 0, line: [new Line({ functionId: mut.lineFn ?? 1 })] })],
    function: [new PFunction({ id: 1, name: mut.fnName ?? name })],
    stringTable: st,
  });
  return p.encode();
}

describe.each(BACKENDS)('server bad input (%s)', (backend) => {
  let s: Server;
  beforeAll(async () => {
    s = await startTestServer({ backend, maxBodyBytes: 256 * 1024, maxDecompressedBytes: 1024 * 1024 });
  });
  afterAll(async () => {
    await s.stop();
  });

  const stillServing = async () => {
    const ok = await ingest(s.url, buildProfile({ samples: [{ stack: ['ok'], values: [1, 1] }] }), { node: 'ok' });
    expect(ok.status).toBe(200);
  };

  it('rejects malformed protobuf', async () => {
    const r = await post(s.url, Buffer.from([0x0a, 0xff, 0xff, 0x03, 0x01, 0x02]));
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('FP_ERR_BAD_PROTOBUF');
    expect(r.body.message).toMatch(/runs past the end/);
    const r2 = await post(s.url, Buffer.from('this is not a profile at all'));
    expect(r2.status).toBe(400);
    expect(r2.body.code).toBe('FP_ERR_BAD_PROTOBUF');
    await stillServing();
  });

  it('rejects a body with gzip magic that does not decompress', async () => {
    const good = gzipSync(buildProfile({ samples: [{ stack: ['a'], values: [1, 1] }] }));
    const corrupt = Buffer.from(good);
    corrupt.fill(0x55, 10, 40);
    const r = await post(s.url, corrupt);
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('FP_ERR_BAD_GZIP');
    const truncated = await post(s.url, good.subarray(0, good.length - 12));
    expect(truncated.status).toBe(400);
    expect(truncated.body.code).toBe('FP_ERR_BAD_GZIP');
    await stillServing();
  });

  it('rejects a decompression bomb (cap on the gunzipped size)', async () => {
    const bomb = gzipSync(Buffer.alloc(50 * 1024 * 1024), { level: 9 }); // ~50 KiB -> 50 MiB
    expect(bomb.length).toBeLessThan(256 * 1024);
    const r = await post(s.url, bomb);
    expect(r.status).toBe(413);
    expect(r.body.code).toBe('FP_ERR_DECOMPRESSED_TOO_LARGE');
    expect(r.body.message).toMatch(/1048576 bytes/);
    await stillServing();
  });

  it('rejects a body past the size limit with 413', async () => {
    const r = await post(s.url, Buffer.alloc(300 * 1024, 1));
    expect(r.status).toBe(413);
    expect(r.body.code).toBe('FST_ERR_CTP_BODY_TOO_LARGE');
    await stillServing();
  });

  it('rejects dangling ids: missing location, function, mapping, string index', async () => {
    const cases: [Uint8Array, RegExp][] = [
      [profileWith({ sampleLoc: 99 }), /missing location 99/],
      [profileWith({ lineFn: 42 }), /location 1 references missing function 42/],
      [profileWith({ locMapping: 5 }), /location 1 references missing mapping 5/],
      [profileWith({ fnName: 1000 }), /function 1 name: string index 1000 out of range/],
    ];
    for (const [body, msg] of cases) {
      const r = await post(s.url, body);
      expect(r.status).toBe(400);
      expect(r.body.code).toBe('FP_ERR_BAD_PROFILE');
      expect(r.body.message).toMatch(msg);
    }
    await stillServing();
  });

  it('rejects an empty body and bad label names', async () => {
    expect((await post(s.url, new Uint8Array(0))).status).toBe(400);
    const r = await post(s.url, profileWith({}), 'bad-name=x');
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('FP_ERR_BAD_LABEL');
    expect(r.body.message).toMatch(/bad-name/);
  });

  it('rejects invalid selectors with a message naming the problem', async () => {
    for (const [query, msg] of [
      ['{node="a"', /expected "," or "}"/],
      ['node="a"', /expected "\{"/],
      ['{node=a}', /expected a quoted value/],
      ['{node=~"("}', /bad regular expression/],
      ['{node=="a"}', /expected a quoted value/],
    ] as const) {
      const r = await getJson<{ code: string; message: string }>(s.url, '/api/v1/flamegraph', { query });
      expect(r.status, query).toBe(400);
      expect(r.body.code).toBe('FP_ERR_BAD_SELECTOR');
      expect(r.body.message).toMatch(msg);
    }
    await stillServing();
  });

  it('rejects invalid time ranges', async () => {
    const bad = await getJson<{ code: string; message: string }>(s.url, '/api/v1/top', { from: 'yesterday' });
    expect(bad.status).toBe(400);
    expect(bad.body.code).toBe('FP_ERR_BAD_TIME_RANGE');
    expect(bad.body.message).toMatch(/from="yesterday"/);
    const empty = await getJson<{ code: string; message: string }>(s.url, '/api/v1/top', { from: 'now', to: 'now-1h' });
    expect(empty.status).toBe(400);
    expect(empty.body.message).toMatch(/must be before/);
    const ok = await getJson(s.url, '/api/v1/top', { from: '2026-01-01T00:00:00Z', to: '1767229200000' });
    expect(ok.status).toBe(200);
  });
});

describe('server auth, metrics, openapi, static files', () => {
  let s: Server;
  beforeAll(async () => {
    const { mkdirSync, writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const web = join(tmpdir(), `fleetprof-web-${process.pid}`);
    mkdirSync(web, { recursive: true });
    writeFileSync(join(web, 'index.html'), '<html>viewer</html>');
    s = await startTestServer({ ingestToken: 'in-secret', queryToken: 'q-secret', webDir: web });
  });
  afterAll(async () => {
    await s.stop();
  });

  it('enforces separate bearer tokens for ingest and query', async () => {
    const body = buildProfile({ samples: [{ stack: ['a'], values: [1, 1] }] });
    expect((await ingest(s.url, body, { node: 'a' })).status).toBe(401);
    expect((await ingest(s.url, body, { node: 'a' }, { token: 'q-secret' })).status).toBe(401);
    expect((await ingest(s.url, body, { node: 'a' }, { token: 'in-secret' })).status).toBe(200);
    expect((await getJson(s.url, '/api/v1/labels')).status).toBe(401);
    expect((await getJson(s.url, '/api/v1/labels', {}, 'in-secret')).status).toBe(401);
    expect((await getJson<{ names: string[] }>(s.url, '/api/v1/labels', {}, 'q-secret')).body.names).toEqual(['node']);
  });

  it('exposes Prometheus metrics including rejects by reason', async () => {
    await fetch(`${s.url}/api/v1/ingest?node=x`, { method: 'POST', body: 'junk', headers: { authorization: 'Bearer in-secret', 'content-type': 'application/x-protobuf' } });
    const res = await fetch(`${s.url}/metrics`, { headers: { authorization: 'Bearer q-secret' } });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toMatch(/fleetprof_ingest_profiles_total(\{[^}]*\})? 1/);
    expect(text).toMatch(/fleetprof_ingest_rejects_total\{[^}]*reason="FP_ERR_BAD_PROTOBUF"[^}]*\} 1/);
    expect(text).toMatch(/fleetprof_ingest_rejects_total\{[^}]*reason="FP_ERR_UNAUTHORIZED"[^}]*\} 2/);
    expect(text).toMatch(/fleetprof_ingest_bytes_total/);
    expect(text).toMatch(/fleetprof_query_duration_seconds_bucket/);
    expect(text).toMatch(/fleetprof_store_size_bytes(\{[^}]*\})? \d+/);
  });

  it('serves the OpenAPI description and the web viewer', async () => {
    const doc = (await getJson<{ openapi: string; paths: Record<string, unknown> }>(s.url, '/api/v1/openapi.json')).body;
    expect(doc.openapi).toMatch(/^3\./);
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/api/v1/ingest', '/api/v1/flamegraph', '/api/v1/profile', '/api/v1/diff']));
    const page = await fetch(`${s.url}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('viewer');
  });
});
