// Lean pushes made from the profile builder (PushIdentityCache kept across
// intervals, buildLean, prepareLeanPush) must be the very bytes preparePush
// gives for the same builder's pprof: same content ids (the server
// recomputes every definition's id and refuses a mismatch), same
// definitions, same samples. Frames of every kind the builder treats apart:
// native by build ID and by path (two processes, other ASLR bases), kernel
// above 2^53 (resolved and not), perf-map JIT with a source file, anonymous
// JIT code renamed for its runtime, no mapping, unresolved; labels with
// empty and missing values; the empty stack.
import { Profile } from 'pprof-format';
import { describe, expect, it } from 'vitest';
import { CpuProfileBuilder, type ProfileFrame, type SampleLabels } from '../src/profile/builder.js';
import { encodePush, prepareLeanPush, preparePush } from '../src/profile/push-encode.js';
import { PushIdentityCache } from '../src/profile/push-identity-cache.js';

const KERNEL = { kind: 'kernel', mappingFile: '[kernel.kallsyms]', buildId: null, mappingStart: 0xffffffff81000000n, mappingEnd: 0xffffffff83000000n, mappingFileOffset: 0n } as const;

function native(pid: number, name: string | null, offset: bigint, file = '/usr/bin/app', buildId: string | null = 'b1d'): ProfileFrame {
  const base = 0x550000000000n + BigInt(pid) * 0x100000n; // another ASLR base per process
  return { address: base + offset, functionName: name, kind: 'native', mappingFile: file, buildId, mappingStart: base, mappingEnd: base + 0x10000n, mappingFileOffset: 0x1000n };
}

/** Frame objects per process, as the symbolizer keeps them (same object for the same process and address). */
function framesOf(pid: number) {
  const lib = (name: string | null, offset: bigint) => native(pid, name, offset, '/usr/lib/libx.so', null);
  return {
    leaf: native(pid, 'leaf', 0x1100n),
    mid: native(pid, 'mid', 0x1200n),
    main: native(pid, 'main', 0x1300n),
    unresolved: native(pid, null, 0x1400n),
    libf: lib('lib_fn', 0x2000n),
    kernelLeaf: { ...KERNEL, address: 0xffffffff81234567n, functionName: 'do_syscall_64' },
    kernelUnresolved: { ...KERNEL, address: 0xffffffff8123abcdn, functionName: null },
    perfMap: { address: 0x7f0000001000n, functionName: 'LazyCompile:*work app.js:12', kind: 'jit', mappingFile: '[jit]', buildId: null, mappingStart: 0x7f0000000000n, mappingEnd: 0x7f0000100000n, mappingFileOffset: 0n, sourceFile: 'app.js' },
    anon1: { address: 0x3e0000001000n, functionName: null, kind: 'unknown', mappingFile: '', buildId: null, mappingStart: 0x3e0000000000n, mappingEnd: 0x3e0000100000n, mappingFileOffset: 0n },
    anon2: { address: 0x3e0000002000n, functionName: null, kind: 'unknown', mappingFile: '', buildId: null, mappingStart: 0x3e0000000000n, mappingEnd: 0x3e0000100000n, mappingFileOffset: 0n },
    nodeBinary: native(pid, 'node::Start', 0x1500n, '/usr/bin/node', 'n0de'),
    noMapping: { address: 0x42n, functionName: null, kind: 'unknown', mappingFile: '', buildId: null, mappingStart: 0n, mappingEnd: 0n, mappingFileOffset: 0n },
  } satisfies Record<string, ProfileFrame>;
}

describe('lean pushes from the builder', () => {
  it('are byte for byte what preparePush gives for the same pprof, interval after interval', () => {
    const identities = new PushIdentityCache();
    const known = new Map<number, number>();
    const holds = (id: number, check: number) => known.get(id) === check;
    const p1 = framesOf(101);
    const p2 = framesOf(202); // same binaries, other base: same ids
    const attribution = { container_id: 'c1', pod: '', namespace: undefined };
    for (let interval = 0; interval < 4; interval++) {
      const builder = new CpuProfileBuilder({ periodNs: 10_000_000, startTimeNs: BigInt(interval) * 10_000_000_000n, durationNs: 10_000_000_000n, identities });
      const stacks: [ProfileFrame[], SampleLabels][] = [
        [[p1.kernelLeaf, p1.leaf, p1.mid, p1.main], { pid: 101, tid: 101, comm: 'app', processName: 'app' }],
        [[p1.kernelUnresolved, p1.libf, p1.unresolved, p1.main], { pid: 101, tid: 102, comm: 'worker', processName: 'app', attribution }],
        [[p2.leaf, p2.mid, p2.main], { pid: 202, tid: 202, comm: 'app', processName: 'app' }],
        [[p2.libf, p2.main], { pid: 202, tid: 202, comm: '', processName: undefined }],
        [[p1.perfMap, p1.anon1, p1.anon2, p1.nodeBinary], { pid: 101, tid: 103, comm: 'node', processName: 'app' }],
        [[p1.noMapping], { pid: 101, tid: 101, comm: 'app', processName: 'app' }],
        [[], { pid: 101, tid: 101, comm: 'app', processName: 'app' }],
      ];
      // New code each interval (a process that appears), and the rest again in another order.
      if (interval > 0) stacks.push([[native(300 + interval, `new_${interval}`, 0x1600n), p1.main], { pid: 300 + interval, tid: 300 + interval, comm: 'app', processName: 'app' }]);
      if (interval % 2 === 1) stacks.reverse();
      for (const [i, [frames, labels]] of stacks.entries()) {
        builder.addSample(frames, 1 + i, labels);
        builder.addSample(frames, 2, labels);
      }
      const lean = builder.buildLean();
      const pprof = builder.build();
      // A 409 in the last interval: a stack the server should hold is to be defined again.
      const define = interval === 3 ? new Set([lean.stacks[0]!.id]) : undefined;
      const fromBuilder = encodePush(prepareLeanPush(lean, holds, define), holds, define);
      const fromPprof = encodePush(preparePush(pprof), holds, define);
      const fromSpool = encodePush(preparePush(Profile.decode(pprof.encode())), holds, define);
      expect(fromBuilder.body.equals(fromPprof.body), `interval ${interval}`).toBe(true);
      expect(fromSpool.body.equals(fromPprof.body), `interval ${interval}`).toBe(true);
      expect(fromBuilder.defined).toEqual(fromPprof.defined);
      expect(fromBuilder.referenced).toBe(fromPprof.referenced);
      if (interval === 0) expect(fromBuilder.referenced).toBe(0);
      else expect(fromBuilder.referenced).toBeGreaterThan(0);
      if (define) expect(fromBuilder.defined.map((d) => d.id)).toContain(lean.stacks[0]!.id);
      for (const d of fromBuilder.defined) known.set(d.id, d.check);
    }
    // Function and mapping ids were hashed once and then found.
    expect(identities.counters.hits).toBeGreaterThan(identities.counters.misses);
  });

  it('stays exact when its bound makes it start over, and counts that', () => {
    const identities = new PushIdentityCache({ maxEntries: 3 });
    const p = framesOf(7);
    for (let interval = 0; interval < 2; interval++) {
      const builder = new CpuProfileBuilder({ periodNs: 1, startTimeNs: 0n, identities });
      builder.addSample([p.leaf, p.mid, p.main, p.libf], 1, { pid: 7, tid: 7, comm: 'app' });
      builder.addSample([p.perfMap, p.nodeBinary], 1, { pid: 7, tid: 8, comm: 'app' });
      const none = () => false;
      expect(encodePush(prepareLeanPush(builder.buildLean(), none), none).body.equals(encodePush(preparePush(builder.build()), none).body)).toBe(true);
    }
    expect(identities.evictions).toBeGreaterThan(0);
    expect(identities.entries).toBeLessThanOrEqual(3);
  });
});
