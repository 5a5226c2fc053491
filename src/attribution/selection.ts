// --include / --exclude: which workloads to profile, as Prometheus-style
// selectors on the attribution labels and comm, e.g.
//   --include '{namespace="shop"}' --exclude '{container="istio-proxy"}'
// Same syntax as the server's query selectors (one parser for both); regexes
// are fully anchored and a missing label matches as "".
import { matches, parseSelector, type Selector } from '../../server/selector.js';
import { ATTRIBUTION_LABELS } from './labels.js';

const SELECTABLE = new Set<string>([...ATTRIBUTION_LABELS, 'comm']);

/** 'maybe': the answer depends on comm, which a cgroup does not have. */
export type Verdict = 'yes' | 'no' | 'maybe';

export class Selection {
  private constructor(
    readonly include: readonly Selector[],
    readonly exclude: readonly Selector[],
  ) {}

  /** Parses the flags' values; throws with the offending selector named. */
  static parse(include: readonly string[], exclude: readonly string[]): Selection {
    const parse = (flag: string, text: string): Selector => {
      let selector: Selector;
      try {
        selector = parseSelector(text);
      } catch (error) {
        throw new Error(`${flag}: ${error instanceof Error ? error.message : String(error)}`);
      }
      if (selector.length === 0) throw new Error(`${flag}: the selector ${JSON.stringify(text)} selects everything`);
      for (const matcher of selector) {
        if (!SELECTABLE.has(matcher.name)) throw new Error(`${flag}: cannot select on "${matcher.name}" (one of ${[...SELECTABLE].join(', ')})`);
      }
      return selector;
    };
    return new Selection(
      include.map((text) => parse('--include', text)),
      exclude.map((text) => parse('--exclude', text)),
    );
  }

  get active(): boolean {
    return this.include.length > 0 || this.exclude.length > 0;
  }

  /** The exact answer for a sample: its labels and comm. */
  keeps(labels: Readonly<Record<string, string | undefined>>): boolean {
    const plain = labels as Record<string, string>;
    if (this.include.length > 0 && !this.include.some((selector) => matches(selector, plain))) return false;
    return !this.exclude.some((selector) => matches(selector, plain));
  }

  /**
   * The answer for a cgroup, whose processes' comms are not known: 'maybe'
   * where a comm matcher decides. The kernel filter lets 'maybe' through and
   * user space settles it per sample.
   */
  keepsCgroup(labels: Readonly<Record<string, string | undefined>>): Verdict {
    const include = this.include.length === 0 ? 'yes' : any(this.include.map((selector) => evaluate(selector, labels)));
    const exclude = any(this.exclude.map((selector) => evaluate(selector, labels)));
    if (include === 'no' || exclude === 'yes') return 'no';
    if (include === 'yes' && exclude === 'no') return 'yes';
    return 'maybe';
  }
}

function evaluate(selector: Selector, labels: Readonly<Record<string, string | undefined>>): Verdict {
  const known = selector.filter((matcher) => matcher.name !== 'comm');
  if (!matches(known, labels as Record<string, string>)) return 'no';
  return known.length === selector.length ? 'yes' : 'maybe';
}

function any(verdicts: Verdict[]): Verdict {
  if (verdicts.includes('yes')) return 'yes';
  return verdicts.includes('maybe') ? 'maybe' : 'no';
}
