// The viewer as a fleet uses it, in headless chromium against the REAL server:
// - real processes recorded by the real agent (BPF) while this test runs:
//   fpspin-a and fpspin-b (one CPU-bound C loop each, run until their own CPU
//   clock reads 1 s and 2 s), three copies of a STRIPPED build (fpstrip), and
//   node (started through a symlink named fpnode) running hot JS without
//   --perf-basic-prof;
// - seeded profiles of known shape for what must be exact: steady 0.5 and
//   1.5 cores for svc=api and svc=db over the last 40 minutes, one profile
//   23 h ago, and a profile with 10,000 distinct functions.
// Screenshots of each view go to test-artifacts/; with UPDATE_DOC_IMAGES=1
// the README's tour images in docs/images/ are rewritten from the same run.
// Browser-side checks are strings or globalThis casts: the root tsconfig has no DOM lib.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { execFileSync, spawn } from 'node:child_process';
import type { BrowserContext, Page } from 'playwright-core';
import { launchChromium } from './helpers/browser.js';
import { Function as PFunction, Line, Location, Mapping, Profile, Sample, StringTable, ValueType } from 'pprof-format';
import { startServer, type RunningServer } from '../server/index.js';
import { Agent } from '../src/agent/agent.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ARTIFACTS = join(ROOT, 'test-artifacts');
const DOC_IMAGES = join(ROOT, 'docs', 'images');
const FRAME_POINTER_FLAGS = ['-O1', '-g', '-fno-omit-frame-pointer', '-mno-omit-leaf-frame-pointer'];
const JIT_NAME = '[node JIT, start with --perf-basic-prof for names]';

const SPIN_C = `
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static volatile unsigned long sink;
#ifdef STRIPPED_BUILD
const char build_variant[] = "stripped";
#endif
__attribute__((noinline)) unsigned long spin_hot(unsigned long n) {
  unsigned long x = n;
  for (unsigned long i = 0; i < n; i++) x = x * 6364136223846793005UL + 1442695040888963407UL;
  return x;
}
static double cpu_s(void) { struct timespec t; clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t); return t.tv_sec + t.tv_nsec / 1e9; }
/* Spins until this process has used argv[1] seconds of CPU, then prints what it used. */
int main(int argc, char **argv) {
  double want = argc > 1 ? atof(argv[1]) : 1.0;
  /* The argument reads sink, so the call cannot be hoisted out of the loop as a pure one. */
  while (cpu_s() < want) sink += spin_hot(2000000 + (sink & 1));
  printf("%.6f\\n", cpu_s());
  return 0;
}
`;
const NODE_HOT = `
let x = 0;
function mix(i) { return (i * 2654435761) % 1000003; }
const cpu = () => process.cpuUsage().user / 1e6;
while (cpu() < Number(process.argv[2])) for (let i = 0; i < 1e6; i++) x = (x + mix(i)) % 1e9;
console.log(x);
`;

interface Frame {
  node: number;
  name: string;
  kind: string;
  depth: number;
  x: number;
  width: number;
  total: number;
  clientX: number;
  clientY: number;
}
interface TopRowInfo {
  name: string;
  binary: string;
  self: number;
  total: number;
  group: string[];
}

// ---------- seeded profiles ----------
interface SeedFrame {
  name: string;
  binary: string;
}
/** A gzipped pprof (cpu/nanoseconds only) with root-first stacks. */
function seedProfile(stacks: [SeedFrame[], number][], timeMs: number, durationMs: number): Buffer {
  const st = new StringTable();
  const mappings = new Map<string, Mapping>();
  const fnIds = new Map<string, number>();
  const functions: PFunction[] = [];
  const locations: Location[] = [];
  const mappingOf = (binary: string): number => {
    let m = mappings.get(binary);
    if (!m) {
      const id = mappings.size + 1;
      m = new Mapping({ id, memoryStart: 0x400000 * id, memoryLimit: 0x400000 * (id + 1), filename: st.dedup(binary), hasFunctions: true } as never);
      mappings.set(binary, m);
    }
    return Number(m.id);
  };
  const loc = (f: SeedFrame): number => {
    const key = `${f.name}\0${f.binary}`;
    let id = fnIds.get(key);
    if (id === undefined) {
      id = functions.length + 1;
      fnIds.set(key, id);
      functions.push(new PFunction({ id, name: st.dedup(f.name), systemName: st.dedup(f.name) }));
      locations.push(new Location({ id, mappingId: mappingOf(f.binary), address: BigInt(0x400000 + id * 16), line: [new Line({ functionId: id })] }));
    }
    return id;
  };
  const sample = stacks.map(([frames, ns]) => new Sample({ locationId: [...frames].reverse().map(loc), value: [ns] }));
  const p = new Profile({
    sampleType: [new ValueType({ type: st.dedup('cpu'), unit: st.dedup('nanoseconds') })],
    periodType: new ValueType({ type: st.dedup('cpu'), unit: st.dedup('nanoseconds') }),
    period: 10_000_000,
    sample,
    mapping: [...mappings.values()],
    location: locations,
    function: functions,
    stringTable: st,
    timeNanos: BigInt(timeMs) * 1_000_000n,
    durationNanos: durationMs * 1_000_000,
  });
  return gzipSync(p.encode());
}
const APP = '/usr/bin/app';
const fr = (name: string, binary = APP): SeedFrame => ({ name, binary });

describe('the viewer a fleet needs', () => {
  let server: RunningServer;
  let ctx: BrowserContext;
  let page: Page;
  const dirs: string[] = [];
  let recFrom = 0;
  let recTo = 0;
  const cpuSeconds: Record<string, number> = {};

  const hook = <T>(expr: string, p: Page = page): Promise<T> => p.evaluate(`globalThis.__fleetprof.${expr}`) as Promise<T>;
  const frames = (graph = 'main'): Promise<Frame[]> => hook<Frame[]>(`frames(${JSON.stringify(graph)})`);
  const byName = (fs: Frame[], name: string): Frame => {
    const f = fs.find((x) => x.name === name);
    if (!f) throw new Error(`${name} not drawn; drawn: ${fs.map((x) => x.name).join(', ')}`);
    return f;
  };
  async function ready(p: Page = page, want: 'ready' | 'error' = 'ready'): Promise<void> {
    await p.waitForFunction("document.body.dataset.state === 'ready' || document.body.dataset.state === 'error'", null, { timeout: 30_000 });
    const st = await p.getAttribute('body', 'data-state');
    if (st !== want) throw new Error(`viewer state ${st}, wanted ${want}: ${await p.textContent('#status')}`);
  }
  async function open(qs: Record<string, string>, want: 'ready' | 'error' = 'ready'): Promise<void> {
    await page.goto(`${server.url}/?${new URLSearchParams(qs)}`);
    await ready(page, want);
  }
  /** Waits for the next load after an action to settle. */
  async function afterLoad(action: () => Promise<void>, want: 'ready' | 'error' = 'ready'): Promise<void> {
    const before = await hook<number>('loadCount()');
    await action();
    await page.waitForFunction(`globalThis.__fleetprof.loadCount() > ${before}`, null, { timeout: 30_000 });
    await ready(page, want);
  }
  const shot = async (name: string, doc = false): Promise<void> => {
    const buf = await page.screenshot({ path: join(ARTIFACTS, `web-${name}.png`) });
    if (doc && process.env.UPDATE_DOC_IMAGES === '1') {
      mkdirSync(DOC_IMAGES, { recursive: true });
      writeFileSync(join(DOC_IMAGES, `${name}.png`), buf);
    }
  };
  const recRange = (): Record<string, string> => ({ from: String(recFrom), to: String(recTo) });

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    const webDir = mkdtempSync(join(tmpdir(), 'fleetprof-web-'));
    const dataDir = mkdtempSync(join(tmpdir(), 'fleetprof-data-'));
    const userData = mkdtempSync(join(tmpdir(), 'fleetprof-chromium-'));
    const bin = mkdtempSync(join(tmpdir(), 'fleetprof-fleet-bin-'));
    const spool = mkdtempSync(join(tmpdir(), 'fleetprof-fleet-spool-'));
    dirs.push(webDir, dataDir, userData, bin, spool);
    const { build } = await import('vite');
    await build({ root: join(ROOT, 'web'), logLevel: 'warn', build: { outDir: webDir, emptyOutDir: true } });
    server = await startServer({ dataDir, port: 0, host: '127.0.0.1', webDir });

    // Workloads, built from source here: two named spinners, a stripped copy, node through a symlink.
    writeFileSync(join(bin, 'spin.c'), SPIN_C);
    execFileSync('clang', [...FRAME_POINTER_FLAGS, '-o', join(bin, 'fpspin-a'), join(bin, 'spin.c')]);
    copyFileSync(join(bin, 'fpspin-a'), join(bin, 'fpspin-b'));
    // Its own build (so its own build ID: symbol tables are cached by build ID), then stripped.
    execFileSync('clang', [...FRAME_POINTER_FLAGS, '-DSTRIPPED_BUILD=1', '-o', join(bin, 'fpstrip'), join(bin, 'spin.c')]);
    execFileSync('strip', [join(bin, 'fpstrip')]);
    expect(execFileSync('nm', [join(bin, 'fpstrip')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim()).toBe('');
    symlinkSync(process.execPath, join(bin, 'fpnode'));
    writeFileSync(join(bin, 'hot.js'), NODE_HOT);

    recFrom = Date.now() - 1000;
    const agent = await Agent.start({ serverUrl: server.url, frequencyHz: 199, intervalMs: 1000, spoolDir: spool, labels: { env: 'webtest' } });
    const run = (exe: string, args: string[]): Promise<string> =>
      new Promise((resolve, reject) => {
        const c = spawn(exe, args, { stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        c.stdout.on('data', (d: Buffer) => (out += d.toString()));
        c.on('error', reject);
        c.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${exe} exited ${code}`))));
      });
    try {
      const [a, b] = await Promise.all([
        run(join(bin, 'fpspin-a'), ['1.0']),
        run(join(bin, 'fpspin-b'), ['2.0']),
        run(join(bin, 'fpstrip'), ['0.7']),
        run(join(bin, 'fpstrip'), ['0.7']),
        run(join(bin, 'fpstrip'), ['0.7']),
        run(join(bin, 'fpnode'), [join(bin, 'hot.js'), '2.0']),
      ]);
      cpuSeconds['fpspin-a'] = Number(a.trim());
      cpuSeconds['fpspin-b'] = Number(b.trim());
    } finally {
      await agent.stop();
    }
    recTo = Date.now() + 1000;
    if (process.env.FLEET_DEBUG) {
      for (const q of ['{comm="fpspin-a"}', '{comm="fpstrip"}', '{comm="fpnode"}']) {
        const top = await (await fetch(`${server.url}/api/v1/top?${new URLSearchParams({ query: q, from: String(recFrom), to: String(recTo), limit: '8' })}`)).json();
        console.log(q, JSON.stringify(top, null, 0).slice(0, 1500));
      }
      console.log(cpuSeconds);
    }

    // Seeded: svc=api 0.5 cores and svc=db 1.5 cores, one 10 s profile each every 10 s for 40 min.
    const now = Date.now();
    const t0 = Math.floor((now - 40 * 60_000) / 10_000) * 10_000;
    const pushes: Promise<Response>[] = [];
    const ingest = (labels: Record<string, string>, body: Buffer): Promise<Response> =>
      fetch(`${server.url}/api/v1/ingest?${new URLSearchParams(labels)}`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body });
    for (let t = t0; t + 10_000 <= now; t += 10_000) {
      pushes.push(ingest({ svc: 'api', node: 'web-1' }, seedProfile([[[fr('main'), fr('serve'), fr('parse_json')], 5e9]], t, 10_000)));
      pushes.push(ingest({ svc: 'db', node: 'db-1' }, seedProfile([[[fr('main', '/usr/sbin/db'), fr('query', '/usr/sbin/db'), fr('scan', '/usr/sbin/db')], 15e9]], t, 10_000)));
    }
    // One profile 23 h ago (the 24 h view spans two calendar days' worth of ticks).
    pushes.push(ingest({ svc: 'batch', node: 'web-1' }, seedProfile([[[fr('main'), fr('nightly')], 60e9]], now - 23 * 3_600_000, 60_000)));
    // 10,000 distinct functions with long library paths.
    const wide: [SeedFrame[], number][] = [];
    for (let i = 0; i < 10_000; i++) wide.push([[fr('main'), fr(`fn_${String(i).padStart(5, '0')}`, `/usr/lib/x86_64-linux-gnu/very/long/path/to/some/library/lib${i % 7}.so.1`)], 1e6 * (1 + (i % 97))]);
    pushes.push(ingest({ svc: 'wide', node: 'web-1' }, seedProfile(wide, now - 60_000, 10_000)));
    for (const r of await Promise.all(pushes)) expect(r.status, await r.text()).toBeLessThan(300);

    ({ ctx, page } = await launchChromium(userData, { width: 1280, height: 820 }));
  }, 240_000);

  afterAll(async () => {
    await ctx?.close();
    await server?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('grouping by comm puts each recorded process under its own root with its share of CPU', async () => {
    await open({ query: '{comm=~"fpspin-.*"}', groupBy: 'comm', ...recRange() });
    const fs = await frames();
    const all = byName(fs, 'all');
    const a = byName(fs, 'comm=fpspin-a');
    const b = byName(fs, 'comm=fpspin-b');
    expect([a.depth, b.depth, a.kind, b.kind]).toEqual([1, 1, 'label', 'label']);
    const measured = cpuSeconds['fpspin-a']! / (cpuSeconds['fpspin-a']! + cpuSeconds['fpspin-b']!);
    const context = JSON.stringify({ cpuSeconds, a: a.total, b: b.total });
    // Sampling noise at 199 Hz over ~3 CPU seconds is ~2 percentage points.
    expect(Math.abs(a.width / all.width - measured), context).toBeLessThan(0.08);
    expect(Math.abs(a.total / all.total - measured), context).toBeLessThan(0.08);
    expect(a.total + b.total).toBeCloseTo(all.total, 0);
    // The hot function sits under each process's own root.
    const hot = fs.filter((f) => f.name === 'spin_hot');
    expect(hot.length).toBeGreaterThanOrEqual(2);
    expect(await page.inputValue('#groupby')).toBe('comm');
    await shot('group-by-comm', true);
    // The top table gains a comm column.
    await page.keyboard.press('t');
    await page.waitForSelector('#top-table tbody tr[data-name]');
    expect(await page.textContent('#top-table thead')).toContain('comm');
    const rows = await hook<TopRowInfo[]>('allTopRows()');
    expect(rows.filter((r) => r.name === 'spin_hot').map((r) => r.group[0]).sort()).toEqual(['fpspin-a', 'fpspin-b']);
    await shot('top-grouped');
  });

  it('the label panel filters and groups with a click; search matches label values and binary names', async () => {
    await open({ query: '{env="webtest", comm=~"fp.*"}', ...recRange() });
    const comm = page.locator('#labels-panel section[data-label="comm"]');
    await comm.locator('button.label-value[data-value="fpspin-b"]').waitFor();
    // Values are ranked by CPU: fpspin-b (2 s) comes before fpspin-a (1 s).
    const values = await comm.locator('button.label-value').evaluateAll((els) => els.map((e) => (e as unknown as { dataset: { value: string } }).dataset.value));
    expect(values.indexOf('fpspin-b')).toBeLessThan(values.indexOf('fpspin-a'));
    await shot('labels');
    // Search "fpstrip": the stripped binary's frames match by binary name, and the label value is offered as a filter.
    await page.fill('#search', 'fpstrip');
    await page.waitForSelector('#search-share button.label-hit[data-value="fpstrip"]');
    await page.waitForFunction("Number(document.getElementById('search-share')?.dataset.share) > 0");
    await afterLoad(() => page.click('#search-share button.label-hit[data-value="fpstrip"]'));
    expect((await hook<{ query: string }>('state()')).query).toBe('{env="webtest", comm="fpstrip"}');
    await page.fill('#search', '');
    await afterLoad(() => comm.locator('button.group-btn').click());
    expect((await hook<{ groupBy: string[] }>('state()')).groupBy).toEqual(['comm']);
    expect(new URL(page.url()).searchParams.get('groupBy')).toBe('comm');
    // Clicking the active value again removes the filter.
    await afterLoad(() => page.click('#labels-panel section[data-label="comm"] button.label-value[data-value="fpstrip"]'));
    expect((await hook<{ query: string }>('state()')).query).toBe('{env="webtest"}');
  });

  it('a stripped binary rolls up to one row per binary in the top table', async () => {
    await open({ query: '{comm="fpstrip"}', view: 'top', topBy: 'binary', ...recRange() });
    await page.waitForSelector('#top-table tbody tr[data-name]');
    const rows = await hook<TopRowInfo[]>('allTopRows()');
    const strip = rows.filter((r) => r.binary.endsWith('/fpstrip'));
    expect(strip.length, JSON.stringify(rows)).toBe(1);
    const total = rows.reduce((s, r) => s + r.self, 0);
    expect(strip[0]!.name).toBe('fpstrip');
    expect(strip[0]!.self / total).toBeGreaterThan(0.5);
    await shot('top-by-binary', true);
  });

  // Unresolved frames are named binary+0xFILEOFFSET by the store, the same in every process.
  it('a stripped binary\'s hot spot is one row "fpstrip+0x…" in the top table, not one per process', async () => {
    await open({ query: '{comm="fpstrip"}', view: 'top', ...recRange() });
    await page.waitForSelector('#top-table tbody tr[data-name]');
    const rows = (await hook<TopRowInfo[]>('allTopRows()')).filter((r) => r.binary.endsWith('/fpstrip'));
    const total = rows.reduce((s, r) => s + r.self, 0);
    // Not 0x<runtime address> rows, one per process and instruction.
    expect(rows.filter((r) => /^0x[0-9a-f]+$/.test(r.name))).toEqual([]);
    // Merged by file offset, the hottest instruction is one row with the three processes' samples (~65%).
    const hottest = [...rows].sort((x, y) => y.self - x.self)[0]!;
    expect(hottest.name, JSON.stringify(rows.slice(0, 10))).toMatch(/(^|\/)fpstrip\+0x[0-9a-f]+$/);
    expect(hottest.self / total).toBeGreaterThan(0.45);
  });

  it('node without a perf map shows its JIT code named, with the hint in the tooltip', async () => {
    await open({ query: '{comm="fpnode"}', ...recRange() });
    const jit = (await frames()).filter((f) => f.name === JIT_NAME);
    expect(jit.length, (await frames()).map((f) => f.name).join(', ')).toBeGreaterThan(0);
    expect(jit.every((f) => f.kind === 'jit')).toBe(true);
    const widest = jit.sort((x, y) => y.width - x.width)[0]!;
    await page.mouse.move(widest.clientX, widest.clientY);
    await page.waitForSelector('#tooltip:not([hidden]) .tt-hint');
    expect(await page.textContent('#tooltip .tt-hint')).toContain('--perf-basic-prof');
    await shot('node-jit', true);
    await page.mouse.move(1, 1);
  });

  it('a selector that matches nothing shows the no-data state, not NaN', async () => {
    await open({ query: '{comm="no-such-process"}' });
    await page.waitForSelector('#empty:not([hidden])');
    expect(await page.textContent('#empty')).toContain('No data for {comm="no-such-process"}');
    expect(await page.textContent('#status')).not.toContain('NaN');
    expect(await page.isVisible('#view-flame')).toBe(false);
    await shot('empty');
  });

  it('an invalid selector is marked with its error and the stale graph is cleared', async () => {
    await open({ query: '{svc="api"}', from: 'now-15m' });
    expect((await frames()).length).toBeGreaterThan(3);
    await afterLoad(async () => {
      await page.fill('#query', '{svc=}');
      await page.press('#query', 'Enter');
    }, 'error');
    expect(await page.getAttribute('#query', 'aria-invalid')).toBe('true');
    expect(await page.isVisible('#query-error')).toBe(true);
    expect((await page.textContent('#query-error'))!.length).toBeGreaterThan(5);
    expect(await frames()).toEqual([]);
    expect(await page.isVisible('#empty')).toBe(true);
    await shot('invalid-selector');
    // Fixing it clears the mark.
    await afterLoad(async () => {
      await page.fill('#query', '{svc="api"}');
      await page.press('#query', 'Enter');
    });
    expect(await page.getAttribute('#query', 'aria-invalid')).toBe('false');
    expect(await page.isVisible('#query-error')).toBe(false);
    expect((await frames()).length).toBeGreaterThan(3);
    // A time the viewer cannot read clears the graph too, and says why.
    await afterLoad(async () => {
      await page.fill('#from', 'yesterday-ish');
      await page.press('#from', 'Enter');
    }, 'error');
    expect(await frames()).toEqual([]);
    expect(await page.textContent('#empty')).toContain('The time range is not valid');
  });

  it('Compare opens against the preceding window of the same length and says what it compares', async () => {
    await open({ query: '{svc="api"}', from: 'now-15m' });
    await page.evaluate('document.activeElement && document.activeElement.blur()');
    await afterLoad(() => page.keyboard.press('c'));
    const st = await hook<{ compare: { query: string; from: string; to: string } }>('state()');
    expect(st.compare).toEqual({ query: '{svc="api"}', from: 'now-30m', to: 'now-15m' });
    const sel = await hook<{ from: number; to: number }>('resolved()');
    const base = await hook<{ from: number; to: number }>('resolvedBaseline()');
    expect(base.to).toBe(sel.from);
    expect(base.to - base.from).toBe(sel.to - sel.from);
    const desc = await page.textContent('#compare-desc');
    expect(desc).toContain('Comparing {svc="api"} over last 15m (selection) against {svc="api"} over now-30m → now-15m (baseline, the 15 min just before)');
    expect(desc).not.toContain('no samples');
    // A steady load compared with itself a window earlier: no change anywhere.
    const parse = byName(await frames('diff'), 'parse_json');
    expect(Math.abs((parse as Frame & { delta: number }).delta)).toBeLessThan(1e-9);
    await shot('compare-default', true);
    // Grouped, Compare splits by the label too.
    await afterLoad(async () => {
      await page.selectOption('#groupby', 'svc');
    });
    const api = byName(await frames('diff'), 'svc=api') as Frame & { delta: number };
    expect(api.kind).toBe('label');
    expect(Math.abs(api.delta)).toBeLessThan(1e-9);
  });

  it('the timeline is in cores, stacks the groups, and its tooltip shows each series at the hovered time', async () => {
    await open({ query: '{svc=~"api|db"}', groupBy: 'svc', from: 'now-15m' });
    expect(await page.getAttribute('#timeline', 'data-unit')).toBe('cores');
    const sel = await hook<{ from: number; to: number }>('resolved()');
    const box = (await page.locator('#timeline').boundingBox())!;
    const x = await hook<number>(`timelineX(${sel.from + (sel.to - sel.from) / 2})`);
    await page.mouse.move(box.x + x, box.y + box.height / 2);
    await page.waitForSelector('#timeline-tip:not([hidden])');
    const series = await page.$$eval('#timeline-tip tr[data-series]', (trs) =>
      trs.map((tr) => [(tr as unknown as { dataset: { series: string } }).dataset.series, Number((tr as unknown as { dataset: { value: string } }).dataset.value)]),
    );
    expect(series.map(([s]) => s)).toEqual(['svc=db', 'svc=api']);
    expect(series[0]![1]).toBeCloseTo(1.5, 6);
    expect(series[1]![1]).toBeCloseTo(0.5, 6);
    expect(await page.textContent('#timeline-tip .tt-sum')).toContain('2.00 cores');
    // The header is a local date-time.
    expect(await page.textContent('#timeline-tip .tt-time')).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d – \d\d:\d\d:\d\d$/);
    // Ticks are at least 2 and below 3 cores on the axis (steady 2 cores).
    expect(Number(await page.getAttribute('#timeline', 'data-y-max'))).toBeGreaterThanOrEqual(2);
    await shot('timeline-tooltip', true);
    await page.mouse.move(1, 1);
  });

  it('a 24 h range shows dates; a drag selects a range shown in local time; Shift+drag picks the baseline', async () => {
    await open({ from: 'now-24h' });
    const ticks = JSON.parse((await page.getAttribute('#timeline', 'data-ticks'))!) as string[];
    expect(ticks.length).toBeGreaterThan(3);
    expect(ticks.some((t) => /^[A-Z][a-z]{2} \d{1,2}( \d\d:\d\d)?$/.test(t)), ticks.join(' | ')).toBe(true);
    await shot('timeline-24h');
    const box = (await page.locator('#timeline').boundingBox())!;
    const sel = await hook<{ from: number; to: number }>('resolved()');
    const xA = await hook<number>(`timelineX(${sel.to - 6 * 3_600_000})`);
    const xB = await hook<number>(`timelineX(${sel.to - 3 * 3_600_000})`);
    await afterLoad(async () => {
      await page.mouse.move(box.x + xA, box.y + 30);
      await page.mouse.down();
      await page.mouse.move(box.x + xB, box.y + 30, { steps: 4 });
      await page.mouse.up();
    });
    const fromBox = await page.inputValue('#from');
    const toBox = await page.inputValue('#to');
    expect(fromBox).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
    expect(toBox).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
    const picked = await hook<{ from: number; to: number }>('resolved()');
    // Within a pixel's worth of time (24 h over the plot width).
    const pxMs = (sel.to - sel.from) / (box.width - 56);
    expect(Math.abs(picked.from - (sel.to - 6 * 3_600_000))).toBeLessThan(2 * pxMs);
    expect(Math.abs(picked.to - (sel.to - 3 * 3_600_000))).toBeLessThan(2 * pxMs);
    // Shift+drag on the (now 3 h) timeline: the left third becomes the Compare baseline.
    const x0 = await hook<number>(`timelineX(${picked.from})`);
    const x1 = await hook<number>(`timelineX(${picked.from + 3_600_000})`);
    await afterLoad(async () => {
      await page.keyboard.down('Shift');
      await page.mouse.move(box.x + x0 + 1, box.y + 30);
      await page.mouse.down();
      await page.mouse.move(box.x + x1, box.y + 30, { steps: 4 });
      await page.mouse.up();
      await page.keyboard.up('Shift');
    });
    const st = await hook<{ view: string; compare: { from: string; to: string } }>('state()');
    expect(st.view).toBe('diff');
    const base = await hook<{ from: number; to: number }>('resolvedBaseline()');
    const px3h = (picked.to - picked.from) / (box.width - 56);
    expect(Math.abs(base.to - (picked.from + 3_600_000))).toBeLessThan(2 * px3h);
    expect(await page.textContent('#compare-desc')).toContain('(baseline');
    await shot('compare-shift-drag');
  });

  it('the top table keeps under 100 rows in the DOM with 10,000 functions, truncates paths in the middle, sorts by binary', async () => {
    await open({ query: '{svc="wide"}', view: 'top', from: 'now-15m' });
    await page.waitForSelector('#top-table tbody tr[data-name]');
    expect((await hook<TopRowInfo[]>('allTopRows()')).length).toBe(10_001); // + main
    const inDom = await page.locator('#top-table tbody tr').count();
    expect(inDom).toBeLessThan(100);
    expect(await page.textContent('#top-count')).toContain('10,001');
    // Scrolled to the end, the last rows are there (and still few in the DOM).
    await page.locator('#top-scroll').evaluate((el) => {
      (el as unknown as { scrollTop: number; scrollHeight: number }).scrollTop = (el as unknown as { scrollHeight: number }).scrollHeight;
    });
    await page.waitForFunction("document.querySelector('#top-table tbody tr[data-index=\"10000\"]') !== null");
    expect(await page.locator('#top-table tbody tr').count()).toBeLessThan(100);
    // Paths keep their file name: cut in the middle.
    const bin = (await page.locator('#top-table tbody tr[data-name] td.bin').first().textContent())!;
    expect(bin).toContain('…');
    expect(bin).toMatch(/lib\d\.so\.1$/);
    expect(bin.startsWith('/usr/')).toBe(true);
    await page.locator('#top-scroll').evaluate((el) => {
      (el as unknown as { scrollTop: number }).scrollTop = 0;
    });
    await page.click('#top-table th[data-sort="binary"]');
    const shown = await hook<TopRowInfo[]>('topRows()');
    const bases = shown.map((r) => r.binary.slice(r.binary.lastIndexOf('/') + 1));
    expect(bases).toEqual([...bases].sort());
    await shot('top-virtualized');
  });

  it('dark mode draws the grouped flame graph and the timeline', async () => {
    await page.emulateMedia({ colorScheme: 'dark' });
    await open({ query: '{svc=~"api|db"}', groupBy: 'svc', from: 'now-15m' });
    expect(byName(await frames(), 'svc=db').kind).toBe('label');
    await shot('flame-grouped-dark', true);
    await page.emulateMedia({ colorScheme: 'light' });
  });
});
