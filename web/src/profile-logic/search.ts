// Search: substring (case-insensitive) or /regex/flags. The share it reports
// counts every sample once: a match nested under another match adds nothing.
import type { CallTree } from './tree.js';

export type Matcher = (name: string) => boolean;

export interface CompiledSearch {
  matcher: Matcher | null;
  error: string | null;
}

export function compileSearch(query: string): CompiledSearch {
  const q = query.trim();
  if (q === '') return { matcher: null, error: null };
  const re = /^\/(.*)\/([a-z]*)$/s.exec(q);
  if (re && re[1] !== '') {
    try {
      const rx = new RegExp(re[1]!, re[2]!.replace(/[gy]/g, ''));
      return { matcher: (name) => rx.test(name), error: null };
    } catch (e) {
      return { matcher: null, error: (e as Error).message };
    }
  }
  const needle = q.toLowerCase();
  return { matcher: (name) => name.toLowerCase().includes(needle), error: null };
}

export interface SearchResult {
  /** 1 where the node's function matches. */
  nodeMatch: Uint8Array;
  matchedNodes: number;
  /** Weight under matches, each sample once. */
  covered: number;
  share: number;
}

export function searchTree(tree: CallTree, matcher: Matcher, weight: ArrayLike<number> = tree.total, grand = tree.grandTotal): SearchResult {
  const nf = tree.functions.name.length;
  const funcMatch = new Uint8Array(nf);
  // A frame matches by its name or its binary's file name (searching "sha256"
  // finds sha256sum's frames even where they have no symbol). Group-by
  // nodes are named "label=value", so label values match too.
  const bins = tree.functions.binary;
  const binMatch = new Map<string, boolean>();
  for (let f = 0; f < nf; f++) {
    let m = matcher(tree.functions.name[f]!);
    const b = bins[f] ?? '';
    if (!m && b !== '') {
      let bm = binMatch.get(b);
      if (bm === undefined) binMatch.set(b, (bm = matcher(baseName(b))));
      m = bm;
    }
    funcMatch[f] = m ? 1 : 0;
  }
  const n = tree.size;
  const nodeMatch = new Uint8Array(n);
  // covered[i] = 1 when node i or an ancestor matches.
  const covered = new Uint8Array(n);
  let sum = 0;
  let count = 0;
  for (let i = 1; i < n; i++) {
    const m = funcMatch[tree.func[i]!]!;
    nodeMatch[i] = m;
    const under = covered[tree.parent[i]!]!;
    if (m) {
      count++;
      if (!under) sum += weight[i]!;
    }
    covered[i] = under | m;
  }
  return { nodeMatch, matchedNodes: count, covered: sum, share: grand > 0 ? sum / grand : 0 };
}

/** File name of a binary path ("/usr/bin/sha256sum" -> "sha256sum"). */
export function baseName(path: string): string {
  const i = path.lastIndexOf('/');
  return i >= 0 ? path.slice(i + 1) : path;
}
