// Label selector completion: decides whether the cursor is on a label name or
// inside a label value, so the view can offer names from /api/v1/labels or
// values from /api/v1/labels/:name/values. Syntax: {name="value", other=~"re"}.

export type CompletionContext =
  | { kind: 'name'; prefix: string; start: number; end: number }
  | { kind: 'value'; name: string; prefix: string; start: number; end: number };

export function completionContext(text: string, cursor: number): CompletionContext | null {
  const before = text.slice(0, cursor);
  const val = /([A-Za-z_][\w.]*)\s*(=~|!=|!~|=)\s*"((?:[^"\\]|\\.)*)$/.exec(before);
  if (val) {
    const prefix = val[3]!;
    return { kind: 'value', name: val[1]!, prefix, start: cursor - prefix.length, end: cursor };
  }
  // Inside braces, after "{" or "," (or an empty input): a label name.
  const nm = /(^|[{,])\s*([A-Za-z_][\w.]*)?$/.exec(before);
  if (nm) {
    const prefix = nm[2] ?? '';
    return { kind: 'name', prefix, start: cursor - prefix.length, end: cursor };
  }
  return null;
}

export function applyCompletion(text: string, ctx: CompletionContext, choice: string): { text: string; cursor: number } {
  let insert: string;
  let head = text.slice(0, ctx.start);
  let tail = text.slice(ctx.end);
  if (ctx.kind === 'name') {
    insert = `${choice}="`;
    if (!head.includes('{')) {
      head = `{${head}`;
      if (!tail.includes('}')) tail = `${tail}}`;
    }
    // An existing ="..." after the name is kept.
    if (/^\s*(=~|!=|!~|=)/.test(tail)) insert = choice;
  } else {
    const escaped = choice.replace(/\\/g, '\\\\').replace(/"/g, '\\"');
    // Drop the rest of the old value up to its closing quote.
    const close = /^(?:[^"\\]|\\.)*"/.exec(tail);
    if (close) tail = tail.slice(close[0].length);
    insert = `${escaped}"`;
    if (!/^\s*[,}]/.test(tail)) tail = tail.trim() === '' && head.includes('{') ? `}${tail}` : tail;
  }
  const out = head + insert + tail;
  return { text: out, cursor: head.length + insert.length };
}

export function filterSuggestions(all: readonly string[], prefix: string, limit = 50): string[] {
  const p = prefix.toLowerCase();
  const starts: string[] = [];
  const contains: string[] = [];
  for (const s of all) {
    const l = s.toLowerCase();
    if (l.startsWith(p)) starts.push(s);
    else if (p !== '' && l.includes(p)) contains.push(s);
  }
  return [...starts, ...contains].slice(0, limit);
}

const MATCHER = /([A-Za-z_][\w.]*)\s*(=~|!=|!~|=)\s*"((?:[^"\\]|\\.)*)"/g;
const quote = (v: string): string => `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
const unquote = (v: string): string => v.replace(/\\(.)/g, '$1');

/** The label="value" equality matchers of a selector (others are ignored). */
export function equalities(selector: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of selector.matchAll(MATCHER)) if (m[2] === '=') out.set(m[1]!, unquote(m[3]!));
  return out;
}

/**
 * The selector with `name="value"` set (replacing any matcher on that label),
 * or removed when it is already exactly that. Other matchers keep their text.
 */
export function toggleEquality(selector: string, name: string, value: string): string {
  const kept: string[] = [];
  let had = false;
  for (const m of selector.matchAll(MATCHER)) {
    if (m[1] === name) {
      if (m[2] === '=' && unquote(m[3]!) === value) had = true;
      continue;
    }
    kept.push(m[0]);
  }
  if (!had) kept.push(`${name}=${quote(value)}`);
  return kept.length === 0 ? '' : `{${kept.join(', ')}}`;
}
