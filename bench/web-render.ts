// Renderer benchmark: the viewer in headless chromium with a generated
// 100,000-node profile. Measures time to first draw and the time per redraw
// while zooming (median / p95). Targets: first draw < 300 ms, redraw < 16 ms.
//
//   npx tsc --outDir dist --rootDir . --module nodenext --moduleResolution nodenext \
//     --target es2022 --skipLibCheck --types node bench/web-render.ts && node dist/bench/web-render.js
//
// Env: BENCH_NODES (default 100000), BENCH_STEPS (default 120), BENCH_WIDTH (default 1600),
//      BENCH_SHAPE=random (default: long-tailed random stacks, like real profiles) or
//      balanced (a complete binary tree with equal weights: the most frames >= 1 px per row),
//      BENCH_GROUPS=N (default 0): the same node count split over N processes grouped by comm,
//      as /api/v1/flamegraph?groupBy=comm sends it (one `comm=...` label level under the root).
import http from 'node:http';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join, resolve } from 'node:path';
import { build } from 'vite';
import { chromium } from 'playwright-core';
import { syntheticProfile } from '../web/src/profile-logic/synthetic.js';
import { profileFromStacks } from '../web/src/profile-logic/tree.js';

const NODES = Number(process.env.BENCH_NODES ?? 100_000);
const STEPS = Number(process.env.BENCH_STEPS ?? 120);
const WIDTH = Number(process.env.BENCH_WIDTH ?? 1600);
const SHAPE = process.env.BENCH_SHAPE ?? 'random';
const GROUPS = Number(process.env.BENCH_GROUPS ?? 0);

/** N synthetic profiles of nodes/N nodes each, spliced under comm=proc-i label nodes (the grouped wire shape). */
function groupedProfile(nodes: number, groups: number): ReturnType<typeof syntheticProfile> {
  const out = syntheticProfile(1, 1);
  out.groupBy = ['comm'];
  out.functions = { name: [], binary: [], kind: [] };
  out.tree = { func: [-1], parent: [-1], self: [0], total: [0] };
  out.total = 0;
  for (let g = 0; g < groups; g++) {
    const p = syntheticProfile(Math.max(2, Math.floor(nodes / groups) - 1), 42 + g);
    const fnBase = out.functions.name.length;
    out.functions.name.push(...p.functions.name, `comm=proc-${String(g).padStart(3, '0')}`);
    out.functions.binary.push(...p.functions.binary, '');
    out.functions.kind.push(...p.functions.kind, 'label');
    const label = out.tree.func.length;
    out.tree.func.push(fnBase + p.functions.name.length);
    out.tree.parent.push(0);
    out.tree.self.push(0);
    out.tree.total.push(p.total);
    const base = label; // group node j (j >= 1) becomes label + j
    for (let j = 1; j < p.tree.func.length; j++) {
      out.tree.func.push(fnBase + p.tree.func[j]!);
      out.tree.parent.push(p.tree.parent[j] === 0 ? label : base + p.tree.parent[j]!);
      out.tree.self.push(p.tree.self[j]!);
      out.tree.total.push(p.tree.total[j]!);
    }
    out.total += p.total;
  }
  out.tree.total[0] = out.total;
  return out;
}

/** Complete binary tree with about `nodes` nodes, one stack per leaf, equal weights. */
function balancedProfile(nodes: number): ReturnType<typeof syntheticProfile> {
  const depth = Math.max(1, Math.round(Math.log2(nodes + 1)) - 1);
  const stacks: { frames: string[]; value: number }[] = [];
  for (let leaf = 0; leaf < 2 ** depth; leaf++) {
    const frames: string[] = [];
    for (let d = 1; d <= depth; d++) frames.push(`pkg${d % 7}::fn_d${d}_${leaf >> (depth - d)}`);
    stacks.push({ frames, value: 1000 });
  }
  return profileFromStacks(stacks, (n) => ({ binary: `/usr/lib/lib${n.slice(3, 4)}.so`, kind: 'native' }));
}
const ROOT = resolve(process.cwd());

function stats(xs: number[]): { median: number; p95: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number): number => s[Math.min(s.length - 1, Math.floor(p * (s.length - 1) + 0.5))]!;
  return { median: q(0.5), p95: q(0.95), max: s[s.length - 1]! };
}
const r1 = (x: number): number => Math.round(x * 10) / 10;

async function main(): Promise<void> {
  const webDir = mkdtempSync(join(tmpdir(), 'fleetprof-bench-web-'));
  const userData = mkdtempSync(join(tmpdir(), 'fleetprof-bench-chromium-'));
  await build({ root: join(ROOT, 'web'), logLevel: 'warn', build: { outDir: webDir, emptyOutDir: true } });
  const profile = GROUPS > 0 ? groupedProfile(NODES, GROUPS) : SHAPE === 'balanced' ? balancedProfile(NODES) : syntheticProfile(NODES, 42);
  const shape = GROUPS > 0 ? `random, grouped by comm into ${GROUPS} processes` : SHAPE;
  const body = JSON.stringify(profile);
  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const json = (b: string): void => {
      res.setHeader('content-type', 'application/json');
      res.end(b);
    };
    if (u.pathname === '/api/v1/flamegraph') return json(body);
    if (u.pathname === '/api/v1/timeline') return json(JSON.stringify({ sampleType: profile.sampleType, stepMs: 60000, timestampsMs: [], values: [], groupBy: profile.groupBy, series: [] }));
    if (u.pathname.startsWith('/api/')) {
      res.statusCode = 404;
      return json('{"statusCode":404,"code":"FP_ERR_NOT_FOUND","error":"Not Found","message":"bench"}');
    }
    const f = join(webDir, u.pathname === '/' ? 'index.html' : u.pathname);
    if (!f.startsWith(webDir) || !existsSync(f)) {
      res.statusCode = 404;
      return res.end();
    }
    res.setHeader('content-type', { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css' }[extname(f)] ?? 'application/octet-stream');
    res.end(readFileSync(f));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const ctx = await chromium.launchPersistentContext(userData, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: WIDTH, height: 1000 },
  });
  try {
    const page = ctx.pages()[0] ?? (await ctx.newPage());
    const firstDraw: number[] = [];
    const firstPaint: number[] = [];
    const loadToDrawn: number[] = [];
    // Several loads for the first-draw numbers.
    for (let run = 0; run < 5; run++) {
      await page.goto(`http://127.0.0.1:${port}/${GROUPS > 0 ? '?groupBy=comm' : ''}`);
      await page.waitForFunction("document.body.dataset.state === 'ready'", null, { timeout: 60_000 });
      const m = await page.evaluate(() => {
        const data = performance.getEntriesByName('fp:data')[0]!.startTime;
        const drawn = performance.getEntriesByName('fp:drawn')[0]!.startTime;
        const hook = (globalThis as unknown as { __fleetprof: { lastDrawMs(): number } }).__fleetprof;
        return { dataToDrawn: drawn - data, paint: hook.lastDrawMs(), navToDrawn: drawn };
      });
      firstDraw.push(m.dataToDrawn);
      firstPaint.push(m.paint);
      loadToDrawn.push(m.navToDrawn);
    }
    const frames = await page.evaluate(() => (globalThis as unknown as { __fleetprof: { frames(): unknown[] } }).__fleetprof.frames().length);
    // Zoom in towards a point step by step, then back out; each step is one full redraw.
    const zoom = await page.evaluate((steps) => {
      const hook = (globalThis as unknown as { __fleetprof: { zoom(f: number, at: number): number; draw(): number } }).__fleetprof;
      // Typed by hand: the root tsconfig (which compiles benches) has no DOM lib.
      interface BenchCanvas {
        dataset: Record<string, string | undefined>;
        getContext(kind: '2d'): { getImageData(x: number, y: number, w: number, h: number): unknown } | null;
      }
      const doc = (globalThis as unknown as { document: { querySelector(sel: string): BenchCanvas | null } }).document;
      const canvas = doc.querySelector('canvas[data-graph="main"]')!;
      const ctx2d = canvas.getContext('2d')!;
      const sync: number[] = [];
      const flushed: number[] = [];
      let maxDrawn = 0;
      for (let i = 0; i < steps; i++) {
        const factor = i < steps / 2 ? 0.9 : 1 / 0.9;
        const t0 = performance.now();
        sync.push(hook.zoom(factor, 0.37));
        ctx2d.getImageData(0, 0, 1, 1); // force rasterization of the queued draw calls
        flushed.push(performance.now() - t0);
        maxDrawn = Math.max(maxDrawn, Number(canvas.dataset.frames));
      }
      return { sync, flushed, maxDrawn };
    }, STEPS);
    const fd = stats(firstDraw);
    const fp = stats(firstPaint);
    const nav = stats(loadToDrawn);
    const zs = stats(zoom.sync);
    const zf = stats(zoom.flushed);
    console.log(`fleetprof web render bench (${shape}): ${profile.tree.func.length} nodes, ${profile.functions.name.length} functions, canvas ${WIDTH}px wide, ${frames} frames drawn unzoomed, up to ${zoom.maxDrawn} while zooming`);
    console.log(`first draw (JSON parsed -> tree built, top rows computed, laid out, painted), 5 loads: median ${r1(fd.median)} ms, p95 ${r1(fd.p95)} ms  [target < 300 ms]`);
    console.log(`  of which canvas paint: median ${r1(fp.median)} ms; navigation start -> drawn: median ${r1(nav.median)} ms`);
    console.log(`redraw while zooming (${STEPS} steps, layout + paint): median ${r1(zs.median)} ms, p95 ${r1(zs.p95)} ms, max ${r1(zs.max)} ms  [target < 16 ms]`);
    console.log(`  incl. forced rasterization (getImageData): median ${r1(zf.median)} ms, p95 ${r1(zf.p95)} ms, max ${r1(zf.max)} ms`);
  } finally {
    await ctx.close();
    server.close();
    rmSync(webDir, { recursive: true, force: true });
    rmSync(userData, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
