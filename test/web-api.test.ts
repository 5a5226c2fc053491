// The query API the viewer reads, against the real server and SQLite: group-by
// on flame graph, top and timeline, the label summary, a timeline that spreads
// each profile over its duration, and documented fields present on empty
// selections.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DiffFlameGraphResponse, FlameGraphResponse, LabelSummaryResponse, TimelineResponse, TopResponse } from '../src/profile/api-types.js';
import { buildProfile, flameSelfByPath, getJson, ingest, startTestServer } from './server-helpers.js';

type Server = Awaited<ReturnType<typeof startTestServer>>;

// Three series; cpu values are the second sample type.
const T0 = Math.floor(Date.now() / 60_000) * 60_000 - 30 * 60_000;
const SERIES: { labels: Record<string, string>; stacks: [string[], number][] }[] = [
  { labels: { node: 'a', comm: 'gzip', pod: 'p1' }, stacks: [[['main', 'deflate'], 300]] },
  { labels: { node: 'b', comm: 'gzip', pod: 'p2' }, stacks: [[['main', 'deflate'], 100]] },
  { labels: { node: 'a', comm: 'sha256sum', pod: 'p1' }, stacks: [[['main', 'sha256_block'], 600], [['main', 'read'], 200]] },
];

describe('query API for the viewer', () => {
  let server: Server;
  const range = { from: String(T0 - 60_000), to: String(T0 + 120_000) };

  beforeAll(async () => {
    server = await startTestServer();
    for (const s of SERIES) {
      const body = buildProfile({ samples: s.stacks.map(([stack, v]) => ({ stack, values: [v, v * 1_000_000] })), timeMs: T0 });
      const r = await ingest(server.url, body, s.labels);
      expect(r.status, JSON.stringify(r.json)).toBe(200);
    }
  });
  afterAll(async () => server?.stop());

  it('groups the flame graph by comm: one root level per value, each with its share', async () => {
    const { status, body } = await getJson<FlameGraphResponse>(server.url, '/api/v1/flamegraph', { ...range, groupBy: 'comm' });
    expect(status).toBe(200);
    expect(body.groupBy).toEqual(['comm']);
    const paths = flameSelfByPath(body);
    expect(Object.fromEntries(paths)).toEqual({
      'comm=gzip;main;deflate': 400e6,
      'comm=sha256sum;main;sha256_block': 600e6,
      'comm=sha256sum;main;read': 200e6,
    });
    // Root's children are the label nodes, sorted, with kind 'label' and their totals.
    const kids = body.tree.parent.map((p, i) => [p, i] as const).filter(([p]) => p === 0).map(([, i]) => i);
    expect(kids.map((i) => body.functions.name[body.tree.func[i]!])).toEqual(['comm=gzip', 'comm=sha256sum']);
    expect(kids.map((i) => body.functions.kind[body.tree.func[i]!])).toEqual(['label', 'label']);
    expect(kids.map((i) => body.tree.total[i])).toEqual([400e6, 800e6]);
    expect(body.total).toBe(1200e6);
  });

  it('groups by two labels, outermost first, and within a selector', async () => {
    const { body } = await getJson<FlameGraphResponse>(server.url, '/api/v1/flamegraph', { ...range, query: '{comm="gzip"}', groupBy: 'node,pod' });
    expect(Object.fromEntries(flameSelfByPath(body))).toEqual({ 'node=a;pod=p1;main;deflate': 300e6, 'node=b;pod=p2;main;deflate': 100e6 });
  });

  it('top rows carry the group labels', async () => {
    const { body } = await getJson<TopResponse>(server.url, '/api/v1/top', { ...range, groupBy: 'node' });
    expect(body.groupBy).toEqual(['node']);
    const deflate = body.rows.filter((r) => r.name === 'deflate').map((r) => [r.labels, r.self]);
    expect(deflate).toEqual([
      [{ node: 'a' }, 300e6],
      [{ node: 'b' }, 100e6],
    ]);
    const main = body.rows.filter((r) => r.name === 'main').map((r) => [r.labels.node, r.total]);
    expect(main).toEqual(expect.arrayContaining([['a', 1100e6], ['b', 100e6]]));
    const plain = await getJson<TopResponse>(server.url, '/api/v1/top', range);
    expect(plain.body.groupBy).toEqual([]);
    expect(plain.body.rows.find((r) => r.name === 'deflate')).toMatchObject({ self: 400e6, labels: {} });
  });

  it('groups the diff: a label level per value on either side, baseline and selection per node', async () => {
    const { status, body } = await getJson<DiffFlameGraphResponse>(server.url, '/api/v1/diff', {
      leftQuery: '{comm="gzip"}',
      leftFrom: range.from,
      leftTo: range.to,
      rightQuery: '',
      rightFrom: range.from,
      rightTo: range.to,
      groupBy: 'comm',
    });
    expect(status).toBe(200);
    expect(body.groupBy).toEqual(['comm']);
    const at = (name: string): number => body.tree.func.findIndex((f, i) => i > 0 && body.functions.name[f] === name && body.tree.parent[i] === 0);
    const gz = at('comm=gzip');
    const sha = at('comm=sha256sum');
    expect([body.tree.total[gz], body.tree.baselineTotal[gz]]).toEqual([400e6, 400e6]);
    expect([body.tree.total[sha], body.tree.baselineTotal[sha]]).toEqual([800e6, 0]);
    expect([body.total, body.baselineTotal]).toEqual([1200e6, 400e6]);
    // Every node's totals are its self plus its children's, on both sides.
    for (let i = 0; i < body.tree.func.length; i++) {
      const kids = body.tree.parent.map((p, j) => (p === i ? j : -1)).filter((j) => j >= 0);
      expect(body.tree.total[i]).toBe(body.tree.self[i]! + kids.reduce((s, j) => s + body.tree.total[j]!, 0));
      expect(body.tree.baselineTotal[i]).toBe(body.tree.baselineSelf[i]! + kids.reduce((s, j) => s + body.tree.baselineTotal[j]!, 0));
    }
  });

  it('label summary ranks values by CPU', async () => {
    const { body } = await getJson<LabelSummaryResponse>(server.url, '/api/v1/labels/summary', range);
    expect(body.total).toBe(1200e6);
    const comm = body.labels.find((l) => l.name === 'comm')!;
    expect(comm.values).toEqual([
      { value: 'sha256sum', total: 800e6 },
      { value: 'gzip', total: 400e6 },
    ]);
    expect(body.labels.map((l) => l.name)).toEqual(['comm', 'node', 'pod']);
    expect(body.labels.find((l) => l.name === 'node')!.values[0]).toEqual({ value: 'a', total: 1100e6 });
  });

  it('timeline spreads each profile over its 10 s and splits by group', async () => {
    const { body } = await getJson<TimelineResponse>(server.url, '/api/v1/timeline', { from: String(T0 - 5000), to: String(T0 + 15_000), stepMs: '1000', groupBy: 'comm' });
    expect(body.values).toHaveLength(20);
    // Nothing before the profiles start, 1/10 of the total in each of their ten seconds, nothing after.
    expect(body.values.slice(0, 5)).toEqual([0, 0, 0, 0, 0]);
    for (const v of body.values.slice(5, 15)) expect(v).toBeCloseTo(120e6, 3);
    expect(body.values.slice(15)).toEqual([0, 0, 0, 0, 0]);
    expect(body.series.map((s) => [s.labels, s.total])).toEqual([
      [{ comm: 'sha256sum' }, 800e6],
      [{ comm: 'gzip' }, 400e6],
    ]);
    expect(body.series[0]!.values[7]).toBeCloseTo(80e6, 3);
  });

  it('an empty selection keeps every documented field', async () => {
    const q = { ...range, query: '{comm="nothing-here"}' };
    const fg = await getJson<FlameGraphResponse>(server.url, '/api/v1/flamegraph', q);
    expect(fg.status).toBe(200);
    expect(fg.body).toMatchObject({ version: 1, total: 0, groupBy: [], tree: { func: [-1], parent: [-1], self: [0], total: [0] } });
    const grouped = await getJson<FlameGraphResponse>(server.url, '/api/v1/flamegraph', { ...q, groupBy: 'comm' });
    expect(grouped.body).toMatchObject({ total: 0, groupBy: ['comm'], tree: { func: [-1] } });
    const top = await getJson<TopResponse>(server.url, '/api/v1/top', q);
    expect(top.body).toMatchObject({ total: 0, rows: [], groupBy: [] });
    const tl = await getJson<TimelineResponse>(server.url, '/api/v1/timeline', q);
    expect(tl.body.series).toHaveLength(1);
    expect(tl.body.values.every((v) => v === 0)).toBe(true);
    const sum = await getJson<LabelSummaryResponse>(server.url, '/api/v1/labels/summary', q);
    expect(sum.body).toMatchObject({ total: 0, labels: [] });
    const diff = await getJson<DiffFlameGraphResponse>(server.url, '/api/v1/diff', {
      leftQuery: q.query,
      leftFrom: q.from,
      leftTo: q.to,
      rightQuery: q.query,
      rightFrom: q.from,
      rightTo: q.to,
    });
    expect(diff.status).toBe(200);
    expect(diff.body).toMatchObject({ total: 0, baselineTotal: 0, tree: { func: [-1], baselineTotal: [0], total: [0] } });
  });

  it('keeps the 99 largest of more than 100 groups and merges the rest into (other)', async () => {
    const t = T0 - 3_600_000;
    for (let i = 0; i <= 100; i++) {
      const body = buildProfile({ samples: [{ stack: ['main', 'work'], values: [1, (i + 1) * 1e6] }], timeMs: t });
      expect((await ingest(server.url, body, { job: `j${String(i).padStart(3, '0')}` })).status).toBe(200);
    }
    const { body } = await getJson<FlameGraphResponse>(server.url, '/api/v1/flamegraph', { from: String(t - 1000), to: String(t + 1000), groupBy: 'job' });
    const kids = body.tree.parent.map((p, i) => [p, i] as const).filter(([p]) => p === 0).map(([, i]) => i);
    const names = kids.map((i) => body.functions.name[body.tree.func[i]!]!);
    expect(names).toHaveLength(100);
    expect(names).toContain('job=(other)');
    expect(names).not.toContain('job=j000');
    expect(names).not.toContain('job=j001');
    expect(names).toContain('job=j002');
    expect(body.tree.total[kids[names.indexOf('job=(other)')]!]).toBe(3e6); // j000 + j001
    expect(body.total).toBe((101 * 102 * 1e6) / 2);
  });

  it('rejects a bad groupBy with a clear error', async () => {
    const r = await getJson<{ code: string; message: string }>(server.url, '/api/v1/flamegraph', { ...range, groupBy: 'comm,no-such label' });
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('FP_ERR_BAD_PARAMETER');
    expect(r.body.message).toContain('"no-such label"');
  });
});
