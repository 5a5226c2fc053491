// Prometheus-style series selectors: {name="v", name!="v", name=~"re", name!~"re"}.
// Regexes are fully anchored as in Prometheus; a missing label matches as "".
// An empty selector (`{}` or no query at all) selects every series.
//
// Selectors come from anyone who can reach the query API, so regexes run on
// re2js (a port of RE2: time linear in the input, no backtracking) rather than
// on V8's backtracking engine, where `(a+)+c` against a 40-character label
// value blocks the event loop for minutes. RE2 syntax is also what Prometheus
// uses. Size limits bound the compile cost and the per-series match cost.
import { RE2JS } from 're2js';
import { errBadSelector } from './errors.js';

/** Longest selector accepted (the whole `{...}` text). */
export const MAX_SELECTOR_LENGTH = 8192;
/** Most matchers in one selector. */
export const MAX_MATCHERS = 32;
/** Longest regex accepted (label values are at most 1024 characters). */
export const MAX_REGEX_LENGTH = 1024;
/** Largest compiled RE2 program accepted (RE2's own rough cost measure). */
export const MAX_REGEX_PROGRAM_SIZE = 5000;

export type MatchOp = '=' | '!=' | '=~' | '!~';

export interface Matcher {
  name: string;
  op: MatchOp;
  value: string;
  /** Compiled, anchored by testExact (whole-value match). */
  re?: RE2JS;
}

export type Selector = Matcher[];

const NAME = /[a-zA-Z_][a-zA-Z0-9_]*/y;

export function parseSelector(input: string | undefined): Selector {
  const src = (input ?? '').trim();
  if (src === '') return [];
  if (src.length > MAX_SELECTOR_LENGTH) throw errBadSelector(`selector is ${src.length} characters long; the limit is ${MAX_SELECTOR_LENGTH}`);
  let i = 0;
  const fail = (what: string): never => {
    throw errBadSelector(`invalid selector ${JSON.stringify(src)}: ${what} at offset ${i}`);
  };
  const ws = () => {
    while (i < src.length && /\s/.test(src[i]!)) i++;
  };
  ws();
  if (src[i] !== '{') fail('expected "{"');
  i++;
  const out: Matcher[] = [];
  ws();
  while (src[i] !== '}') {
    NAME.lastIndex = i;
    const m = NAME.exec(src);
    if (!m) fail('expected a label name');
    const name = m![0];
    i += name.length;
    ws();
    let op: MatchOp;
    if (src.startsWith('=~', i)) op = '=~';
    else if (src.startsWith('!~', i)) op = '!~';
    else if (src.startsWith('!=', i)) op = '!=';
    else if (src[i] === '=') op = '=';
    else return fail(`expected one of = != =~ !~ after "${name}"`);
    i += op.length;
    ws();
    const value = readString();
    const matcher: Matcher = { name, op, value };
    if (op === '=~' || op === '!~') matcher.re = compileRegex(name, value, fail);
    out.push(matcher);
    if (out.length > MAX_MATCHERS) fail(`more than ${MAX_MATCHERS} matchers`);
    ws();
    if (src[i] === ',') {
      i++;
      ws();
    } else if (src[i] !== '}') fail('expected "," or "}"');
  }
  i++;
  ws();
  if (i !== src.length) fail('unexpected text after "}"');
  return out;

  function readString(): string {
    const q = src[i];
    if (q !== '"' && q !== "'" && q !== '`') return fail('expected a quoted value');
    i++;
    let s = '';
    while (i < src.length && src[i] !== q) {
      let c = src[i]!;
      if (c === '\\' && q !== '`') {
        i++;
        const e = src[i];
        if (e === undefined) break;
        c = e === 'n' ? '\n' : e === 't' ? '\t' : e;
      }
      s += c;
      i++;
    }
    if (src[i] !== q) fail('unterminated string');
    i++;
    return s;
  }
}

function compileRegex(name: string, pattern: string, fail: (what: string) => never): RE2JS {
  if (pattern.length > MAX_REGEX_LENGTH) fail(`regular expression for "${name}" is ${pattern.length} characters long; the limit is ${MAX_REGEX_LENGTH}`);
  let re: RE2JS;
  try {
    // DOTALL: `.` matches newlines too, as in Prometheus.
    re = RE2JS.compile(pattern, RE2JS.DOTALL);
  } catch (e) {
    return fail(`bad regular expression for "${name}" (RE2 syntax): ${(e as Error).message}`);
  }
  const size = re.programSize();
  if (size > MAX_REGEX_PROGRAM_SIZE) fail(`regular expression for "${name}" compiles to ${size} instructions; the limit is ${MAX_REGEX_PROGRAM_SIZE}`);
  return re;
}

export function matches(sel: Selector, labels: Record<string, string>): boolean {
  for (const m of sel) {
    const v = labels[m.name] ?? '';
    switch (m.op) {
      case '=':
        if (v !== m.value) return false;
        break;
      case '!=':
        if (v === m.value) return false;
        break;
      case '=~':
        if (!m.re!.testExact(v)) return false;
        break;
      case '!~':
        if (m.re!.testExact(v)) return false;
        break;
    }
  }
  return true;
}
