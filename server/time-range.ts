// Query time ranges: RFC 3339, Unix milliseconds, or relative to now
// ("now", "now-1h", "now-90s"). Ranges are half-open [from, to).
import { errBadTime } from './errors.js';

export interface TimeRange {
  fromMs: number;
  toMs: number;
}

export const DEFAULT_RANGE_MS = 60 * 60 * 1000;

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const RELATIVE = /^now(?:\s*([+-])\s*(\d+(?:\.\d+)?)(ms|s|m|h|d|w))?$/;
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$/;

export function parseTime(value: string, name: string, nowMs: number): number {
  const v = value.trim();
  if (/^-?\d+$/.test(v)) {
    const n = Number(v);
    if (!Number.isSafeInteger(n)) throw errBadTime(`${name}=${value}: Unix milliseconds out of range`);
    return n;
  }
  const rel = RELATIVE.exec(v);
  if (rel) {
    if (!rel[1]) return nowMs;
    const delta = Number(rel[2]) * UNIT_MS[rel[3]!]!;
    return Math.round(rel[1] === '-' ? nowMs - delta : nowMs + delta);
  }
  if (RFC3339.test(v)) {
    const t = Date.parse(v);
    if (!Number.isNaN(t)) return t;
  }
  throw errBadTime(`${name}=${JSON.stringify(value)}: expected RFC 3339, Unix milliseconds or now[-<n><ms|s|m|h|d|w>]`);
}

const iso = (ms: number) => (Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString() : String(ms));

export function parseTimeRange(from: string | undefined, to: string | undefined, nowMs: number, names: [string, string] = ['from', 'to']): TimeRange {
  const toMs = to === undefined || to === '' ? nowMs : parseTime(to, names[1], nowMs);
  const fromMs = from === undefined || from === '' ? toMs - DEFAULT_RANGE_MS : parseTime(from, names[0], nowMs);
  if (fromMs >= toMs) throw errBadTime(`empty time range: ${names[0]} (${iso(fromMs)}) must be before ${names[1]} (${iso(toMs)})`);
  return { fromMs, toMs };
}
