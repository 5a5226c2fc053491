// The JSON shapes exchanged between the server's query API and the web viewer.
// Both sides import this file, so a change here is a change of the contract.
// Tables are column-wise (as in the Firefox Profiler): one array per field,
// index i of every array describes the same row. That keeps 100k-node trees
// compact on the wire and cheap to walk.

/** Index into FunctionTable columns. */
export type FunctionIndex = number;
/** Index into FlameTree node columns; 0 is the synthetic root. */
export type NodeIndex = number;

/**
 * What runtime a frame belongs to, so the viewer can tell them apart.
 * 'label' marks the synthetic group-by levels of a grouped flame graph
 * (name `label=value`, binary ""); no stored frame has it.
 */
export type FrameKind = 'kernel' | 'native' | 'jit' | 'unknown' | 'label';

/** Label values of one group, e.g. {comm: "node"}; {} when a response is not grouped. */
export type GroupLabels = Record<string, string>;

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

/**
 * GET /api/v1/flamegraph?query=<selector>&from=<t>&to=<t>[&sampleType=<type>][&groupBy=<label>[,<label>...]]
 * With groupBy, the first groupBy.length levels under the root are label
 * nodes (kind 'label', name `label=value`, one per value present, siblings
 * sorted by name); the stacks of each group hang below its last level. A
 * series without the label groups under `label=` (empty value).
 * Every field is always present: an empty selection is total 0 and a tree of
 * the root alone.
 */
export interface FlameGraphResponse {
  version: 1;
  sampleType: SampleTypeJson;
  /** Sum of all sample values in the selection. */
  total: number;
  /** The grouping labels, outermost first; [] when not grouped. */
  groupBy: string[];
  functions: FunctionTable;
  tree: FlameTree;
}

/**
 * GET /api/v1/diff?leftQuery=&leftFrom=&leftTo=&rightQuery=&rightFrom=&rightTo=[&groupBy=]
 * One merged tree; "baseline" columns hold the left selection, self/total the right.
 * With groupBy, label levels as in FlameGraphResponse, one per value on either side.
 */
export interface DiffFlameGraphResponse {
  version: 1;
  sampleType: SampleTypeJson;
  baselineTotal: number;
  total: number;
  groupBy: string[];
  functions: FunctionTable;
  tree: FlameTree & { baselineSelf: number[]; baselineTotal: number[] };
}

/**
 * GET /api/v1/top?query=&from=&to=[&limit=][&groupBy=] : functions sorted by self, descending.
 * With groupBy a row is one function within one group (`labels` says which).
 */
export interface TopResponse {
  sampleType: SampleTypeJson;
  total: number;
  groupBy: string[];
  rows: { name: string; binary: string; kind: FrameKind; self: number; total: number; labels: GroupLabels }[];
}

/**
 * GET /api/v1/timeline?query=&from=&to=&stepMs=[&groupBy=]
 * Each stored profile's value is spread evenly over the time it covers
 * (its start to start + duration), so a steady load is a flat line, not a
 * comb of pushes. Values are in sampleType units per step; for CPU
 * nanoseconds, value / (stepMs * 1e6) is the number of cores busy.
 */
export interface TimelineResponse {
  sampleType: SampleTypeJson;
  stepMs: number;
  /** Start of each step, Unix milliseconds. */
  timestampsMs: number[];
  /** Sum over every series, per step. */
  values: number[];
  groupBy: string[];
  /** One entry per group (a single {} entry when not grouped), largest total first; each values[] sums to `values`. */
  series: { labels: GroupLabels; total: number; values: number[] }[];
}

/**
 * GET /api/v1/labels/summary?query=&from=&to=[&sampleType=][&limit=]
 * Every label name of the selected series with its values ranked by their
 * share of the selection's value (CPU time by default), top `limit` per name.
 */
export interface LabelSummaryResponse {
  sampleType: SampleTypeJson;
  total: number;
  labels: { name: string; distinct: number; values: { value: string; total: number }[] }[];
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
  /** FP_ERR_UNKNOWN_STACKS (409, lean push): every referenced stack content id the store does not hold. */
  missingStacks?: number[];
}
