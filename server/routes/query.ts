// Read-only query API. Every handler: parse selector + time range, pick the
// series in memory, stream matching profile rows from SQLite, merge, render.
import type { FastifyInstance, FastifyReply } from 'fastify';
import type {
  DiffFlameGraphResponse,
  FlameGraphResponse,
  LabelNamesResponse,
  LabelSummaryResponse,
  LabelValuesResponse,
  SampleTypeJson,
  TimelineResponse,
  TopResponse,
} from '../../src/profile/api-types.js';
import type { ProfileStore, SampleTypeDesc, Series } from '../store/store.js';
import { SymbolCache, stackColumns } from '../store/symbols.js';
import type { ServerMetrics } from '../metrics.js';
import { bearerAuth } from '../auth.js';
import { parseSelector } from '../selector.js';
import { parseTimeRange, type TimeRange } from '../time-range.js';
import { chooseSampleType, mergeStacks, selectSeries, type SeriesSelection } from '../query/merge.js';
import { buildFlameTree, topTable } from '../query/flamegraph.js';
import { encodePprof } from '../query/pprof-out.js';
import { groupedDiffTree, groupedFlameTree, groupedTopTable, parseGroupBy, partitionSeries, seriesTotals } from '../query/group-by.js';
import { buildTimeline } from '../query/timeline.js';
import { labelSummary } from '../query/label-summary.js';
import { decodeSamples } from '../store/sample-codec.js';
import type { StackAccumulator } from '../store/accumulator.js';
import { errBadParam, errNotFound } from '../errors.js';
import { intParam, param, type Query } from '../params.js';

export interface QueryRouteOptions {
  store: ProfileStore;
  metrics: ServerMetrics;
  queryToken: string | undefined;
}

const NO_TYPE: SampleTypeJson = { type: '', unit: '' };
const MAX_TIMELINE_STEPS = 10_000;

function selection(store: ProfileStore, q: Query, prefix = '', allTimeByDefault = false) {
  const name = (n: string) => (prefix ? prefix + n[0]!.toUpperCase() + n.slice(1) : n);
  const sel = parseSelector(param(q, name('query')));
  const from = param(q, name('from'));
  const to = param(q, name('to'));
  const range: TimeRange =
    allTimeByDefault && from === undefined && to === undefined
      ? { fromMs: -Number.MAX_SAFE_INTEGER, toMs: Number.MAX_SAFE_INTEGER }
      : parseTimeRange(from, to, Date.now(), [name('from'), name('to')]);
  return { sel: selectSeries(store, sel, range), range };
}

function sendPprof(reply: FastifyReply, body: Buffer, filename: string) {
  return reply
    .header('content-type', 'application/octet-stream')
    .header('content-disposition', `attachment; filename="${filename}"`)
    .send(body);
}

export async function queryRoutes(app: FastifyInstance, o: QueryRouteOptions): Promise<void> {
  const { store } = o;
  const symbols = new SymbolCache(store);
  app.addHook('onRequest', bearerAuth(o.queryToken, 'query'));
  // Servers sharing a database: see the series other servers created before answering.
  app.addHook('preHandler', async () => store.refresh());
  app.addHook('onResponse', async (req, reply) => {
    o.metrics.queryDuration.record(reply.elapsedTime / 1000, { route: req.routeOptions.url ?? 'unknown', status: String(reply.statusCode) });
  });

  const labelSeries = (q: Query): Series[] => selection(store, q, '', true).sel.series;

  app.get('/api/v1/labels', async (req): Promise<LabelNamesResponse> => {
    const names = new Set<string>();
    for (const s of labelSeries(req.query as Query)) for (const k of Object.keys(s.labels)) names.add(k);
    return { names: [...names].sort() };
  });

  app.get('/api/v1/labels/summary', async (req): Promise<LabelSummaryResponse> => {
    const q = req.query as Query;
    const limit = intParam(q, 'limit', 10, 1, 1000);
    const { sel, range } = selection(store, q);
    const st = chooseSampleType(store, sel.series, param(q, 'sampleType'));
    return labelSummary(sel, await seriesTotals(store, sel, range, st), st, limit);
  });

  /** Groups of a grouped query, the largest kept apart when there are too many. */
  async function groupsOf(sel: SeriesSelection, range: TimeRange, st: SampleTypeDesc | undefined, groupBy: string[]) {
    const totals = groupBy.length > 0 ? await seriesTotals(store, sel, range, st) : new Map<number, number>();
    return partitionSeries(sel.series, groupBy, (s) => totals.get(s.id) ?? 0);
  }

  app.get<{ Params: { name: string } }>('/api/v1/labels/:name/values', async (req): Promise<LabelValuesResponse> => {
    const name = req.params.name;
    const values = new Set<string>();
    for (const s of labelSeries(req.query as Query)) {
      const v = s.labels[name];
      if (v !== undefined) values.add(v);
    }
    return { name, values: [...values].sort() };
  });

  /** Merge of one sample type over a selection. */
  async function mergeOne(sel: SeriesSelection, range: TimeRange, sampleType: SampleTypeDesc | undefined) {
    const m = await mergeStacks(store, sel, range, [sampleType ?? NO_TYPE]);
    return m.acc;
  }

  /** Flame tree of merged accumulators (the first is the main column); symbols are fetched for exactly their stacks. */
  async function flame(...accs: StackAccumulator[]) {
    const ids: number[] = [];
    for (const a of accs) for (let i = 0; i < a.length; i++) ids.push(a.ids[i]!);
    const sym = await symbols.resolve(ids);
    return buildFlameTree(sym, stackColumns(accs));
  }

  app.get('/api/v1/flamegraph', async (req): Promise<FlameGraphResponse> => {
    const q = req.query as Query;
    const { sel, range } = selection(store, q);
    const groupBy = parseGroupBy(param(q, 'groupBy'));
    const st = chooseSampleType(store, sel.series, param(q, 'sampleType'));
    if (groupBy.length > 0) {
      const g = await groupedFlameTree(store, flame, await groupsOf(sel, range, st, groupBy), range, st, groupBy);
      return { version: 1, sampleType: st ?? NO_TYPE, total: g.tree.total[0]!, groupBy, functions: g.functions, tree: g.tree };
    }
    const built = await flame(await mergeOne(sel, range, st));
    return { version: 1, sampleType: st ?? NO_TYPE, total: built.tree.total[0]!, groupBy, functions: built.functions, tree: built.tree };
  });

  app.get('/api/v1/top', async (req): Promise<TopResponse> => {
    const q = req.query as Query;
    const limit = intParam(q, 'limit', 100, 1, 1_000_000);
    const { sel, range } = selection(store, q);
    const groupBy = parseGroupBy(param(q, 'groupBy'));
    const st = chooseSampleType(store, sel.series, param(q, 'sampleType'));
    if (groupBy.length > 0) {
      const g = await groupedFlameTree(store, flame, await groupsOf(sel, range, st, groupBy), range, st, groupBy);
      return { sampleType: st ?? NO_TYPE, total: g.tree.total[0]!, groupBy, rows: groupedTopTable(g.functions, g.tree, groupBy, limit) };
    }
    const built = await flame(await mergeOne(sel, range, st));
    return { sampleType: st ?? NO_TYPE, total: built.tree.total[0]!, groupBy, rows: topTable(built.functions, built.tree, limit) };
  });

  app.get('/api/v1/diff', async (req): Promise<DiffFlameGraphResponse> => {
    const q = req.query as Query;
    const left = selection(store, q, 'left');
    const right = selection(store, q, 'right');
    const groupBy = parseGroupBy(param(q, 'groupBy'));
    const st = chooseSampleType(store, [...left.sel.series, ...right.sel.series], param(q, 'sampleType'));
    if (groupBy.length > 0) {
      const g = await groupedDiffTree(
        store,
        flame,
        { groups: await groupsOf(left.sel, left.range, st, groupBy), range: left.range },
        { groups: await groupsOf(right.sel, right.range, st, groupBy), range: right.range },
        st,
        groupBy,
      );
      return {
        version: 1,
        sampleType: st ?? NO_TYPE,
        baselineTotal: g.baselineTotal[0]!,
        total: g.tree.total[0]!,
        groupBy,
        functions: g.functions,
        tree: { ...g.tree, baselineSelf: g.baselineSelf, baselineTotal: g.baselineTotal },
      };
    }
    const [l, r] = await Promise.all([mergeOne(left.sel, left.range, st), mergeOne(right.sel, right.range, st)]);
    const built = await flame(r, l);
    return {
      version: 1,
      sampleType: st ?? NO_TYPE,
      baselineTotal: built.extraTotal[0]![0]!,
      total: built.tree.total[0]!,
      groupBy,
      functions: built.functions,
      tree: { ...built.tree, baselineSelf: built.extraSelf[0]!, baselineTotal: built.extraTotal[0]! },
    };
  });

  app.get('/api/v1/timeline', async (req): Promise<TimelineResponse> => {
    const q = req.query as Query;
    const groupBy = parseGroupBy(param(q, 'groupBy'));
    const { sel, range } = selection(store, q);
    const span = range.toMs - range.fromMs;
    const autoStep = Math.max(1000, Math.ceil(span / 100 / 1000) * 1000);
    const stepMs = intParam(q, 'stepMs', autoStep, 1, Number.MAX_SAFE_INTEGER);
    const steps = Math.ceil(span / stepMs);
    if (steps > MAX_TIMELINE_STEPS) throw errBadParam(`stepMs=${stepMs} gives ${steps} steps over the range (max ${MAX_TIMELINE_STEPS})`);
    const st = chooseSampleType(store, sel.series, param(q, 'sampleType'));
    const groups = await groupsOf(sel, range, st, groupBy);
    return buildTimeline(store, sel, { range, stepMs, sampleType: st, groups, groupBy });
  });

  app.get('/api/v1/profile', async (req, reply) => {
    const q = req.query as Query;
    const { sel, range } = selection(store, q);
    const requested = param(q, 'sampleType');
    // Without sampleType, every sample type of the selection becomes a column.
    let types: SampleTypeDesc[] = [];
    if (requested) types = [chooseSampleType(store, sel.series, requested)!];
    else {
      for (const s of sel.series)
        for (const tid of s.typeIds)
          for (const t of store.profileType(tid)?.sampleTypes ?? []) if (!types.some((x) => x.type === t.type && x.unit === t.unit)) types.push(t);
    }
    // Per series, so every sample carries its series' labels (pprof -tagfocus / -tagroot).
    const m = await mergeStacks(store, sel, range, types, { bySeries: true });
    const groups = [...m.bySeries!].map(([seriesId, acc]) => ({
      labels: store.seriesById(seriesId)?.labels ?? {},
      stackIds: acc.ids.subarray(0, acc.length),
      values: acc.values.subarray(0, acc.length * acc.cols),
    }));
    const sym = await symbols.resolve(groups.flatMap((g) => Array.from(g.stackIds)));
    const pt = sel.series.flatMap((s) => [...s.typeIds]).map((id) => store.profileType(id)).find((p) => p?.periodType);
    const body = await encodePprof(sym, {
      sampleTypes: types,
      groups,
      timeNanos: range.fromMs * 1e6,
      durationNanos: (range.toMs - range.fromMs) * 1e6,
      periodType: pt?.periodType,
      period: m.periods.length === 1 ? m.periods[0]! : 0,
      defaultSampleType: pt?.defaultSampleType,
    });
    return sendPprof(reply, body, 'profile.pb.gz');
  });

  app.get('/api/v1/profiles', async (req) => {
    const q = req.query as Query;
    const limit = intParam(q, 'limit', 1000, 1, 100_000);
    const { sel, range } = selection(store, q);
    const profiles: { id: number; labels: Record<string, string>; timeMs: number; durationNs: number; sampleTypes: SampleTypeJson[]; stacks: number }[] = [];
    await store.eachProfile(
      sel.ids,
      range.fromMs,
      range.toMs,
      ['id', 'series_id', 'time_ms', 'duration_ns', 'profile_type_id', 'n_stacks'],
      (r) => {
        profiles.push({
          id: r.id,
          labels: store.seriesById(r.series_id)?.labels ?? {},
          timeMs: r.time_ms,
          durationNs: r.duration_ns,
          sampleTypes: store.profileType(r.profile_type_id)?.sampleTypes ?? [],
          stacks: r.n_stacks,
        });
      },
      limit,
    );
    return { profiles };
  });

  app.get<{ Params: { id: string } }>('/api/v1/profiles/:id', async (req, reply) => {
    const id = Number(req.params.id);
    if (!Number.isSafeInteger(id) || id <= 0) throw errBadParam(`profile id ${JSON.stringify(req.params.id)} is not a positive integer`);
    const row = await store.getProfile(id);
    if (!row) throw errNotFound(`no stored profile with id ${id}`);
    const pt = store.profileType(row.profile_type_id)!;
    const { stackIds, values } = decodeSamples(row.samples, row.scales.split(',').map(Number));
    const sym = await symbols.resolve(stackIds);
    const body = await encodePprof(sym, {
      sampleTypes: pt.sampleTypes,
      groups: [{ labels: store.seriesById(row.series_id)?.labels ?? {}, stackIds, values }],
      timeNanos: row.time_ms * 1e6,
      durationNanos: row.duration_ns,
      periodType: pt.periodType,
      period: row.period,
      defaultSampleType: pt.defaultSampleType,
    });
    return sendPprof(reply, body, `profile-${id}.pb.gz`);
  });
}
