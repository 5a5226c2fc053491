// Canvas flame graph. Culls with layoutVisible (off-screen or < 1px subtrees
// are never visited), hit-tests by row with a binary search, and truncates
// labels with a monospace character width measured once.
import type { CallTree } from '../profile-logic/tree.js';
import { funcBinary, funcKind, funcName } from '../profile-logic/tree.js';
import { allocVisible, computeStarts, hitTest, layoutVisible, type VisibleFrames } from '../profile-logic/layout.js';
import { diffColor, frameColor, type Scheme } from '../profile-logic/colors.js';
import type { DiffShares } from '../profile-logic/diff.js';
import { diffScale } from '../profile-logic/diff.js';
import type { Orientation } from '../profile-logic/url-state.js';

export const ROW_HEIGHT = 18;
const FONT = '11px ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace';

export interface DrawnFrame {
  node: number;
  name: string;
  binary: string;
  kind: string;
  depth: number;
  /** CSS pixels relative to the canvas. */
  x: number;
  y: number;
  width: number;
  height: number;
  self: number;
  total: number;
  matched: boolean;
  dimmed: boolean;
  /** Diff graphs: change in share of total (right - left). */
  delta?: number;
}

export interface FlameGraphOptions {
  label: string;
  onFocus?: (node: number) => void;
  onHover?: (node: number, ev: MouseEvent) => void;
  onLeave?: () => void;
  onContext?: (node: number) => void;
}

export class FlameGraphCanvas {
  readonly canvas: HTMLCanvasElement;
  private readonly ctx: CanvasRenderingContext2D;
  private tree: CallTree | null = null;
  private starts: Float64Array = new Float64Array(0);
  private weight: ArrayLike<number> = [];
  private vis: VisibleFrames = allocVisible(1, 1);
  private funcColors: string[] = [];
  private diff: DiffShares | null = null;
  private match: Uint8Array | null = null;
  private highlightFunc = -1;
  private focus = 0;
  private x0 = 0;
  private x1 = 1;
  private orientation: Orientation = 'icicle';
  private scheme: Scheme = 'light';
  private charW = 7;
  private widthPx = 0;
  private heightPx = 0;
  private hovered = -1;
  lastDrawMs = 0;
  drawCount = 0;

  constructor(
    readonly container: HTMLElement,
    private readonly opts: FlameGraphOptions,
  ) {
    this.canvas = document.createElement('canvas');
    this.canvas.className = 'flame-canvas';
    this.canvas.setAttribute('role', 'img');
    this.canvas.setAttribute('aria-label', opts.label);
    this.canvas.dataset.graph = opts.label;
    container.appendChild(this.canvas);
    const ctx = this.canvas.getContext('2d', { alpha: false });
    if (!ctx) throw new Error('no 2d canvas');
    this.ctx = ctx;
    this.canvas.addEventListener('mousemove', (e) => this.onMove(e));
    this.canvas.addEventListener('mouseleave', () => {
      this.hovered = -1;
      this.opts.onLeave?.();
    });
    this.canvas.addEventListener('click', (e) => {
      const node = this.nodeAt(e);
      if (node >= 0) this.opts.onFocus?.(node);
    });
    this.canvas.addEventListener('contextmenu', (e) => {
      const node = this.nodeAt(e);
      if (node >= 0 && this.opts.onContext) {
        e.preventDefault();
        this.opts.onContext(node);
      }
    });
    this.canvas.addEventListener(
      'wheel',
      (e) => {
        if (!e.ctrlKey && !e.metaKey) return;
        e.preventDefault();
        const r = this.canvas.getBoundingClientRect();
        this.zoomAround((e.clientX - r.left) / Math.max(1, this.widthPx), e.deltaY > 0 ? 1.25 : 0.8);
      },
      { passive: false },
    );
  }

  setTree(tree: CallTree, diff: DiffShares | null, scheme: Scheme): void {
    this.tree = tree;
    this.diff = diff;
    this.scheme = scheme;
    this.weight = diff ? diff.weight : tree.total;
    this.starts = computeStarts(tree, this.weight);
    this.vis = allocVisible(tree.size + tree.maxDepth + 1, tree.maxDepth);
    this.recolor();
    this.focus = 0;
    this.resetZoom();
  }

  /** Forgets the tree and paints the canvas blank (a failed load leaves nothing stale). */
  clear(): void {
    this.tree = null;
    this.diff = null;
    this.match = null;
    this.vis = allocVisible(1, 1);
    this.draw();
  }

  setScheme(scheme: Scheme): void {
    this.scheme = scheme;
    this.recolor();
  }

  private recolor(): void {
    const t = this.tree;
    if (!t) return;
    // Filled lazily in draw(): only functions that get drawn need a colour.
    this.funcColors = new Array<string>(t.functions.name.length);
  }

  private colorOf(f: number): string {
    const fn = this.tree!.functions;
    const c = frameColor(fn.kind[f] ?? 'unknown', fn.binary[f] ?? '', fn.name[f] ?? '', this.scheme);
    this.funcColors[f] = c;
    return c;
  }

  setFocus(node: number): void {
    if (!this.tree) return;
    this.focus = node >= 0 && node < this.tree.size ? node : 0;
    this.resetZoom();
  }

  getFocus(): number {
    return this.focus;
  }

  setSearch(match: Uint8Array | null): void {
    this.match = match;
  }

  setHighlightFunc(func: number): void {
    this.highlightFunc = func;
  }

  setOrientation(o: Orientation): void {
    this.orientation = o;
  }

  resetZoom(): void {
    const t = this.tree;
    if (!t) return;
    this.x0 = this.starts[this.focus]!;
    this.x1 = this.x0 + this.weight[this.focus]!;
  }

  /** Zooms the horizontal range around a point (0..1 across the canvas). */
  zoomAround(at: number, factor: number): void {
    const t = this.tree;
    if (!t) return;
    const span = this.x1 - this.x0;
    const fx0 = this.starts[this.focus]!;
    const fx1 = fx0 + this.weight[this.focus]!;
    const pivot = this.x0 + span * at;
    let n0 = pivot - (pivot - this.x0) * factor;
    let n1 = pivot + (this.x1 - pivot) * factor;
    if (n1 - n0 > fx1 - fx0) {
      n0 = fx0;
      n1 = fx1;
    }
    if (n0 < fx0) [n0, n1] = [fx0, fx0 + (n1 - n0)];
    if (n1 > fx1) [n0, n1] = [fx1 - (n1 - n0), fx1];
    this.setRange(n0, n1);
  }

  setRange(x0: number, x1: number): void {
    this.x0 = x0;
    this.x1 = Math.max(x1, x0 + 1e-12);
    this.draw();
  }

  getRange(): [number, number] {
    return [this.x0, this.x1];
  }

  /** Lays out and paints; returns the time it took in ms. */
  draw(): number {
    const t0 = performance.now();
    const t = this.tree;
    const ctx = this.ctx;
    const dpr = window.devicePixelRatio || 1;
    const cssW = Math.max(100, Math.floor(this.container.clientWidth));
    const cssH = t ? (t.maxDepth + 1) * ROW_HEIGHT : ROW_HEIGHT;
    if (cssW !== this.widthPx || cssH !== this.heightPx || this.canvas.width !== Math.round(cssW * dpr)) {
      this.widthPx = cssW;
      this.heightPx = cssH;
      this.canvas.width = Math.round(cssW * dpr);
      this.canvas.height = Math.round(cssH * dpr);
      this.canvas.style.width = `${cssW}px`;
      this.canvas.style.height = `${cssH}px`;
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const styles = getComputedStyle(this.container);
    ctx.fillStyle = styles.getPropertyValue('--bg').trim() || '#fff';
    ctx.fillRect(0, 0, cssW, cssH);
    if (!t) return 0;
    ctx.font = FONT;
    ctx.textBaseline = 'middle';
    this.charW = ctx.measureText('MMMMMMMMMM').width / 10 || 7;
    const vis = layoutVisible(t, this.starts, this.weight, { focus: this.focus, x0: this.x0, x1: this.x1, widthPx: cssW }, this.vis);
    const textColor = this.scheme === 'dark' ? '#e8e8e8' : '#111';
    const dimColor = this.scheme === 'dark' ? '#3a3a40' : '#e2e2e6';
    const dimText = this.scheme === 'dark' ? '#888' : '#888';
    const scale = this.diff ? diffScale(this.diff) : 0;
    const match = this.match;
    const flip = this.orientation === 'flame';
    const names = t.functions.name;
    const charW = this.charW;
    let lastFill = '';
    for (let j = 0; j < vis.count; j++) {
      const node = vis.node[j]!;
      const x = vis.x[j]!;
      const w = vis.w[j]!;
      const d = vis.depth[j]!;
      const y = flip ? cssH - (d + 1) * ROW_HEIGHT : d * ROW_HEIGHT;
      const f = t.func[node]!;
      const dim = match !== null && !match[node] && node !== 0;
      let fill: string;
      if (dim) fill = dimColor;
      else if (this.diff) fill = diffColor(this.diff.delta[node]!, scale, this.scheme);
      else fill = f < 0 ? (this.scheme === 'dark' ? '#555' : '#bbb') : (this.funcColors[f] ?? this.colorOf(f));
      if (fill !== lastFill) {
        ctx.fillStyle = fill;
        lastFill = fill;
      }
      ctx.fillRect(x, y, w > 1.5 ? w - 0.5 : w, ROW_HEIGHT - 1);
      if ((match && match[node]) || (this.highlightFunc >= 0 && f === this.highlightFunc) || node === this.hovered) {
        ctx.strokeStyle = node === this.hovered ? textColor : this.scheme === 'dark' ? '#ffd54a' : '#b8860b';
        ctx.lineWidth = 1.5;
        ctx.strokeRect(x + 0.75, y + 0.75, Math.max(0, w - 2), ROW_HEIGHT - 2.5);
      }
      const maxChars = Math.floor((w - 6) / charW);
      if (maxChars >= 3) {
        const name = f < 0 ? 'all' : names[f]!;
        const label = name.length <= maxChars ? name : name.slice(0, maxChars - 1) + '…';
        ctx.fillStyle = dim ? dimText : textColor;
        ctx.fillText(label, x + 3, y + ROW_HEIGHT / 2);
        lastFill = '';
      }
    }
    this.canvas.dataset.frames = String(vis.count);
    this.canvas.dataset.focus = String(this.focus);
    this.drawCount++;
    this.lastDrawMs = performance.now() - t0;
    return this.lastDrawMs;
  }

  private nodeAt(e: MouseEvent): number {
    const r = this.canvas.getBoundingClientRect();
    const x = e.clientX - r.left;
    const y = e.clientY - r.top;
    const row = Math.floor(y / ROW_HEIGHT);
    const depth = this.orientation === 'flame' ? Math.floor(this.heightPx / ROW_HEIGHT) - 1 - row : row;
    const j = hitTest(this.vis, x, depth);
    return j < 0 ? -1 : this.vis.node[j]!;
  }

  private onMove(e: MouseEvent): void {
    const node = this.nodeAt(e);
    if (node !== this.hovered) {
      this.hovered = node;
      this.draw();
    }
    if (node >= 0) this.opts.onHover?.(node, e);
    else this.opts.onLeave?.();
    this.canvas.style.cursor = node >= 0 ? 'pointer' : 'default';
  }

  /** Everything drawn in the last pass, for tests and the debug hook. */
  frames(): DrawnFrame[] {
    const t = this.tree;
    if (!t) return [];
    const out: DrawnFrame[] = [];
    const flip = this.orientation === 'flame';
    for (let j = 0; j < this.vis.count; j++) {
      const node = this.vis.node[j]!;
      const d = this.vis.depth[j]!;
      out.push({
        node,
        name: funcName(t, node),
        binary: funcBinary(t, node),
        kind: funcKind(t, node),
        depth: d,
        x: this.vis.x[j]!,
        y: flip ? this.heightPx - (d + 1) * ROW_HEIGHT : d * ROW_HEIGHT,
        width: this.vis.w[j]!,
        height: ROW_HEIGHT,
        self: t.self[node]!,
        total: t.total[node]!,
        matched: this.match ? this.match[node] === 1 : false,
        dimmed: this.match ? this.match[node] !== 1 && node !== 0 : false,
        ...(this.diff ? { delta: this.diff.delta[node]! } : {}),
      });
    }
    return out;
  }
}
