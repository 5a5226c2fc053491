// Typed access to query-string parameters; a parameter given twice is a 400.
import { errBadParam } from './errors.js';

export type Query = Record<string, string | string[] | undefined>;

export function param(q: Query, name: string): string | undefined {
  const v = q[name];
  if (Array.isArray(v)) throw errBadParam(`parameter "${name}" is given more than once`);
  return v;
}

export function intParam(q: Query, name: string, def: number, min: number, max: number): number {
  const v = param(q, name);
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw errBadParam(`parameter "${name}"=${JSON.stringify(v)} must be an integer in [${min}, ${max}]`);
  return n;
}
