// Timeline units and axis: per-step values as rates (cores for CPU time).

/** Per-step values -> rate: cores for CPU nanoseconds, else units per second. */
export function toRate(value: number, stepMs: number, unit: string): number {
  return unit === 'nanoseconds' ? value / (stepMs * 1e6) : value / (stepMs / 1000);
}

export function rateUnit(type: string, unit: string): string {
  // No samples at all: the axis is still CPU, the default kind of profile.
  if (type === '' && unit === '') return 'cores';
  if (unit === 'nanoseconds') return type === 'cpu' || type === '' ? 'cores' : `${type} s/s`;
  return `${unit === 'count' || unit === '' ? type || 'samples' : unit}/s`;
}

/** A round axis maximum and step for values up to `max`. */
export function niceAxis(max: number, ticks = 3): { max: number; step: number } {
  if (!(max > 0)) return { max: 1, step: 0.5 };
  const raw = max / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  return { max: Math.ceil(max / step - 1e-9) * step, step };
}

export function formatRate(v: number): string {
  if (v === 0) return '0';
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  if (v >= 0.01) return v.toFixed(2);
  return v.toPrecision(2);
}
