// Pure profile-logic layer of the web viewer (no DOM).
import { describe, expect, it } from 'vitest';
import { buildCallTree, childrenOf, diffFromProfiles, funcName, nodeAtPath, pathOf, profileFromStacks, type StackSample } from '../web/src/profile-logic/tree.js';
import { computeStarts, hitTest, layoutVisible } from '../web/src/profile-logic/layout.js';
import { compileSearch, searchTree } from '../web/src/profile-logic/search.js';
import { diffShares } from '../web/src/profile-logic/diff.js';
import { computeTop, filterTop, sortTop, truncateMiddle } from '../web/src/profile-logic/top.js';
import { sandwichFor } from '../web/src/profile-logic/sandwich.js';
import { DEFAULT_STATE, decodeState, encodeState, type ViewState } from '../web/src/profile-logic/url-state.js';
import { applyCompletion, completionContext, equalities, toggleEquality } from '../web/src/profile-logic/selector.js';
import { frameColor, hashString } from '../web/src/profile-logic/colors.js';
import { formatLocal, precedingWindow, resolveTime, timeTicks } from '../web/src/profile-logic/time.js';
import { niceAxis, toRate } from '../web/src/profile-logic/timeline-scale.js';
import { syntheticProfile } from '../web/src/profile-logic/synthetic.js';

const STACKS: StackSample[] = [
  { frames: ['main', 'a', 'hot'], value: 50 },
  { frames: ['main', 'a', 'b', 'hot'], value: 20 },
  { frames: ['main', 'b'], value: 10 },
  { frames: ['main', 'hot', 'hot'], value: 15 }, // recursion
  { frames: ['main'], value: 5 },
];
const info = (n: string) => (n === 'hot' ? { binary: '/usr/lib/libhot.so', kind: 'native' as const } : { binary: '/usr/bin/app', kind: 'native' as const });
const resp = profileFromStacks(STACKS, info);
const tree = buildCallTree(resp);
const node = (...path: string[]): number => {
  const r = nodeAtPath(tree, path);
  expect(r.matched).toBe(path.length);
  return r.node;
};

describe('tree building', () => {
  it('builds a pre-order tree with totals = self + children', () => {
    expect(resp.total).toBe(100);
    expect(tree.total[0]).toBe(100);
    for (let i = 1; i < tree.size; i++) expect(tree.parent[i]).toBeLessThan(i);
    for (let i = 0; i < tree.size; i++) {
      const kids = childrenOf(tree, i);
      const sum = kids.reduce((s, c) => s + tree.total[c]!, 0);
      expect(tree.total[i]).toBe(tree.self[i]! + sum);
      const names = kids.map((c) => funcName(tree, c));
      expect(names).toEqual([...names].sort());
    }
    expect(tree.total[node('main', 'a')]).toBe(70);
    expect(tree.self[node('main', 'a', 'hot')]).toBe(50);
    expect(tree.total[node('main', 'hot')]).toBe(15);
    expect(tree.maxDepth).toBe(4);
  });

  it('maps nodes to name paths and back', () => {
    const n = node('main', 'a', 'b', 'hot');
    expect(pathOf(tree, n)).toEqual(['main', 'a', 'b', 'hot']);
    expect(nodeAtPath(tree, ['main', 'nope']).matched).toBe(1);
  });

  it('rejects trees that are not pre-order', () => {
    const bad = { ...resp, tree: { func: [-1, 0, 1], parent: [-1, 2, 0], self: [0, 1, 1], total: [2, 1, 1] } };
    expect(() => buildCallTree(bad)).toThrow(/pre-order/);
  });
});

describe('layout', () => {
  const big = buildCallTree(syntheticProfile(20_000, 3));
  it('keeps children within parent bounds, widths proportional to totals', () => {
    const start = computeStarts(big);
    const vis = layoutVisible(big, start, big.total, { focus: 0, x0: 0, x1: big.total[0]!, widthPx: 1000, minWidthPx: 0 });
    expect(vis.count).toBe(big.size);
    const px = 1000 / big.total[0]!;
    const xs = new Map<number, [number, number]>();
    for (let j = 0; j < vis.count; j++) xs.set(vis.node[j]!, [vis.x[j]!, vis.w[j]!]);
    for (let i = 1; i < big.size; i++) {
      const [x, w] = xs.get(i)!;
      const [px0, pw] = xs.get(big.parent[i]!)!;
      expect(x).toBeGreaterThanOrEqual(px0 - 1e-3);
      expect(x + w).toBeLessThanOrEqual(px0 + pw + 1e-3);
      expect(w).toBeCloseTo(big.total[i]! * px, 2);
    }
    // Siblings do not overlap.
    for (let i = 0; i < big.size; i++) {
      const kids = childrenOf(big, i);
      for (let k = 1; k < kids.length; k++) {
        const [a, aw] = xs.get(kids[k - 1]!)!;
        expect(xs.get(kids[k]!)![0]).toBeGreaterThanOrEqual(a + aw - 1e-3);
      }
    }
  });

  it('culls subtrees narrower than a pixel and off-screen, hit-tests by row', () => {
    const start = computeStarts(big);
    const vis = layoutVisible(big, start, big.total, { focus: 0, x0: 0, x1: big.total[0]!, widthPx: 800 });
    expect(vis.count).toBeLessThan(big.size);
    for (let j = 0; j < vis.count; j++) expect(vis.w[j]).toBeGreaterThanOrEqual(1 - 1e-6);
    for (let j = 0; j < vis.count; j += 7) {
      const hit = hitTest(vis, vis.x[j]! + vis.w[j]! / 2, vis.depth[j]!);
      expect(hit).toBe(j);
    }
    // Zoomed into the right half: nothing left of 0 or right of the canvas.
    const half = big.total[0]! / 2;
    const z = layoutVisible(big, start, big.total, { focus: 0, x0: half, x1: big.total[0]!, widthPx: 800 });
    for (let j = 0; j < z.count; j++) {
      expect(z.x[j]).toBeGreaterThanOrEqual(0);
      expect(z.x[j]! + z.w[j]!).toBeLessThanOrEqual(800 + 1e-3);
    }
  });

  it('focus draws ancestors full width and scales the subtree to the canvas', () => {
    const start = computeStarts(tree);
    const f = node('main', 'a');
    const vis = layoutVisible(tree, start, tree.total, { focus: f, x0: start[f]!, x1: start[f]! + tree.total[f]!, widthPx: 700, minWidthPx: 0 });
    const drawn = new Map<number, [number, number]>();
    for (let j = 0; j < vis.count; j++) drawn.set(vis.node[j]!, [vis.x[j]!, vis.w[j]!]);
    expect(drawn.get(0)).toEqual([0, 700]);
    expect(drawn.get(node('main'))).toEqual([0, 700]);
    expect(drawn.get(f)).toEqual([0, 700]);
    expect(drawn.get(node('main', 'a', 'hot'))![1]).toBeCloseTo(500, 3);
    expect(drawn.has(node('main', 'b'))).toBe(false);
  });
});

describe('search', () => {
  it('parses substring and /regex/', () => {
    expect(compileSearch('HOT').matcher!('hot')).toBe(true);
    expect(compileSearch('/^h.t$/').matcher!('hot')).toBe(true);
    expect(compileSearch('/^h.t$/').matcher!('shot')).toBe(false);
    expect(compileSearch('/(/').error).toBeTruthy();
    expect(compileSearch('  ').matcher).toBeNull();
  });

  it('counts each sample once when matches nest', () => {
    const r = searchTree(tree, compileSearch('hot').matcher!);
    // hot under main/a (50), under main/a/b (20), main/hot (15; its nested hot not again).
    expect(r.covered).toBe(85);
    expect(r.share).toBeCloseTo(0.85);
    expect(r.matchedNodes).toBe(4);
    const ab = searchTree(tree, compileSearch('/^(a|b|hot)$/').matcher!);
    // a (70) + main/b (10) + main/hot (15); b and hot under a are not counted again.
    expect(ab.covered).toBe(95);
  });
});

describe('diff arithmetic', () => {
  it('a profile diffed with itself is all zero and shares add up', () => {
    const d = diffShares(buildCallTree(diffFromProfiles(resp, resp)));
    for (let i = 0; i < d.delta.length; i++) expect(d.delta[i]).toBeCloseTo(0, 12);
    expect(d.maxAbsDelta).toBeCloseTo(0, 12);
    expect(d.left[0]).toBeCloseTo(1);
    expect(d.right[0]).toBeCloseTo(1);
  });

  it('reports the planted change in share and keeps shares consistent', () => {
    const right = profileFromStacks([...STACKS, { frames: ['main', 'leak'], value: 100 }], info);
    const dt = buildCallTree(diffFromProfiles(resp, right));
    const d = diffShares(dt);
    const leak = nodeAtPath(dt, ['main', 'leak']).node;
    expect(d.left[leak]).toBe(0);
    expect(d.right[leak]).toBeCloseTo(0.5);
    expect(d.delta[leak]).toBeCloseTo(0.5);
    expect(d.delta[nodeAtPath(dt, ['main', 'a']).node]).toBeCloseTo(0.35 - 0.7);
    let ls = 0;
    let rs = 0;
    for (let i = 0; i < dt.size; i++) {
      ls += d.leftSelf[i]!;
      rs += d.rightSelf[i]!;
      const kids = childrenOf(dt, i);
      expect(d.right[i]).toBeCloseTo(d.rightSelf[i]! + kids.reduce((s, c) => s + d.right[c]!, 0), 12);
      expect(d.left[i]).toBeCloseTo(d.leftSelf[i]! + kids.reduce((s, c) => s + d.left[c]!, 0), 12);
    }
    expect(ls).toBeCloseTo(1, 12);
    expect(rs).toBeCloseTo(1, 12);
    // Deltas of root's children plus root self delta sum to zero.
    const kids = childrenOf(dt, 0);
    expect(kids.reduce((s, c) => s + d.delta[c]!, 0) + d.rightSelf[0]! - d.leftSelf[0]!).toBeCloseTo(0, 12);
  });
});

describe('top table', () => {
  it('computes self and total without double counting recursion', () => {
    const rows = computeTop(tree);
    const hot = rows.find((r) => r.name === 'hot')!;
    expect(hot.self).toBe(85);
    expect(hot.total).toBe(85);
    const main = rows.find((r) => r.name === 'main')!;
    expect(main.total).toBe(100);
    expect(main.self).toBe(5);
    expect(rows[0]!.name).toBe('hot');
    expect(sortTop(rows, 'total', 'desc')[0]!.name).toBe('main');
    expect(sortTop(rows, 'name', 'asc').map((r) => r.name)).toEqual(['a', 'b', 'hot', 'main']);
    expect(filterTop(rows, 'libhot').map((r) => r.name)).toEqual(['hot']);
  });
});

describe('sandwich', () => {
  it('merges callers and callees across call sites', () => {
    const names = tree.functions.name;
    const s = sandwichFor(tree, (f) => names[f] === 'b');
    expect(s.total).toBe(30);
    expect(s.self).toBe(10);
    const ce = s.callees;
    expect(ce.total[0]).toBe(30);
    expect(funcName(ce, 0)).toBe('b');
    expect(ce.self[0]).toBe(10);
    expect(ce.total[nodeAtPath(ce, ['hot']).node]).toBe(20);
    const cr = s.callers;
    expect(funcName(cr, 0)).toBe('b');
    expect(cr.total[nodeAtPath(cr, ['a', 'main']).node]).toBe(20);
    expect(cr.total[nodeAtPath(cr, ['main']).node]).toBe(10);
  });

  it('counts a recursive function once', () => {
    const names = tree.functions.name;
    const s = sandwichFor(tree, (f) => names[f] === 'hot');
    expect(s.total).toBe(85);
    expect(s.callees.total[0]).toBe(85);
    expect(s.callees.total[nodeAtPath(s.callees, ['hot']).node]).toBe(15);
    expect(s.callers.total[nodeAtPath(s.callers, ['a', 'main']).node]).toBe(50);
    expect(s.callers.total[nodeAtPath(s.callers, ['b', 'a', 'main']).node]).toBe(20);
    expect(s.callers.total[nodeAtPath(s.callers, ['main']).node]).toBe(15);
  });
});

describe('URL state', () => {
  it('round-trips every field', () => {
    const s: ViewState = {
      query: '{node="web-1", comm=~"ng.*"}',
      from: '1700000000000',
      to: 'now',
      view: 'diff',
      orientation: 'flame',
      focus: ['main', 'a;b', 'std::vector<int>::push_back(int&&)', 'x&y=z'],
      search: '/^h.t$/i',
      fn: 'hot',
      compare: { query: '{node="web-2"}', from: 'now-2h', to: 'now-1h' },
      groupBy: ['node', 'comm'],
      topBy: 'binary',
    };
    expect(decodeState(encodeState(s))).toEqual(s);
    expect(decodeState('?' + encodeState(s))).toEqual(s);
    expect(decodeState(encodeState(DEFAULT_STATE))).toEqual(DEFAULT_STATE);
    expect(encodeState(DEFAULT_STATE)).toBe('');
    expect(decodeState('view=bogus&focus=%5B1').view).toBe('flame');
  });
});

describe('selector completion and helpers', () => {
  it('knows whether the cursor is on a name or a value', () => {
    expect(completionContext('', 0)).toMatchObject({ kind: 'name', prefix: '' });
    expect(completionContext('{no', 3)).toMatchObject({ kind: 'name', prefix: 'no' });
    expect(completionContext('{node="we', 9)).toMatchObject({ kind: 'value', name: 'node', prefix: 'we' });
    expect(completionContext('{node="web-1", co', 17)).toMatchObject({ kind: 'name', prefix: 'co' });
    expect(completionContext('{node="web-1"', 13)).toBeNull();
    const a = applyCompletion('{no', completionContext('{no', 3)!, 'node');
    expect(a.text).toBe('{node="');
    const b = applyCompletion(a.text, completionContext(a.text, a.cursor)!, 'web-1');
    expect(b.text).toBe('{node="web-1"}');
  });

  it('colours are stable hashes within a kind family', () => {
    // FNV-1a 32-bit reference vectors (from the FNV authors' test suite): the
    // same colours on every machine and every reload.
    expect(hashString('')).toBe(0x811c9dc5);
    expect(hashString('a')).toBe(0xe40c292c);
    expect(hashString('foobar')).toBe(0xbf9cf968);
    // Different binaries get different hues, all inside the native family.
    const hues = new Set(Array.from({ length: 20 }, (_, i) => frameColor('native', `/usr/lib/lib${i}.so`, 'f', 'light')).map((c) => Number(/hsl\((\d+)/.exec(c)![1])));
    expect(hues.size).toBeGreaterThan(10);
    const hue = (c: string): number => Number(/hsl\((\d+)/.exec(c)![1]);
    expect(hue(frameColor('kernel', '[kernel.kallsyms]', 'x', 'light'))).toBeGreaterThanOrEqual(200);
    expect(hue(frameColor('native', '/lib/x.so', 'x', 'light'))).toBeLessThanOrEqual(50);
  });

  it('resolves relative and absolute times', () => {
    expect(resolveTime('now-1h', 10_000_000)).toBe(10_000_000 - 3_600_000);
    expect(resolveTime('now', 5)).toBe(5);
    expect(resolveTime('1700000000000', 0)).toBe(1700000000000);
    expect(() => resolveTime('yesterday-ish', 0)).toThrow();
  });
});

describe('grouped trees, binary roll-up, middle truncation', () => {
  // A grouped tree as the server sends it: label nodes (kind 'label') under the root.
  const grouped = (() => {
    const r = profileFromStacks(
      [
        { frames: ['comm=gzip', 'main', '0x1a'], value: 30 },
        { frames: ['comm=gzip', 'main', '0x2b'], value: 20 },
        { frames: ['comm=sha', 'main', 'sha_block'], value: 50 },
      ],
      (n) => (n.startsWith('comm=') ? { binary: '', kind: 'label' } : n === 'sha_block' ? { binary: '/usr/bin/sha', kind: 'native' } : { binary: '/usr/bin/gzip', kind: 'native' }),
    );
    r.groupBy = ['comm'];
    return buildCallTree(r);
  })();

  it('top rows are per group and carry the group value', () => {
    const rows = computeTop(grouped);
    const mains = rows.filter((r) => r.name === 'main').map((r) => [r.group, r.total]);
    expect(mains).toEqual(expect.arrayContaining([[['gzip'], 50], [['sha'], 50]]));
    expect(rows.some((r) => r.name.startsWith('comm='))).toBe(false);
  });

  it('rolls frames up by binary, counting a stack once per binary', () => {
    const rows = computeTop(grouped, 'binary');
    const gz = rows.find((r) => r.name === 'gzip')!;
    expect(gz).toMatchObject({ binary: '/usr/bin/gzip', self: 50, total: 50, group: ['gzip'] });
    // main is in /usr/bin/gzip in both groups.
    expect(sortTop(rows, 'binary', 'asc').map((r) => `${r.group[0]}:${r.name}`)).toEqual(['gzip:gzip', 'sha:gzip', 'sha:sha']);
    const plain = computeTop(tree, 'binary');
    expect(plain.find((r) => r.name === 'libhot.so')).toMatchObject({ self: 85, total: 85 });
    expect(plain.find((r) => r.name === 'app')).toMatchObject({ self: 15, total: 100 });
  });

  it('search matches binary file names and label values', () => {
    expect(searchTree(grouped, compileSearch('comm=gz').matcher!).share).toBeCloseTo(0.5, 9);
    // "gzip" is also the binary of main under comm=sha.
    expect(searchTree(grouped, compileSearch('gzip').matcher!).share).toBeCloseTo(1, 9);
    expect(searchTree(grouped, compileSearch('/^sha$/').matcher!).share).toBeCloseTo(0.5, 9);
    expect(searchTree(tree, compileSearch('libhot').matcher!).share).toBeCloseTo(0.85, 9);
  });

  it('truncates in the middle and keeps the file name', () => {
    const p = '/usr/lib/x86_64-linux-gnu/libcrypto.so.3';
    const t = truncateMiddle(p, 24);
    expect(t).toHaveLength(24);
    expect(t.endsWith('libcrypto.so.3')).toBe(true);
    expect(t.startsWith('/usr/')).toBe(true);
    expect(truncateMiddle('short', 24)).toBe('short');
  });
});

describe('selector edits, times and the timeline scale', () => {
  it('toggles one label equality and keeps other matchers', () => {
    expect(toggleEquality('', 'comm', 'node')).toBe('{comm="node"}');
    expect(toggleEquality('{node=~"web-.*", comm="a"}', 'comm', 'b')).toBe('{node=~"web-.*", comm="b"}');
    expect(toggleEquality('{comm="b"}', 'comm', 'b')).toBe('');
    expect(equalities('{a="1", b!="2", c="x\\"y"}')).toEqual(new Map([['a', '1'], ['c', 'x"y']]));
  });

  it('the default Compare baseline is the preceding window of the same length', () => {
    expect(precedingWindow('now-1h', 'now', 0)).toEqual({ from: 'now-2h', to: 'now-1h' });
    expect(precedingWindow('1000', '4000', 0)).toEqual({ from: '-2000', to: '1000' });
  });

  it('range boxes read and write local date-times', () => {
    const ms = new Date(2026, 10, 30, 9, 15, 2).getTime();
    expect(formatLocal(ms)).toBe('2026-11-30 09:15:02');
    expect(resolveTime('2026-11-30 09:15:02', 0)).toBe(ms);
  });

  it('ticks carry dates when the range spans days', () => {
    const to = new Date(2026, 10, 30, 12, 0, 0).getTime();
    const day = timeTicks(to - 86_400_000, to);
    expect(day.length).toBeGreaterThan(2);
    expect(day.some((t) => /^Nov 30 /.test(t.label))).toBe(true);
    expect(day.some((t) => /^Nov 29 /.test(t.label))).toBe(true);
    const hour = timeTicks(to - 3_600_000, to);
    expect(hour.every((t) => /^\d\d:\d\d$/.test(t.label))).toBe(true);
  });

  it('converts CPU ns per step to cores and rounds the axis', () => {
    expect(toRate(2e9, 1000, 'nanoseconds')).toBe(2);
    expect(toRate(30e9, 10_000, 'nanoseconds')).toBe(3);
    expect(niceAxis(1.7)).toEqual({ max: 2, step: 1 });
    expect(niceAxis(0)).toEqual({ max: 1, step: 0.5 });
  });
});
