// The web viewer in headless chromium against the REAL server (server/index.ts),
// seeded over HTTP with pprof profiles of known shape:
//   node=web-1: main;serve;handle_request;parse_json 600 | ...;render 300 | main;serve;write;sys_write;tcp_sendmsg 100
//   node=web-2: the same plus main;compress;deflate 1000 (the planted change: deflate goes 0% -> 50%)
// Screenshots of every view go to test-artifacts/.
// Browser-side checks are strings: the root tsconfig has no DOM lib.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { execFileSync } from 'node:child_process';
import type { BrowserContext, Page } from 'playwright-core';
import { launchChromium } from './helpers/browser.js';
import { startServer, type RunningServer } from '../server/index.js';
import { Function as PFunction, Line, Location, Mapping, Profile, Sample, StringTable, ValueType } from 'pprof-format';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ARTIFACTS = join(ROOT, 'test-artifacts');
const KERNEL = new Set(['sys_write', 'tcp_sendmsg']);


interface Frame {
  node: number;
  name: string;
  kind: string;
  depth: number;
  x: number;
  y: number;
  width: number;
  height: number;
  self: number;
  total: number;
  matched: boolean;
  dimmed: boolean;
  delta?: number;
  clientX: number;
  clientY: number;
}

/** pprof (gzipped) from root-first stacks; kernel frames get the [kernel.kallsyms] mapping. */
function pprofFromStacks(stacks: [string[], number][]): Buffer {
  const st = new StringTable();
  const mappings = [
    new Mapping({ id: 1, memoryStart: 0x400000, memoryLimit: 0x800000, filename: st.dedup('/usr/bin/app'), hasFunctions: true } as never),
    new Mapping({ id: 2, memoryStart: 0xffffffff81000000n, memoryLimit: 0xffffffff82000000n, filename: st.dedup('[kernel.kallsyms]'), hasFunctions: true } as never),
  ];
  const fnIds = new Map<string, number>();
  const functions: PFunction[] = [];
  const locations: Location[] = [];
  const loc = (name: string): number => {
    let id = fnIds.get(name);
    if (id === undefined) {
      id = functions.length + 1;
      fnIds.set(name, id);
      functions.push(new PFunction({ id, name: st.dedup(name), systemName: st.dedup(name), filename: st.dedup('app.c') }));
      const kernel = KERNEL.has(name);
      locations.push(
        new Location({ id, mappingId: kernel ? 2 : 1, address: (kernel ? 0xffffffff81000000n : 0x400000n) + BigInt(id * 16), line: [new Line({ functionId: id, line: id })] }),
      );
    }
    return id;
  };
  const samples = stacks.map(([frames, n]) => new Sample({ locationId: [...frames].reverse().map(loc), value: [n, n * 10_000_000] }));
  const p = new Profile({
    sampleType: [new ValueType({ type: st.dedup('samples'), unit: st.dedup('count') }), new ValueType({ type: st.dedup('cpu'), unit: st.dedup('nanoseconds') })],
    periodType: new ValueType({ type: st.dedup('cpu'), unit: st.dedup('nanoseconds') }),
    period: 10_000_000,
    sample: samples,
    mapping: mappings,
    location: locations,
    function: functions,
    stringTable: st,
    timeNanos: BigInt(Date.now() - 30_000) * 1_000_000n,
    durationNanos: 10_000_000_000,
  });
  return gzipSync(p.encode());
}

const BASE: [string[], number][] = [
  [['main', 'serve', 'handle_request', 'parse_json'], 600],
  [['main', 'serve', 'handle_request', 'render'], 300],
  [['main', 'serve', 'write', 'sys_write', 'tcp_sendmsg'], 100],
];
const PLANTED: [string[], number][] = [...BASE, [['main', 'compress', 'deflate'], 1000]];
const Q1 = '{node="web-1"}';
const Q2 = '{node="web-2"}';

describe('web viewer against the real server', () => {
  let server: RunningServer;
  let ctx: BrowserContext;
  let page: Page;
  const dirs: string[] = [];

  const frames = (graph?: string): Promise<Frame[]> =>
    page.evaluate((g) => (globalThis as unknown as { __fleetprof: { frames(g?: string): Frame[] } }).__fleetprof.frames(g), graph);
  const byName = (fs: Frame[], name: string): Frame => {
    const f = fs.find((x) => x.name === name);
    if (!f) throw new Error(`${name} not drawn; drawn: ${fs.map((x) => x.name).join(', ')}`);
    return f;
  };
  const hookState = (p: Page = page): Promise<Record<string, unknown>> =>
    p.evaluate(() => (globalThis as unknown as { __fleetprof: { state(): Record<string, unknown> } }).__fleetprof.state());
  async function open(p: Page, query: string): Promise<void> {
    const before = await p.evaluate(() => (globalThis as unknown as { __fleetprof?: { loadCount(): number } }).__fleetprof?.loadCount() ?? -1).catch(() => -1);
    await p.goto(`${server.url}/${query}`);
    await waitReady(p, before);
  }
  async function waitReady(p: Page, _before = -1): Promise<void> {
    await p.waitForFunction("document.body.dataset.state === 'ready' || document.body.dataset.state === 'error'", null, { timeout: 30_000 });
    const st = await p.getAttribute('body', 'data-state');
    if (st !== 'ready') throw new Error(`viewer failed: ${await p.textContent('#status')}`);
  }
  const shot = (name: string): Promise<Buffer> => page.screenshot({ path: join(ARTIFACTS, `web-${name}.png`), fullPage: true });

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    const webDir = mkdtempSync(join(tmpdir(), 'fleetprof-web-'));
    const dataDir = mkdtempSync(join(tmpdir(), 'fleetprof-data-'));
    const userData = mkdtempSync(join(tmpdir(), 'fleetprof-chromium-'));
    dirs.push(webDir, dataDir, userData);
    const { build } = await import('vite');
    await build({ root: join(ROOT, 'web'), logLevel: 'warn', build: { outDir: webDir, emptyOutDir: true } });
    server = await startServer({ dataDir, port: 0, host: '127.0.0.1', webDir });
    for (const [node, stacks] of [
      ['web-1', BASE],
      ['web-2', PLANTED],
    ] as const) {
      const res = await fetch(`${server.url}/api/v1/ingest?node=${node}&comm=app`, {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream' },
        body: pprofFromStacks(stacks),
      });
      expect(res.status, await res.text()).toBeLessThan(300);
    }
    ({ ctx, page } = await launchChromium(userData, { width: 1200, height: 800 }));
  });

  afterAll(async () => {
    await ctx?.close();
    await server?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('draws the right frames where expected (icicle, root on top)', async () => {
    await open(page, `?query=${encodeURIComponent(Q1)}`);
    const fs = await frames('main');
    const root = byName(fs, 'all');
    const W = root.width;
    expect(root.x).toBe(0);
    expect(root.y).toBe(0);
    const expectAt = (name: string, depth: number, x: number, share: number): void => {
      const f = byName(fs, name);
      expect(f.depth, name).toBe(depth);
      expect(f.y, name).toBe(depth * f.height);
      expect(f.x, name).toBeCloseTo(x * W, 0);
      expect(f.width, name).toBeCloseTo(share * W, 0);
    };
    expectAt('main', 1, 0, 1);
    expectAt('serve', 2, 0, 1);
    // Siblings sorted by name: handle_request (90%) then write (10%).
    expectAt('handle_request', 3, 0, 0.9);
    expectAt('write', 3, 0.9, 0.1);
    expectAt('parse_json', 4, 0, 0.6);
    expectAt('render', 4, 0.6, 0.3);
    expectAt('tcp_sendmsg', 5, 0.9, 0.1);
    expect(byName(fs, 'tcp_sendmsg').kind).toBe('kernel');
    expect(byName(fs, 'parse_json').kind).toBe('native');
    await shot('flame-icicle');
  });

  it('hover shows the right numbers', async () => {
    const api = (await (await fetch(`${server.url}/api/v1/flamegraph?${new URLSearchParams({ query: Q1, from: String(Date.now() - 3_600_000), to: String(Date.now()) })}`)).json()) as {
      total: number;
    };
    const f = byName(await frames('main'), 'parse_json');
    await page.mouse.move(f.clientX, f.clientY);
    await page.waitForSelector('#tooltip:not([hidden])');
    expect(await page.getAttribute('#tooltip', 'data-name')).toBe('parse_json');
    expect(Number(await page.getAttribute('#tooltip', 'data-total')) / api.total).toBeCloseTo(0.6, 6);
    expect(await page.textContent('#tooltip .tt-total')).toContain('(60.0%)');
    expect(await page.textContent('#tooltip .tt-self')).toContain('(60.0%)');
    expect(await page.textContent('#tooltip .tt-bin')).toContain('/usr/bin/app');
    const h = byName(await frames('main'), 'handle_request');
    await page.mouse.move(h.clientX, h.clientY);
    await page.waitForFunction("document.getElementById('tooltip')?.dataset.name === 'handle_request'");
    expect(await page.textContent('#tooltip .tt-total')).toContain('(90.0%)');
    expect(await page.textContent('#tooltip .tt-self')).toContain('(0.00%)');
    await shot('flame-hover');
    await page.mouse.move(1, 1);
  });

  it('search highlights matches and reports their share once', async () => {
    await page.keyboard.press('/');
    expect(await page.evaluate('document.activeElement?.id')).toBe('search');
    await page.keyboard.type('parse');
    await page.waitForFunction("document.getElementById('search-share')?.dataset.share === '0.6'");
    let fs = await frames('main');
    expect(byName(fs, 'parse_json').matched).toBe(true);
    expect(byName(fs, 'render').dimmed).toBe(true);
    expect(await page.textContent('#search-share')).toContain('60.0%');
    await shot('flame-search');
    // serve contains parse_json: 100%, not 160%.
    await page.fill('#search', '/^(serve|parse_json)$/');
    await page.waitForFunction("document.getElementById('search-share')?.dataset.share === '1'");
    fs = await frames('main');
    expect(byName(fs, 'serve').matched).toBe(true);
    await page.fill('#search', '');
    await page.waitForFunction("document.getElementById('search-share')?.dataset.share === ''");
  });

  it('click focuses a frame, Esc and the breadcrumb reset', async () => {
    await page.locator('body').click({ position: { x: 5, y: 5 } });
    const h = byName(await frames('main'), 'handle_request');
    await page.mouse.click(h.clientX, h.clientY);
    await page.waitForFunction("new URL(location.href).searchParams.get('focus') !== null");
    let fs = await frames('main');
    const W = byName(fs, 'all').width;
    expect(byName(fs, 'handle_request').width).toBeCloseTo(W, 0);
    expect(byName(fs, 'serve').width).toBeCloseTo(W, 0); // ancestors stay as a path
    expect(byName(fs, 'parse_json').width).toBeCloseTo((W * 600) / 900, 0);
    expect(fs.find((f) => f.name === 'write')).toBeUndefined();
    expect(await page.textContent('#breadcrumb')).toContain('handle_request');
    expect((await hookState()).focus).toEqual(['main', 'serve', 'handle_request']);
    await shot('flame-focus');
    await page.keyboard.press('Escape');
    fs = await frames('main');
    expect(byName(fs, 'write').width).toBeCloseTo(W * 0.1, 0);
    expect((await hookState()).focus).toEqual([]);
    // Breadcrumb: focus parse_json, then click "serve" in the path.
    const p = byName(fs, 'parse_json');
    await page.mouse.click(p.clientX, p.clientY);
    await page.click('#breadcrumb button[data-node]:has-text("serve")');
    expect((await hookState()).focus).toEqual(['main', 'serve']);
    expect(byName(await frames('main'), 'write').width).toBeCloseTo(W * 0.1, 0);
    await page.click('#reset-focus');
    expect((await hookState()).focus).toEqual([]);
  });

  it('top table sorts and filters; a click opens the sandwich', async () => {
    await page.keyboard.press('t');
    await page.waitForSelector('#top-table tbody tr');
    const rows = (): Promise<{ name: string; self: number; total: number }[]> =>
      page.evaluate(() => (globalThis as unknown as { __fleetprof: { topRows(): { name: string; self: number; total: number }[] } }).__fleetprof.topRows());
    let r = await rows();
    expect(r[0]!.name).toBe('parse_json');
    for (let i = 1; i < r.length; i++) expect(r[i]!.self).toBeLessThanOrEqual(r[i - 1]!.self);
    await shot('top');
    await page.click('#top-table th[data-sort="self"]');
    r = await rows();
    for (let i = 1; i < r.length; i++) expect(r[i]!.self).toBeGreaterThanOrEqual(r[i - 1]!.self);
    await page.click('#top-table th[data-sort="total"]');
    r = await rows();
    expect(r[0]!.name).toMatch(/^(main|serve)$/);
    expect(r[0]!.total / r.find((x) => x.name === 'parse_json')!.total).toBeCloseTo(1000 / 600, 6);
    await page.click('#top-table th[data-sort="name"]');
    r = await rows();
    expect(r.map((x) => x.name)).toEqual([...r.map((x) => x.name)].sort());
    await page.fill('#top-filter', 'rend');
    r = await rows();
    expect(r.map((x) => x.name)).toEqual(['render']);
    await page.click('#top-table tbody tr[data-name="render"]');
    await page.waitForFunction("document.body.dataset.view === 'sandwich'");
    const callers = await frames('callers');
    // Callers inverted (render at the bottom, its callers above), callees below.
    expect(callers.map((f) => [f.name, f.depth])).toEqual(expect.arrayContaining([['render', 0], ['handle_request', 1], ['serve', 2], ['main', 3]]));
    expect(byName(callers, 'main').y).toBeLessThan(byName(callers, 'render').y);
    const callees = await frames('callees');
    expect(byName(callees, 'render').width).toBeCloseTo(byName(callers, 'render').width, 0);
    expect((await hookState()).fn).toBe('render');
    await shot('sandwich');
  });

  it('compare shows the planted change', async () => {
    await open(page, `?query=${encodeURIComponent(Q2)}&view=diff&cquery=${encodeURIComponent(Q1)}&cfrom=now-1h&cto=now`);
    const fs = await frames('diff');
    const deflate = byName(fs, 'deflate');
    expect(deflate.delta).toBeCloseTo(0.5, 6);
    expect(byName(fs, 'parse_json').delta).toBeCloseTo(0.3 - 0.6, 6);
    expect(byName(fs, 'all').delta).toBeCloseTo(0, 9);
    await page.mouse.move(deflate.clientX, deflate.clientY);
    await page.waitForFunction("document.getElementById('tooltip')?.dataset.name === 'deflate'");
    expect(await page.textContent('#tooltip .tt-delta')).toContain('+50.00 pp');
    expect(await page.textContent('#diff-legend')).toContain('pp');
    await shot('compare');
    await page.mouse.move(1, 1);
  });

  it('the pprof download is what is on screen and opens in go tool pprof', async () => {
    await open(page, `?query=${encodeURIComponent(Q1)}&from=now-1h&to=now`);
    const href = await page.getAttribute('#download', 'href');
    expect(href).toBeTruthy();
    const u = new URL(href!, server.url);
    const resolved = (await page.evaluate(() => (globalThis as unknown as { __fleetprof: { resolved(): unknown } }).__fleetprof.resolved())) as { query: string; from: number; to: number };
    expect(u.pathname).toBe('/api/v1/profile');
    expect(u.searchParams.get('query')).toBe(Q1);
    expect(Number(u.searchParams.get('from'))).toBe(resolved.from);
    expect(Number(u.searchParams.get('to'))).toBe(resolved.to);
    const res = await fetch(u);
    expect(res.status).toBe(200);
    const file = join(ARTIFACTS, 'web-download.pb.gz');
    writeFileSync(file, Buffer.from(await res.arrayBuffer()));
    const out = execFileSync('go', ['tool', 'pprof', '-top', '-symbolize=none', file], { encoding: 'utf8', env: { ...process.env, PPROF_TMPDIR: tmpdir() } });
    expect(out).toContain('parse_json');
    expect(out).toContain('render');
    expect(out).not.toContain('deflate');
  });

  it('reloading a shared URL restores the view', async () => {
    await open(page, `?query=${encodeURIComponent(Q1)}`);
    const h = byName(await frames('main'), 'handle_request');
    await page.mouse.click(h.clientX, h.clientY);
    await page.fill('#search', 'render');
    await page.waitForFunction("new URL(location.href).searchParams.get('search') === 'render'");
    await page.locator('#search').blur(); // keys switch views only when not typing
    await page.keyboard.press('i'); // flame orientation: root at the bottom
    const url = page.url();
    const stateBefore = await hookState();
    const framesBefore = (await frames('main')).map(({ name, x, y, width, matched }) => ({ name, x, y, width, matched }));
    expect(stateBefore).toMatchObject({ orientation: 'flame', search: 'render', focus: ['main', 'serve', 'handle_request'] });
    await shot('flame-orientation');
    const page2 = await ctx.newPage();
    await page2.goto(url);
    await waitReady(page2);
    await page2.waitForFunction("document.getElementById('search-share')?.dataset.share !== ''");
    expect(await hookState(page2)).toEqual(stateBefore);
    const framesAfter = (await page2.evaluate(() => (globalThis as unknown as { __fleetprof: { frames(g: string): Frame[] } }).__fleetprof.frames('main'))).map(
      ({ name, x, y, width, matched }) => ({ name, x, y, width, matched }),
    );
    expect(framesAfter).toEqual(framesBefore);
    expect(await page2.inputValue('#search')).toBe('render');
    await page2.close();
  });
});
