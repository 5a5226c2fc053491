// The faults of issue 12 ("safe to expose"), each provoked against a real
// server on 127.0.0.1: catastrophic selector regexes, cross-origin ingest,
// and the other checks at the edge of the API.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProfile, getJson, ingest, startTestServer, tempDir } from './server-helpers.js';
import { startCliServer } from './helpers/cli.js';

describe('selector regexes', () => {
  // A child process: if a pattern blocked its event loop, this test's own
  // timeout would still fire and fail it (in-process, it would hang instead).
  let s: Awaited<ReturnType<typeof startCliServer>>;
  const data = tempDir();
  beforeAll(async () => {
    s = await startCliServer(data.dir);
  });
  afterAll(async () => {
    s.kill();
    await s.exited;
    data.cleanup();
  });

  // On a backtracking engine `(a+)+c` against 30 a's blocked the event loop
  // for 2.5 s, and each two more characters multiplied that by four: against
  // 200 a's it would not finish in this test's timeout (and healthz would
  // wait behind it). On RE2 it is one linear pass per series.
  it('answers a catastrophic pattern while other requests are served', { timeout: 30_000 }, async () => {
    const longName = 'a'.repeat(200);
    expect((await ingest(s.url, buildProfile({ samples: [{ stack: ['main'], values: [1, 1] }] }), { node: 'n', comm: longName })).status).toBe(200);
    expect((await ingest(s.url, buildProfile({ samples: [{ stack: ['main'], values: [1, 1] }] }), { node: 'n', comm: longName + 'c' })).status).toBe(200);
    const [evil, health, labels] = await Promise.all([
      getJson<{ name: string; values: string[] }>(s.url, '/api/v1/labels/comm/values', { query: '{comm=~"(a+)+c"}' }),
      getJson<{ status: string }>(s.url, '/healthz'),
      getJson<{ names: string[] }>(s.url, '/api/v1/labels'),
    ]);
    expect(evil.status).toBe(200);
    expect(evil.body).toEqual({ name: 'comm', values: [longName + 'c'] });
    expect(health.body.status).toBe('ok');
    expect(labels.body.names).toContain('comm');
  });

  it('refuses oversized or unparsable patterns with a 400 that says why', async () => {
    const s = await startTestServer();
    try {
      for (const [pattern, why] of [
        ['x'.repeat(1025), /1025 characters long; the limit is 1024/],
        ['.{1000}.{1000}.{1000}.{1000}.{1000}.{1000}', /compiles to \d+ instructions; the limit is 5000/],
        ['((a{10}){10}){100}', /invalid repeat count/],
        ['(?=x)', /RE2 syntax/],
      ] as const) {
        const r = await getJson<{ code: string; message: string }>(s.url, '/api/v1/labels', { query: `{comm=~"${pattern}"}` });
        expect(r.status, pattern.slice(0, 40)).toBe(400);
        expect(r.body.code).toBe('FP_ERR_BAD_SELECTOR');
        expect(r.body.message).toMatch(why);
      }
      const many = '{' + Array.from({ length: 33 }, (_, k) => `l${k}="x"`).join(',') + '}';
      const r = await getJson<{ message: string }>(s.url, '/api/v1/labels', { query: many });
      expect(r.status).toBe(400);
      expect(r.body.message).toMatch(/more than 32 matchers/);
    } finally {
      await s.stop();
    }
  });
});
