// Thin client for the query API (contract: src/profile/api-types.ts).
import type {
  ApiErrorResponse,
  DiffFlameGraphResponse,
  FlameGraphResponse,
  LabelNamesResponse,
  LabelSummaryResponse,
  LabelValuesResponse,
  TimelineResponse,
} from '../../src/profile/api-types.js';

export const API = '/api/v1';

/** A selection with times resolved to Unix milliseconds. */
export interface ResolvedSelection {
  query: string;
  from: number;
  to: number;
}

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string,
  ) {
    super(message);
  }
}

async function getJson<T>(path: string, signal?: AbortSignal): Promise<T> {
  const res = await fetch(path, { signal, headers: { accept: 'application/json' } });
  if (!res.ok) {
    let body: Partial<ApiErrorResponse> = {};
    try {
      body = (await res.json()) as ApiErrorResponse;
    } catch {
      /* not JSON */
    }
    throw new ApiError(body.message ?? `${res.status} ${res.statusText}`, res.status, body.code ?? 'HTTP_ERROR');
  }
  return (await res.json()) as T;
}

export function selParams(sel: ResolvedSelection, prefix = ''): URLSearchParams {
  const p = new URLSearchParams();
  const key = (k: string): string => (prefix ? prefix + k[0]!.toUpperCase() + k.slice(1) : k);
  p.set(key('query'), sel.query);
  p.set(key('from'), String(sel.from));
  p.set(key('to'), String(sel.to));
  return p;
}

function withGroupBy(p: URLSearchParams, groupBy: readonly string[]): URLSearchParams {
  if (groupBy.length > 0) p.set('groupBy', groupBy.join(','));
  return p;
}

export function fetchFlameGraph(sel: ResolvedSelection, groupBy: readonly string[], signal?: AbortSignal): Promise<FlameGraphResponse> {
  return getJson(`${API}/flamegraph?${withGroupBy(selParams(sel), groupBy)}`, signal);
}

export function fetchLabelSummary(sel: ResolvedSelection, signal?: AbortSignal): Promise<LabelSummaryResponse> {
  const p = selParams(sel);
  p.set('limit', '8');
  return getJson(`${API}/labels/summary?${p}`, signal);
}

export function fetchDiff(left: ResolvedSelection, right: ResolvedSelection, groupBy: readonly string[], signal?: AbortSignal): Promise<DiffFlameGraphResponse> {
  const p = withGroupBy(new URLSearchParams([...selParams(left, 'left'), ...selParams(right, 'right')]), groupBy);
  return getJson(`${API}/diff?${p}`, signal);
}

export function fetchTimeline(sel: ResolvedSelection, stepMs: number, groupBy: readonly string[], signal?: AbortSignal): Promise<TimelineResponse> {
  const p = withGroupBy(selParams(sel), groupBy);
  p.set('stepMs', String(stepMs));
  return getJson(`${API}/timeline?${p}`, signal);
}

export async function fetchLabelNames(): Promise<string[]> {
  return (await getJson<LabelNamesResponse>(`${API}/labels`)).names;
}

export async function fetchLabelValues(name: string): Promise<string[]> {
  return (await getJson<LabelValuesResponse>(`${API}/labels/${encodeURIComponent(name)}/values`)).values;
}

export function profileUrl(sel: ResolvedSelection): string {
  return `${API}/profile?${selParams(sel)}`;
}
