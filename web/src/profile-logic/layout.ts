// Horizontal layout of a call tree and the culling pass that decides what a
// renderer draws. Units: "weight" (samples, or shares for diff trees) until
// the viewport maps them to pixels.
import type { CallTree } from './tree.js';

/** Left edge of every node in weight units; children start at the parent's left edge. */
export function computeStarts(tree: CallTree, weight: ArrayLike<number> = tree.total): Float64Array {
  const n = tree.size;
  const start = new Float64Array(n);
  const cursor = new Float64Array(n);
  for (let i = 1; i < n; i++) {
    const p = tree.parent[i]!;
    start[i] = cursor[p]!;
    cursor[i] = start[i]!;
    cursor[p]! += weight[i]!;
  }
  // cursor[0] starts at 0 (start[0] = 0), nothing else to do.
  return start;
}

export interface Viewport {
  /** The focused node: its ancestors are drawn full width, its subtree scaled. */
  focus: number;
  /** Visible weight range; defaults to the focus node's extent. */
  x0: number;
  x1: number;
  widthPx: number;
  /** Nodes narrower than this (px) are culled together with their subtrees. */
  minWidthPx?: number;
}

/** What a renderer draws: parallel typed arrays, `count` entries used. */
export interface VisibleFrames {
  count: number;
  node: Int32Array;
  x: Float32Array;
  w: Float32Array;
  depth: Int32Array;
  /** Row index for hit-testing: rowStart[d]..rowStart[d+1] index into `byRow`, sorted by x. */
  rowStart: Int32Array;
  byRow: Int32Array;
}

export function allocVisible(capacity: number, maxDepth: number): VisibleFrames {
  return {
    count: 0,
    node: new Int32Array(capacity),
    x: new Float32Array(capacity),
    w: new Float32Array(capacity),
    depth: new Int32Array(capacity),
    rowStart: new Int32Array(maxDepth + 2),
    byRow: new Int32Array(capacity),
  };
}

export function focusExtent(start: Float64Array, weight: ArrayLike<number>, focus: number): [number, number] {
  return [start[focus]!, start[focus]! + weight[focus]!];
}

/**
 * Culls and lays out. Visits only what is drawn: a node off screen or narrower
 * than minWidthPx skips its whole subtree (children lie within their parent).
 */
export function layoutVisible(
  tree: CallTree,
  start: Float64Array,
  weight: ArrayLike<number>,
  vp: Viewport,
  out: VisibleFrames = allocVisible(tree.size, tree.maxDepth),
): VisibleFrames {
  const minW = vp.minWidthPx ?? 1;
  const span = vp.x1 - vp.x0;
  const scale = span > 0 ? vp.widthPx / span : 0;
  let k = 0;
  // Ancestors of the focus: full width path.
  if (vp.focus > 0) {
    const chain: number[] = [];
    for (let a = tree.parent[vp.focus]!; a >= 0; a = tree.parent[a]!) {
      chain.push(a);
      if (a === 0) break;
    }
    for (let j = chain.length - 1; j >= 0; j--) {
      const a = chain[j]!;
      out.node[k] = a;
      out.x[k] = 0;
      out.w[k] = vp.widthPx;
      out.depth[k] = tree.depth[a]!;
      k++;
    }
  }
  const stop = tree.end[vp.focus]!;
  const { end, depth } = tree;
  for (let i = vp.focus; i < stop; ) {
    const wgt = weight[i]!;
    const left = (start[i]! - vp.x0) * scale;
    const w = wgt * scale;
    if (w < minW || left >= vp.widthPx || left + w <= 0) {
      i = end[i]!;
      continue;
    }
    // Clip to the canvas so very zoomed nodes don't produce huge rects.
    const cl = left < 0 ? 0 : left;
    const cr = left + w > vp.widthPx ? vp.widthPx : left + w;
    out.node[k] = i;
    out.x[k] = cl;
    out.w[k] = cr - cl;
    out.depth[k] = depth[i]!;
    k++;
    i++;
  }
  out.count = k;
  // Bucket by row (counting sort keeps pre-order, i.e. left to right, within a row).
  const rows = out.rowStart;
  rows.fill(0);
  for (let j = 0; j < k; j++) rows[out.depth[j]! + 1]!++;
  for (let d = 1; d < rows.length; d++) rows[d]! += rows[d - 1]!;
  const fill = rows.slice(0, rows.length - 1);
  for (let j = 0; j < k; j++) {
    const d = out.depth[j]!;
    out.byRow[fill[d]!++] = j;
  }
  return out;
}

/** Index into `vis` of the frame at (x px, depth row), or -1. Binary search within the row. */
export function hitTest(vis: VisibleFrames, x: number, depth: number): number {
  if (depth < 0 || depth + 1 >= vis.rowStart.length) return -1;
  let lo = vis.rowStart[depth]!;
  let hi = vis.rowStart[depth + 1]! - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const j = vis.byRow[mid]!;
    const x0 = vis.x[j]!;
    if (x < x0) hi = mid - 1;
    else if (x >= x0 + vis.w[j]!) lo = mid + 1;
    else return j;
  }
  return -1;
}
