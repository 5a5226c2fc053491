// Deterministic synthetic profiles of a given node count (dev fixture, bench).
import type { FlameGraphResponse, FrameKind } from '../../../src/profile/api-types.js';
import { TreeBuilder } from './tree.js';

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** About `nodes` nodes, depth up to `maxDepth`, a few thousand distinct functions. */
export function syntheticProfile(nodes: number, seed = 1, maxDepth = 40): FlameGraphResponse {
  const rnd = mulberry32(seed);
  const nf = Math.max(64, Math.min(20000, Math.floor(nodes / 8)));
  const kinds: FrameKind[] = [];
  const names: string[] = [];
  const binaries: string[] = [];
  const libs = ['/usr/bin/app', '/usr/lib/libc.so.6', '/usr/lib/libssl.so.3', '/usr/lib/libz.so.1', '/usr/bin/node'];
  for (let f = 0; f < nf; f++) {
    const r = rnd();
    const kind: FrameKind = r < 0.15 ? 'kernel' : r < 0.4 ? 'jit' : r < 0.95 ? 'native' : 'unknown';
    kinds.push(kind);
    binaries.push(kind === 'kernel' ? '[kernel.kallsyms]' : kind === 'jit' ? '[jit]' : kind === 'native' ? libs[f % libs.length]! : '');
    names.push(kind === 'kernel' ? `sys_fn_${f}` : kind === 'jit' ? `js.mod${f % 37}.handler_${f}` : `pkg${f % 53}::func_${f}`);
  }
  const b = new TreeBuilder();
  const path: number[] = [];
  while (b.size < nodes) {
    const depth = 2 + Math.floor(rnd() * (maxDepth - 2));
    path.length = 0;
    for (let d = 0; d < depth; d++) {
      // Shallow frames come from a small set so paths share prefixes.
      const pool = Math.min(nf, 2 + d * d * 4);
      path.push(Math.floor(Math.pow(rnd(), 1.5) * pool));
    }
    b.addPath(path, 1 + Math.floor(rnd() * 1000));
  }
  const t = b.toFlameTree((f) => names[f]!);
  return {
    version: 1,
    sampleType: { type: 'cpu', unit: 'nanoseconds' },
    total: t.total[0]!,
    groupBy: [],
    functions: { name: names, binary: binaries, kind: kinds },
    tree: { func: t.func, parent: t.parent, self: t.self, total: t.total },
  };
}
