// Samples over time as bars; dragging selects a sub-range.
import type { TimelineResponse } from '../../../src/profile/api-types.js';

export class Timeline {
  readonly canvas: HTMLCanvasElement;
  private data: TimelineResponse | null = null;
  private from = 0;
  private to = 1;
  private drag: { x0: number; x1: number } | null = null;

  constructor(
    container: HTMLElement,
    private readonly onSelect: (fromMs: number, toMs: number) => void,
  ) {
    this.canvas = document.createElement('canvas');
    this.canvas.id = 'timeline';
    this.canvas.setAttribute('role', 'img');
    this.canvas.setAttribute('aria-label', 'Samples over time; drag to select a range');
    container.appendChild(this.canvas);
    this.canvas.addEventListener('mousedown', (e) => {
      const x = this.xOf(e);
      this.drag = { x0: x, x1: x };
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
        const w = this.canvas.clientWidth;
        const t = (px: number): number => Math.round(this.from + ((this.to - this.from) * px) / w);
        this.onSelect(t(a), t(b));
      };
      window.addEventListener('mousemove', move);
      window.addEventListener('mouseup', up);
    });
  }

  private xOf(e: MouseEvent): number {
    const r = this.canvas.getBoundingClientRect();
    return Math.max(0, Math.min(r.width, e.clientX - r.left));
  }

  setData(data: TimelineResponse | null, fromMs: number, toMs: number): void {
    this.data = data;
    this.from = fromMs;
    this.to = toMs;
    this.draw();
  }

  draw(): void {
    const dpr = window.devicePixelRatio || 1;
    const w = this.canvas.clientWidth || 600;
    const h = this.canvas.clientHeight || 48;
    this.canvas.width = Math.round(w * dpr);
    this.canvas.height = Math.round(h * dpr);
    const ctx = this.canvas.getContext('2d');
    if (!ctx) return;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const css = getComputedStyle(this.canvas);
    const d = this.data;
    const span = this.to - this.from;
    if (d && d.values.length > 0 && span > 0) {
      const max = Math.max(...d.values, 1);
      ctx.fillStyle = css.getPropertyValue('--accent').trim() || '#4a7';
      const bw = Math.max(1, (d.stepMs / span) * w - 1);
      d.values.forEach((v, i) => {
        const x = ((d.timestampsMs[i]! - this.from) / span) * w;
        const bh = (v / max) * (h - 14);
        ctx.fillRect(x, h - 12 - bh, bw, bh);
      });
    }
    ctx.fillStyle = css.getPropertyValue('--muted').trim() || '#888';
    ctx.font = '10px sans-serif';
    ctx.textBaseline = 'bottom';
    const fmt = (ms: number): string => new Date(ms).toISOString().slice(11, 19);
    ctx.fillText(fmt(this.from), 2, h);
    const right = fmt(this.to);
    ctx.fillText(right, w - ctx.measureText(right).width - 2, h);
    if (this.drag) {
      ctx.fillStyle = 'rgba(90,140,255,0.3)';
      const a = Math.min(this.drag.x0, this.drag.x1);
      ctx.fillRect(a, 0, Math.abs(this.drag.x1 - this.drag.x0), h);
    }
  }
}
