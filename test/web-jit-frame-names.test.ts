// How the profile builder names code in anonymous executable memory (JIT
// output without a perf map), which the viewer then shows: by the runtime
// binary on the stack, else the process name; a run of such frames is one
// frame; file-backed unresolved frames keep their address.
import { describe, expect, it } from 'vitest';
import { CpuProfileBuilder, type ProfileFrame } from '../src/profile/builder.js';
import { flattenProfile } from './helpers/pprof.js';
import { Profile } from 'pprof-format';

const anon = (address: bigint): ProfileFrame => ({
  address,
  functionName: null,
  kind: 'unknown',
  mappingFile: '',
  buildId: null,
  mappingStart: 0x7f0000000000n,
  mappingEnd: 0x7f0000100000n,
  mappingFileOffset: 0n,
});
const native = (name: string | null, file: string, address = 0x1000n): ProfileFrame => ({
  address,
  functionName: name,
  kind: 'native',
  mappingFile: file,
  buildId: null,
  mappingStart: 0x1000n,
  mappingEnd: 0x9000n,
  mappingFileOffset: 0n,
});

function stacks(b: CpuProfileBuilder): string[][] {
  return flattenProfile(Profile.decode(b.encode())).map((s) => s.stack);
}

describe('unnamed JIT frames', () => {
  it('names a JVM run by libjvm.so on the stack and folds the run into one frame', () => {
    const b = new CpuProfileBuilder({ periodNs: 1, startTimeNs: 0n });
    // Leaf first: three JIT frames, then the VM, then main. The process is called "myservice".
    b.addSample([anon(0x7f0000000010n), anon(0x7f0000000020n), anon(0x7f0000000030n), native('JavaCalls::call', '/usr/lib/jvm/lib/server/libjvm.so'), native('main', '/usr/bin/myservice')], 1, {
      pid: 7,
      tid: 7,
      comm: 'myservice',
      processName: 'myservice',
    });
    const [stack] = stacks(b);
    expect(stack).toEqual(['main', 'JavaCalls::call', '[JVM JIT, run jcmd <pid> Compiler.perfmap (JDK 17+) or attach perf-map-agent for names]']);
  });

  it('falls back to the process name, and to a generic name for unknown runtimes', () => {
    const b = new CpuProfileBuilder({ periodNs: 1, startTimeNs: 0n });
    b.addSample([anon(0x7f0000000010n), native('main', '/usr/bin/x')], 1, { pid: 1, tid: 1, comm: 'node', processName: 'node' });
    b.addSample([anon(0x7f0000000010n), native('main', '/usr/bin/y')], 1, { pid: 2, tid: 2, comm: 'luajit-app', processName: 'luajit-app' });
    const leaves = stacks(b).map((s) => s[s.length - 1]);
    expect(leaves).toEqual(expect.arrayContaining(['[node JIT, start with --perf-basic-prof for names]', '[anonymous code: JIT without a perf map?]']));
  });

  it('leaves unresolved file-backed frames and frames outside any mapping as addresses', () => {
    const b = new CpuProfileBuilder({ periodNs: 1, startTimeNs: 0n });
    const outside: ProfileFrame = { ...anon(0x42n), mappingStart: 0n, mappingEnd: 0n };
    b.addSample([native(null, '/usr/bin/stripped', 0x1234n), outside, native('main', '/usr/bin/stripped')], 1, { pid: 3, tid: 3, comm: 'node', processName: 'node' });
    const p = Profile.decode(b.encode());
    const jitNames = p.stringTable.strings.filter((s) => s.includes('JIT'));
    expect(jitNames).toEqual([]);
    // Two locations without lines: the stripped frame and the one outside every mapping.
    expect(p.location.filter((l) => l.line.length === 0)).toHaveLength(2);
  });
});
