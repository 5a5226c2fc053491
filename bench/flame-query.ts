// The server side of a flame-graph query, phase by phase, in one process:
// select the series, merge their stack values, resolve the stacks' symbols,
// build the flame tree, encode the answer as JSON. The same functions the
// /api/v1/flamegraph route calls (server/routes/query.ts), over a store that
// bench/fleet-ingest.ts kept (`--keep-store DIR`), so that a change to one
// phase can be measured without HTTP, the ingest or the client around it.
// CPU time (process.cpuUsage) beside wall time: the machine is shared.
//
//   node dist/bench/fleet-ingest.js --minutes 10 --keep-store /var/tmp/fq-store
//   node dist/bench/flame-query.js --store sqlite:/var/tmp/fq-store
//
// The digest of each answer is printed so that two builds can be checked to
// give the same trees.
import { createHash } from 'node:crypto';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { openStore } from '../server/store/open.js';
import { SymbolCache, stackColumns } from '../server/store/symbols.js';
import { chooseSampleType, mergeStacks, selectSeries } from '../server/query/merge.js';
import { buildFlameTree } from '../server/query/flamegraph.js';
import { parseSelector } from '../server/selector.js';
import type { FlameGraphResponse } from '../src/profile/api-types.js';

const { values: args } = parseArgs({
  options: {
    store: { type: 'string' },
    runs: { type: 'string', default: '7' },
    // Default: the hour that ends a minute after the newest profile, as fleet-ingest asks it.
    from: { type: 'string' },
    to: { type: 'string' },
  },
});
if (!args.store) throw new Error('--store sqlite:DIR (a store kept by fleet-ingest --keep-store) is required');
const RUNS = Math.max(2, Number(args.runs));
const PHASES = ['select', 'merge', 'symbols', 'tree', 'json'] as const;
type Phase = (typeof PHASES)[number];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main() {
  const store = await openStore(args.store!);
  let newestMs = 0;
  for (const s of store.allSeries()) newestMs = Math.max(newestMs, s.lastMs);
  const toMs = args.to !== undefined ? Number(args.to) : newestMs + 60_000;
  const fromMs = args.from !== undefined ? Number(args.from) : toMs - 3_660_000;
  // One cache for every run, as the server keeps one: the first run fetches the symbols, the others find them.
  const symbols = new SymbolCache(store);
  console.log(`flame-query: ${args.store}, [${fromMs}, ${toMs}), ${RUNS} runs per query; load ${loadavg()[0]!.toFixed(1)}`);
  for (const [name, query] of [
    ['all nodes', '{}'],
    ['one node', '{node="agent-007"}'],
    ['one service', '{service="svc3"}'],
  ] as const) {
    const cpu: Record<Phase, number[]> = { select: [], merge: [], symbols: [], tree: [], json: [] };
    const wall: Record<Phase, number[]> = { select: [], merge: [], symbols: [], tree: [], json: [] };
    let digest = '';
    let nodes = 0;
    let read = '';
    for (let run = 0; run < RUNS; run++) {
      let c0 = process.cpuUsage();
      let w0 = performance.now();
      const mark = (phase: Phase) => {
        const c = process.cpuUsage(c0);
        cpu[phase].push((c.user + c.system) / 1000);
        wall[phase].push(performance.now() - w0);
        c0 = process.cpuUsage();
        w0 = performance.now();
      };
      const range = { fromMs, toMs };
      const sel = selectSeries(store, parseSelector(query), range);
      const st = chooseSampleType(store, sel.series, undefined);
      mark('select');
      const merged = await mergeStacks(store, sel, range, [st!]);
      mark('merge');
      const acc = merged.acc;
      read = `${merged.pairs} pairs of ${merged.profiles} profiles read, ${acc.length} stacks`;
      const sym = await symbols.resolve(acc.ids.subarray(0, acc.length));
      mark('symbols');
      const built = buildFlameTree(sym, stackColumns([acc]));
      mark('tree');
      const answer: FlameGraphResponse = { version: 1, sampleType: st!, total: built.tree.total[0]!, groupBy: [], functions: built.functions, tree: built.tree };
      const json = JSON.stringify(answer);
      mark('json');
      digest = createHash('sha256').update(json).digest('hex').slice(0, 16);
      nodes = built.tree.func.length;
    }
    // Run 0 fetched the symbols (cold cache); the rest are warm.
    const warm = (xs: number[]) => median(xs.slice(1)).toFixed(0);
    const total = (r: Record<Phase, number[]>, i: number) => PHASES.reduce((a, p) => a + r[p][i]!, 0);
    const warmTotals = Array.from({ length: RUNS - 1 }, (_, i) => total(cpu, i + 1));
    console.log(
      `${name}: ${read}, ${nodes} nodes, answer ${digest}; CPU ms, warm median (cold first run): ` +
        PHASES.map((p) => `${p} ${warm(cpu[p])} (${cpu[p][0]!.toFixed(0)})`).join(', ') +
        `; total ${median(warmTotals).toFixed(0)} (${total(cpu, 0).toFixed(0)}); wall total ${median(Array.from({ length: RUNS - 1 }, (_, i) => total(wall, i + 1))).toFixed(0)}`,
    );
  }
  console.log(`load ${loadavg()[0]!.toFixed(1)} at the end`);
  await store.close();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
