// Time range strings as kept in the URL: "now", "now-15m", "now-1h", "now-24h",
// "now-7d", or absolute Unix milliseconds.
export const PRESETS: readonly { label: string; from: string }[] = [
  { label: '15 min', from: 'now-15m' },
  { label: '1 h', from: 'now-1h' },
  { label: '24 h', from: 'now-24h' },
];

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function resolveTime(s: string, nowMs: number): number {
  const t = s.trim();
  if (t === 'now' || t === '') return nowMs;
  const rel = /^now-(\d+(?:\.\d+)?)([smhd])$/.exec(t);
  if (rel) return Math.round(nowMs - Number(rel[1]) * UNIT_MS[rel[2]!]!);
  if (/^\d+$/.test(t)) return Number(t);
  const parsed = Date.parse(t);
  if (!Number.isNaN(parsed)) return parsed;
  throw new Error(`bad time "${s}"`);
}

export function isValidTime(s: string): boolean {
  try {
    resolveTime(s, 0);
    return true;
  } catch {
    return false;
  }
}

/** A step giving roughly `buckets` points across the range, rounded to a nice value. */
export function timelineStep(fromMs: number, toMs: number, buckets = 120): number {
  const raw = Math.max(1000, (toMs - fromMs) / buckets);
  const nice = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400].map((s) => s * 1000);
  for (const n of nice) if (n >= raw) return n;
  return nice[nice.length - 1]!;
}

export function formatRange(from: string, to: string): string {
  if (to === 'now' && from.startsWith('now-')) return `last ${from.slice(4)}`;
  const f = (s: string): string => (/^\d+$/.test(s) ? new Date(Number(s)).toISOString().replace('.000Z', 'Z') : s);
  return `${f(from)} → ${f(to)}`;
}
