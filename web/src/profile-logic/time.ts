// Time range strings as kept in the URL: "now", "now-15m", "now-1h", "now-24h",
// "now-7d", absolute Unix milliseconds, or a local date-time as the range
// boxes show it ("2026-11-30 09:15:00").
export const PRESETS: readonly { label: string; from: string }[] = [
  { label: '15 min', from: 'now-15m' },
  { label: '1 h', from: 'now-1h' },
  { label: '24 h', from: 'now-24h' },
  { label: '7 d', from: 'now-7d' },
];

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const LOCAL = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2}))?$/;

export function resolveTime(s: string, nowMs: number): number {
  const t = s.trim();
  if (t === 'now' || t === '') return nowMs;
  const rel = /^now-(\d+(?:\.\d+)?)([smhd])$/.exec(t);
  if (rel) return Math.round(nowMs - Number(rel[1]) * UNIT_MS[rel[2]!]!);
  if (/^\d+$/.test(t)) return Number(t);
  // Without a zone, the time is local, as the boxes show it (Date.parse's
  // treatment of zone-less strings differs between date-only and date-time).
  const loc = LOCAL.exec(t);
  if (loc) {
    const [, y, mo, d, h, mi, sec] = loc;
    return new Date(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(sec ?? 0)).getTime();
  }
  const parsed = Date.parse(t);
  if (!Number.isNaN(parsed)) return parsed;
  throw new Error(`bad time "${s}": use now-1h, a date-time like 2026-11-30 09:15, or Unix ms`);
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

const pad = (n: number): string => String(n).padStart(2, '0');

/** "2026-11-30 09:15:02" in local time. */
export function formatLocal(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Unix-ms range strings become local date-times; relative ones stay as typed. */
export function readableTime(s: string): string {
  return /^\d+$/.test(s.trim()) ? formatLocal(Number(s)) : s;
}

/** "1 h", "90 s", "2 d": a duration for humans. */
export function formatDuration(ms: number): string {
  const units: [number, string][] = [
    [86_400_000, 'd'],
    [3_600_000, 'h'],
    [60_000, 'min'],
    [1000, 's'],
  ];
  for (const [u, name] of units) {
    const v = ms / u;
    if (v >= 1 && Math.abs(v - Math.round(v)) < 0.05) return `${Math.round(v)} ${name}`;
  }
  for (const [u, name] of units) if (ms >= u) return `${(ms / u).toFixed(1)} ${name}`;
  return `${Math.round(ms)} ms`;
}

export function formatRange(from: string, to: string): string {
  if (to === 'now' && from.startsWith('now-')) return `last ${from.slice(4)}`;
  return `${readableTime(from)} → ${readableTime(to)}`;
}

/**
 * The window of the same length just before a selection: the default Compare
 * baseline ("now-1h".."now" -> "now-2h".."now-1h"; absolute ranges in ms).
 */
export function precedingWindow(from: string, to: string, nowMs: number): { from: string; to: string } {
  const rel = /^now-(\d+)([smhd])$/.exec(from);
  if (rel && to === 'now') return { from: `now-${2 * Number(rel[1])}${rel[2]}`, to: from };
  const f = resolveTime(from, nowMs);
  const t = resolveTime(to, nowMs);
  return { from: String(f - (t - f)), to: String(f) };
}

export interface TimeTick {
  ms: number;
  label: string;
}

/**
 * Axis ticks at round local times (about `target` of them); labels carry the
 * date when the range spans more than one calendar day.
 */
export function timeTicks(fromMs: number, toMs: number, target = 8): TimeTick[] {
  const span = toMs - fromMs;
  if (!(span > 0)) return [];
  const steps = [1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800].map((s) => s * 1000);
  const step = steps.find((s) => span / s <= target) ?? steps[steps.length - 1]!;
  const multiDay = new Date(fromMs).toDateString() !== new Date(toMs - 1).toDateString();
  // Align to local midnight plus whole steps, so ticks fall on round local times.
  const d = new Date(fromMs);
  const midnight = new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
  let t = midnight + Math.ceil((fromMs - midnight) / step) * step;
  const out: TimeTick[] = [];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  for (; t <= toMs && out.length < 100; t += step) {
    const x = new Date(t);
    const hm = step < 60_000 ? `${pad(x.getHours())}:${pad(x.getMinutes())}:${pad(x.getSeconds())}` : `${pad(x.getHours())}:${pad(x.getMinutes())}`;
    const date = `${months[x.getMonth()]} ${x.getDate()}`;
    out.push({ ms: t, label: step >= 86_400_000 ? date : multiDay ? `${date} ${hm}` : hm });
  }
  return out;
}
