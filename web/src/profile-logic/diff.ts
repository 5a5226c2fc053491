// Diff arithmetic on a merged tree: left = baseline selection, right = current.
// Everything is in shares of each side's own total, so selections of different
// sizes compare fairly.
import type { CallTree } from './tree.js';

export interface DiffShares {
  left: Float64Array;
  right: Float64Array;
  leftSelf: Float64Array;
  rightSelf: Float64Array;
  /** right - left share of the total, per node. */
  delta: Float64Array;
  /** Layout weight: mean of both shares, so removed frames stay visible. */
  weight: Float64Array;
  maxAbsDelta: number;
}

export function diffShares(tree: CallTree): DiffShares {
  const n = tree.size;
  const bt = tree.baselineTotal;
  const bs = tree.baselineSelf;
  if (!bt || !bs) throw new Error('not a diff tree');
  const lt = tree.baselineGrandTotal ?? bt[0]!;
  const rt = tree.grandTotal;
  const li = lt > 0 ? 1 / lt : 0;
  const ri = rt > 0 ? 1 / rt : 0;
  const left = new Float64Array(n);
  const right = new Float64Array(n);
  const leftSelf = new Float64Array(n);
  const rightSelf = new Float64Array(n);
  const delta = new Float64Array(n);
  const weight = new Float64Array(n);
  let maxAbs = 0;
  for (let i = 0; i < n; i++) {
    left[i] = bt[i]! * li;
    right[i] = tree.total[i]! * ri;
    leftSelf[i] = bs[i]! * li;
    rightSelf[i] = tree.self[i]! * ri;
    const d = right[i]! - left[i]!;
    delta[i] = d;
    weight[i] = (left[i]! + right[i]!) / 2;
    if (i > 0 && Math.abs(d) > maxAbs) maxAbs = Math.abs(d);
  }
  return { left, right, leftSelf, rightSelf, delta, weight, maxAbsDelta: maxAbs };
}

/** Colour scale bound: at least 1 percentage point so noise doesn't look red hot. */
export function diffScale(d: DiffShares): number {
  return Math.max(d.maxAbsDelta, 0.01);
}
