// --include/--exclude: the exact per-sample answer, and the per-cgroup answer
// the kernel filter is built from, which must never drop what the exact one
// keeps ('maybe' where only comm decides).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Selection } from '../src/attribution/selection.js';

describe('Selection', () => {
  it('keeps what matches any include and no exclude; a missing label matches as ""', () => {
    const selection = Selection.parse(['{namespace="shop"}', '{service_name=~"pay.*"}'], ['{container="istio-proxy"}']);
    expect(selection.keeps({ namespace: 'shop', container: 'app' })).toBe(true);
    expect(selection.keeps({ namespace: 'bank', service_name: 'payments' })).toBe(true);
    expect(selection.keeps({ namespace: 'shop', container: 'istio-proxy' })).toBe(false);
    expect(selection.keeps({ systemd_unit: 'nginx.service' })).toBe(false);
    expect(Selection.parse([], ['{namespace!=""}']).keeps({ systemd_unit: 'sshd.service' })).toBe(true);
  });

  it('per cgroup: comm makes it maybe, other labels decide', () => {
    const selection = Selection.parse(['{namespace="shop",comm="java"}'], []);
    expect(selection.keepsCgroup({ namespace: 'shop' })).toBe('maybe');
    expect(selection.keepsCgroup({ namespace: 'bank' })).toBe('no');
    const excluding = Selection.parse([], ['{comm="sleep"}', '{pod="noisy"}']);
    expect(excluding.keepsCgroup({ pod: 'noisy' })).toBe('no');
    expect(excluding.keepsCgroup({ pod: 'quiet' })).toBe('maybe');
    expect(Selection.parse(['{namespace="shop"}'], []).keepsCgroup({ namespace: 'shop' })).toBe('yes');
  });

  it('the per-cgroup answer never drops a sample the exact answer keeps, nor keeps one it drops for sure', () => {
    const value = fc.constantFrom('', 'a', 'b');
    const labels = fc.record({ namespace: value, pod: value, comm: value });
    const matcher = fc.record({ name: fc.constantFrom('namespace', 'pod', 'comm'), op: fc.constantFrom('=', '!=', '=~', '!~'), value: fc.constantFrom('', 'a', 'b', 'a|b') });
    const selector = fc.array(matcher, { minLength: 1, maxLength: 3 }).map((ms) => `{${ms.map((m) => `${m.name}${m.op}"${m.value}"`).join(',')}}`);
    fc.assert(
      fc.property(fc.array(selector, { maxLength: 2 }), fc.array(selector, { maxLength: 2 }), labels, (include, exclude, sample) => {
        const selection = Selection.parse(include, exclude);
        const { comm: _comm, ...cgroupLabels } = sample;
        const verdict = selection.keepsCgroup(cgroupLabels);
        const exact = selection.keeps(sample);
        if (verdict === 'no') expect(exact).toBe(false);
        if (verdict === 'yes') expect(exact).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('rejects selectors on labels it cannot know and empty selectors, naming the flag', () => {
    expect(() => Selection.parse(['{pid="1"}'], [])).toThrow(/--include: cannot select on "pid"/);
    expect(() => Selection.parse([], ['{}'])).toThrow(/--exclude: .*selects everything/);
    expect(() => Selection.parse(['namespace=shop'], [])).toThrow(/--include: invalid selector/);
  });
});
