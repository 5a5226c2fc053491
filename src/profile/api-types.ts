// The JSON shapes exchanged between the server's query API and the web viewer.
// Both sides import this file, so a change here is a change of the contract.
// Tables are column-wise (as in the Firefox Profiler): one array per field,
// index i of every array describes the same row. That keeps 100k-node trees
// compact on the wire and cheap to walk.

/** Index into FunctionTable columns. */
export type FunctionIndex = number;
/** Index into FlameTree node columns; 0 is the synthetic root. */
export type NodeIndex = number;

/** What runtime a frame belongs to, so the viewer can tell them apart. */
export type FrameKind = 'kernel' | 'native' | 'jit' | 'unknown';

export interface SampleTypeJson {
  type: string; // e.g. "cpu"
  unit: string; // e.g. "nanoseconds"
}

export interface FunctionTable {
  name: string[];
  /** Binary / mapping file the function came from ("" when unknown). */
  binary: string[];
  kind: FrameKind[];
}

/**
 * A call tree in pre-order: every node's parent index is smaller than its own,
 * siblings are sorted by function name. Node 0 is the root (func = -1, parent = -1)
 * and its total equals FlameGraphResponse.total.
 */
export interface FlameTree {
  func: FunctionIndex[];
  parent: NodeIndex[];
  self: number[];
  total: number[];
}

/** GET /api/v1/flamegraph?query=<selector>&from=<t>&to=<t>[&sampleType=<type>] */
export interface FlameGraphResponse {
  version: 1;
  sampleType: SampleTypeJson;
  /** Sum of all sample values in the selection. */
  total: number;
  functions: FunctionTable;
  tree: FlameTree;
}

/**
 * GET /api/v1/diff?leftQuery=&leftFrom=&leftTo=&rightQuery=&rightFrom=&rightTo=
 * One merged tree; "baseline" columns hold the left selection, self/total the right.
 */
export interface DiffFlameGraphResponse {
  version: 1;
  sampleType: SampleTypeJson;
  baselineTotal: number;
  total: number;
  functions: FunctionTable;
  tree: FlameTree & { baselineSelf: number[]; baselineTotal: number[] };
}

/** GET /api/v1/top?query=&from=&to=[&limit=] : functions sorted by self, descending. */
export interface TopResponse {
  sampleType: SampleTypeJson;
  total: number;
  rows: { name: string; binary: string; kind: FrameKind; self: number; total: number }[];
}

/** GET /api/v1/timeline?query=&from=&to=&stepMs= */
export interface TimelineResponse {
  sampleType: SampleTypeJson;
  stepMs: number;
  /** Start of each step, Unix milliseconds. */
  timestampsMs: number[];
  values: number[];
}

/** GET /api/v1/labels */
export interface LabelNamesResponse {
  names: string[];
}

/** GET /api/v1/labels/:name/values */
export interface LabelValuesResponse {
  name: string;
  values: string[];
}

/** Every 4xx/5xx body. `code` is stable (FST_ERR_* style), `message` is for humans. */
export interface ApiErrorResponse {
  statusCode: number;
  code: string;
  error: string;
  message: string;
  /** On 5xx answers: the id under which the server logged the detail. */
  requestId?: string;
}
