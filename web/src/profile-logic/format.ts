import type { SampleTypeJson } from '../../../src/profile/api-types.js';

export function formatPercent(part: number, whole: number): string {
  if (whole <= 0) return '0%';
  const p = (100 * part) / whole;
  return `${p >= 10 ? p.toFixed(1) : p.toFixed(2)}%`;
}

export function formatValue(v: number, st: SampleTypeJson): string {
  if (st.unit === 'nanoseconds') {
    const s = v / 1e9;
    if (s >= 1) return `${s.toFixed(s >= 100 ? 0 : 2)} s`;
    if (v >= 1e6) return `${(v / 1e6).toFixed(1)} ms`;
    if (v >= 1e3) return `${(v / 1e3).toFixed(0)} µs`;
    return `${Math.round(v)} ns`;
  }
  return `${Math.round(v).toLocaleString('en-US')}${st.unit && st.unit !== 'count' ? ' ' + st.unit : ''}`;
}

export function formatDelta(d: number): string {
  const pp = d * 100;
  return `${pp >= 0 ? '+' : ''}${pp.toFixed(2)} pp`;
}
