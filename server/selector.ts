// Prometheus-style series selectors: {name="v", name!="v", name=~"re", name!~"re"}.
// Regexes are fully anchored as in Prometheus; a missing label matches as "".
// An empty selector (`{}` or no query at all) selects every series.
import { errBadSelector } from './errors.js';

export type MatchOp = '=' | '!=' | '=~' | '!~';

export interface Matcher {
  name: string;
  op: MatchOp;
  value: string;
  re?: RegExp;
}

export type Selector = Matcher[];

const NAME = /[a-zA-Z_][a-zA-Z0-9_]*/y;

export function parseSelector(input: string | undefined): Selector {
  const src = (input ?? '').trim();
  if (src === '') return [];
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
    if (op === '=~' || op === '!~') {
      try {
        matcher.re = new RegExp(`^(?:${value})$`, 'su');
      } catch (e) {
        fail(`bad regular expression for "${name}": ${(e as Error).message}`);
      }
    }
    out.push(matcher);
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
        if (!m.re!.test(v)) return false;
        break;
      case '!~':
        if (m.re!.test(v)) return false;
        break;
    }
  }
  return true;
}
