// CPU over time: stacked series (one per group) in cores, with a y-axis,
// local-time ticks (dated when the range spans days) and a hover tooltip
// with the value of each series. Drag selects a range; Shift+drag (or
// Alt+drag) picks the Compare baseline. The selection and the baseline are
// shaded when they lie in the drawn range.
import type { TimelineResponse } from '../../../src/profile/api-types.js';
import { hashString, type Scheme } from '../profile-logic/colors.js';
import { formatLocal, timeTicks } from '../profile-logic/time.js';
import { formatRate, niceAxis, rateUnit, toRate } from '../profile-logic/timeline-scale.js';

const PAD_LEFT = 52;
const PAD_BOTTOM = 16;
const PAD_TOP = 6;

export interface TimelineSeries {
  label: string;
  values: number[];
  color: string;
}

export interface TimelineCallbacks {
  onSelect(fromMs: number, toMs: number): void;
  onBaseline(fromMs: number, toMs: number): void;
}

export class Timeline {
  readonly canvas: HTMLCanvasElement;
  private readonly tip: HTMLDivElement;
  private readonly legend: HTMLDivElement;
  private data: TimelineResponse | null = null;
  private series: TimelineSeries[] = [];
  private from = 0;
  private to = 1;
  private selection: [number, number] | null = null;
  private baseline: [number, number] | null = null;
  private drag: { x0: number; x1: number; baseline: boolean } | null = null;
  private hoverX = -1;
  private yMax = 1;
  scheme: Scheme = 'light';

  constructor(
    container: HTMLElement,
    private readonly cb: TimelineCallbacks,
  ) {
    this.canvas = document.createElement('canvas');
    this.canvas.id = 'timeline';
    this.canvas.setAttribute('role', 'img');
    this.canvas.setAttribute('aria-label', 'CPU over time; drag to select a range, Shift+drag to pick the Compare baseline');
    this.canvas.title = 'Drag: select a range · Shift+drag: Compare baseline';
    this.tip = document.createElement('div');
    this.tip.id = 'timeline-tip';
    this.tip.hidden = true;
    this.legend = document.createElement('div');
    this.legend.id = 'timeline-legend';
    container.append(this.canvas, this.legend, this.tip);
    this.canvas.addEventListener('mousemove', (e) => {
      if (this.drag) return;
      this.hoverX = this.xOf(e);
      this.draw();
      this.showTip(e);
    });
    this.canvas.addEventListener('mouseleave', () => {
      this.hoverX = -1;
      this.tip.hidden = true;
      this.draw();
    });
    this.canvas.addEventListener('mousedown', (e) => {
      e.preventDefault();
      const x = this.xOf(e);
      this.drag = { x0: x, x1: x, baseline: e.shiftKey || e.altKey };
      this.hoverX = -1;
      this.tip.hidden = true;
      const move = (ev: MouseEvent): void => {
        if (this.drag) this.drag.x1 = this.xOf(ev);
        this.draw();
      };
      const up = (ev: MouseEvent): void => {
        window.removeEventListener('mousemove', move);
        window.removeEventListener('mouseup', up);
        const d = this.drag;
        this.drag = null;
        if (!d) return;
        d.x1 = this.xOf(ev);
        const a = Math.min(d.x0, d.x1);
        const b = Math.max(d.x0, d.x1);
        this.draw();
        if (b - a < 3) return;
        if (d.baseline) this.cb.onBaseline(this.timeAt(a), this.timeAt(b));
        else this.cb.onSelect(this.timeAt(a), this.timeAt(b));
      };
      window.addEventListener('mousemove', move);
      window.addEventListener('mouseup', up);
    });
  }

  private plotWidth(): number {
    return Math.max(10, (this.canvas.clientWidth || 600) - PAD_LEFT - 4);
  }

  private xOf(e: MouseEvent): number {
    const r = this.canvas.getBoundingClientRect();
    return Math.max(0, Math.min(this.plotWidth(), e.clientX - r.left - PAD_LEFT));
  }

  /** Unix ms at plot x (px). */
  timeAt(px: number): number {
    return Math.round(this.from + ((this.to - this.from) * px) / this.plotWidth());
  }

  /** Plot x (px) of a time; for tests and the debug hook. */
  xAt(ms: number): number {
    return PAD_LEFT + ((ms - this.from) / (this.to - this.from)) * this.plotWidth();
  }

  setData(data: TimelineResponse | null, fromMs: number, toMs: number, colorOf: (label: string) => string): void {
    this.data = data;
    this.from = fromMs;
    this.to = toMs;
    this.series = [];
    if (data && data.stepMs > 0) {
      const unit = data.sampleType.unit;
      const label = (l: Record<string, string>): string =>
        data.groupBy.length === 0 ? 'all' : data.groupBy.map((g) => `${g}=${l[g] ?? ''}`).join(', ');
      for (const s of data.series) {
        const lab = label(s.labels);
        this.series.push({ label: lab, values: s.values.map((v) => toRate(v, data.stepMs, unit)), color: colorOf(lab) });
      }
    }
    this.renderLegend();
    this.draw();
  }

  setMarks(selection: [number, number] | null, baseline: [number, number] | null): void {
    this.selection = selection;
    this.baseline = baseline;
  }

  private renderLegend(): void {
    this.legend.replaceChildren();
    const d = this.data;
    if (!d || d.groupBy.length === 0) return;
    const shown = this.series.slice(0, 12);
    for (const s of shown) {
      const item = document.createElement('span');
      const sw = document.createElement('span');
      sw.className = 'swatch';
      sw.style.background = s.color;
      item.append(sw, document.createTextNode(s.label));
      this.legend.append(item);
    }
    if (this.series.length > shown.length) {
      const more = document.createElement('span');
      more.className = 'muted';
      more.textContent = `+${this.series.length - shown.length} more`;
      this.legend.append(more);
    }
  }

  private stepIndexAt(px: number): number {
    const d = this.data;
    if (!d || d.timestampsMs.length === 0) return -1;
    const t = this.timeAt(px);
    const i = Math.floor((t - d.timestampsMs[0]!) / d.stepMs);
    return i >= 0 && i < d.timestampsMs.length ? i : -1;
  }

  private showTip(e: MouseEvent): void {
    const d = this.data;
    const i = this.stepIndexAt(this.hoverX);
    if (!d || i < 0) {
      this.tip.hidden = true;
      return;
    }
    const unit = rateUnit(d.sampleType.type, d.sampleType.unit);
    const t0 = d.timestampsMs[i]!;
    const head = document.createElement('div');
    head.className = 'tt-time';
    head.textContent = `${formatLocal(t0)} – ${formatLocal(t0 + d.stepMs).slice(11)}`;
    const table = document.createElement('table');
    let sum = 0;
    const rows = this.series.map((s) => ({ s, v: s.values[i] ?? 0 })).sort((a, b) => b.v - a.v);
    for (const { s, v } of rows.slice(0, 15)) {
      sum += v;
      const tr = table.insertRow();
      tr.dataset.series = s.label;
      tr.dataset.value = String(v);
      const sw = document.createElement('span');
      sw.className = 'swatch';
      sw.style.background = s.color;
      const c0 = tr.insertCell();
      c0.append(sw, document.createTextNode(s.label));
      tr.insertCell().textContent = `${formatRate(v)} ${unit}`;
    }
    for (const { v } of rows.slice(15)) sum += v;
    if (rows.length > 1) {
      const tr = table.insertRow();
      tr.className = 'tt-sum';
      tr.insertCell().textContent = rows.length > 15 ? `total (${rows.length} series)` : 'total';
      tr.insertCell().textContent = `${formatRate(sum)} ${unit}`;
    }
    this.tip.replaceChildren(head, table);
    this.tip.dataset.timeMs = String(t0);
    this.tip.hidden = false;
    const w = this.tip.offsetWidth;
    let x = e.clientX + 14;
    if (x + w > window.innerWidth - 4) x = Math.max(4, e.clientX - w - 14);
    this.tip.style.left = `${x}px`;
    this.tip.style.top = `${e.clientY + 14}px`;
  }

  draw(): void {
    const dpr = window.devicePixelRatio || 1;
    const w = this.canvas.clientWidth || 600;
    const h = this.canvas.clientHeight || 96;
    if (this.canvas.width !== Math.round(w * dpr) || this.canvas.height !== Math.round(h * dpr)) {
      this.canvas.width = Math.round(w * dpr);
      this.canvas.height = Math.round(h * dpr);
    }
    const ctx = this.canvas.getContext('2d');
    if (!ctx) return;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const css = getComputedStyle(this.canvas);
    const muted = css.getPropertyValue('--muted').trim() || '#888';
    const border = css.getPropertyValue('--border').trim() || '#ccc';
    const pw = this.plotWidth();
    const ph = h - PAD_TOP - PAD_BOTTOM;
    const span = this.to - this.from;
    const d = this.data;
    // Stack totals per step -> y scale.
    const n = d ? d.timestampsMs.length : 0;
    const stackTop = new Float64Array(n);
    for (const s of this.series) for (let i = 0; i < n; i++) stackTop[i]! += s.values[i] ?? 0;
    let max = 0;
    for (let i = 0; i < n; i++) if (stackTop[i]! > max) max = stackTop[i]!;
    const axis = niceAxis(max);
    this.yMax = axis.max;
    const y = (v: number): number => PAD_TOP + ph - (v / axis.max) * ph;
    const x = (ms: number): number => PAD_LEFT + ((ms - this.from) / span) * pw;
    // Grid and y-axis labels.
    ctx.font = '10px system-ui, sans-serif';
    ctx.fillStyle = muted;
    ctx.strokeStyle = border;
    ctx.lineWidth = 1;
    ctx.textBaseline = 'middle';
    const unit = d ? rateUnit(d.sampleType.type, d.sampleType.unit) : 'cores';
    for (let v = 0; v <= axis.max + 1e-9; v += axis.step) {
      const yy = Math.round(y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(PAD_LEFT, yy);
      ctx.lineTo(PAD_LEFT + pw, yy);
      ctx.stroke();
      const label = formatRate(v);
      ctx.fillText(label, PAD_LEFT - 6 - ctx.measureText(label).width, yy);
    }
    ctx.save();
    ctx.translate(10, PAD_TOP + ph / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = 'center';
    ctx.fillText(unit, 0, 0);
    ctx.restore();
    // Stacked series as steps: each step drawn across its whole width (no comb).
    if (d && span > 0 && n > 0) {
      const base = new Float64Array(n);
      for (const s of this.series) {
        ctx.fillStyle = s.color;
        for (let i = 0; i < n; i++) {
          const v = s.values[i] ?? 0;
          if (v <= 0) continue;
          // Whole pixels: adjacent steps meet without anti-aliased seams.
          const x0 = Math.max(PAD_LEFT, Math.round(x(d.timestampsMs[i]!)));
          const x1 = Math.min(PAD_LEFT + pw, Math.round(x(d.timestampsMs[i]! + d.stepMs)));
          if (x1 <= x0) continue;
          const y0 = y(base[i]!);
          const y1 = y(base[i]! + v);
          ctx.fillRect(x0, y1, x1 - x0, y0 - y1);
          base[i]! += v;
        }
      }
    }
    // Time ticks along the bottom, local time, dated over days.
    ctx.textBaseline = 'bottom';
    ctx.fillStyle = muted;
    let lastRight = -Infinity;
    const drawnTicks: string[] = [];
    for (const t of timeTicks(this.from, this.to, Math.max(2, Math.floor(pw / 90)))) {
      const xx = x(t.ms);
      ctx.fillRect(Math.round(xx), PAD_TOP + ph, 1, 3);
      const tw = ctx.measureText(t.label).width;
      const lx = Math.min(Math.max(xx - tw / 2, PAD_LEFT), PAD_LEFT + pw - tw);
      if (lx < lastRight + 6) continue;
      ctx.fillText(t.label, lx, h);
      drawnTicks.push(t.label);
      lastRight = lx + tw;
    }
    // Marks: selection (accent) and baseline (orange) when inside the range.
    const mark = (r: [number, number] | null, color: string): void => {
      if (!r) return;
      const a = Math.max(PAD_LEFT, x(r[0]));
      const b = Math.min(PAD_LEFT + pw, x(r[1]));
      if (b <= a) return;
      ctx.fillStyle = color;
      ctx.fillRect(a, PAD_TOP, b - a, ph);
    };
    mark(this.baseline, 'rgba(255,150,40,0.22)');
    if (this.selection && (this.selection[0] > this.from || this.selection[1] < this.to)) mark(this.selection, 'rgba(90,140,255,0.18)');
    if (this.drag) {
      ctx.fillStyle = this.drag.baseline ? 'rgba(255,150,40,0.35)' : 'rgba(90,140,255,0.3)';
      const a = Math.min(this.drag.x0, this.drag.x1);
      ctx.fillRect(PAD_LEFT + a, PAD_TOP, Math.abs(this.drag.x1 - this.drag.x0), ph);
    }
    if (this.hoverX >= 0 && !this.drag) {
      ctx.fillStyle = css.getPropertyValue('--fg').trim() || '#000';
      ctx.fillRect(PAD_LEFT + Math.round(this.hoverX), PAD_TOP, 1, ph);
    }
    this.canvas.dataset.yMax = String(this.yMax);
    this.canvas.dataset.unit = unit;
    this.canvas.dataset.ticks = JSON.stringify(drawnTicks);
  }
}

/** A stable colour per series label. */
export function seriesColor(label: string, scheme: Scheme): string {
  const h = hashString(label);
  return `hsl(${h % 360} ${55 + (h % 20)}% ${scheme === 'dark' ? 52 : 58}%)`;
}
