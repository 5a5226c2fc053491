import { gunzipSync } from 'node:zlib';
import { Profile } from 'pprof-format';
import { describe, expect, it } from 'vitest';
import { CpuProfileBuilder, type ProfileFrame } from '../src/profile/builder.js';
import { flattenProfile } from './helpers/pprof.js';

function frame(name: string | null, overrides: Partial<ProfileFrame> = {}): ProfileFrame {
  return {
    address: 0x1000n,
    functionName: name,
    kind: 'native',
    mappingFile: '/usr/bin/app',
    buildId: 'abcd',
    mappingStart: 0x1000n,
    mappingEnd: 0x2000n,
    mappingFileOffset: 0n,
    ...overrides,
  };
}

const labels = { pid: 42, tid: 43, comm: 'app', processName: 'app' };

describe('CpuProfileBuilder', () => {
  it('writes samples/count and cpu/nanoseconds with the period from the frequency', () => {
    const builder = new CpuProfileBuilder({ periodNs: 10_101_010, startTimeNs: 5n });
    builder.addSample([frame('leaf', { address: 0x1010n }), frame('main', { address: 0x1020n })], 3, labels);
    const profile = Profile.decode(builder.encode());
    const s = profile.stringTable.strings;
    expect(profile.sampleType.map((t) => `${s[Number(t.type)]}/${s[Number(t.unit)]}`)).toEqual(['samples/count', 'cpu/nanoseconds']);
    expect(Number(profile.period)).toBe(10_101_010);
    expect(profile.sample[0]!.value.map(Number)).toEqual([3, 30_303_030]);
    expect(Number(profile.timeNanos)).toBe(5);
  });

  it('merges identical stacks with identical labels and keeps distinct ones apart', () => {
    const builder = new CpuProfileBuilder({ periodNs: 1, startTimeNs: 0n });
    const stack = [frame('leaf', { address: 0x1010n }), frame('main', { address: 0x1020n })];
    builder.addSample(stack, 2, labels);
    builder.addSample(stack, 5, labels);
    builder.addSample(stack, 1, { ...labels, tid: 44 });
    builder.addSample([frame('other', { address: 0x1030n }), frame('main', { address: 0x1020n })], 4, labels);
    const profile = Profile.decode(builder.encode());
    expect(profile.sample.map((s) => Number(s.value[0]))).toEqual([7, 1, 4]);
    // main is one location and one function, shared by every sample.
    expect(profile.location).toHaveLength(3);
    expect(profile.function).toHaveLength(3);
    expect(builder.sampleCount).toBe(12);
    const flat = flattenProfile(profile);
    expect(flat[0]!.stack).toEqual(['main', 'leaf']);
    expect(flat[1]!.labels).toMatchObject({ pid: 42, tid: 44, comm: 'app', process: 'app' });
  });

  it('keeps unresolved frames as mapping + address, with a build id, so a later tool can resolve them', () => {
    const builder = new CpuProfileBuilder({ periodNs: 1, startTimeNs: 0n });
    builder.addSample([frame(null, { address: 0x1abcn })], 1, labels);
    const profile = Profile.decode(builder.encode());
    const s = profile.stringTable.strings;
    const location = profile.location[0]!;
    expect(location.line).toHaveLength(0);
    expect(Number(location.address)).toBe(0x1abc);
    const mapping = profile.mapping.find((m) => m.id === location.mappingId)!;
    expect(s[Number(mapping.filename)]).toBe('/usr/bin/app');
    expect(s[Number(mapping.buildId)]).toBe('abcd');
    expect([Number(mapping.memoryStart), Number(mapping.memoryLimit)]).toEqual([0x1000, 0x2000]);
    expect(mapping.hasFunctions).toBe(false);
  });

  it('keeps user mappings per process but shares the kernel and JIT pseudo-mappings', () => {
    const builder = new CpuProfileBuilder({ periodNs: 1, startTimeNs: 0n });
    const kernel = frame('do_syscall_64', { kind: 'kernel', mappingFile: '[kernel.kallsyms]', buildId: null, address: 0xffffffff81000000n, mappingStart: 0xffff800000000000n, mappingEnd: 0xffffffffffffffffn });
    const jit = frame('hotLoop', { kind: 'jit', mappingFile: '[jit]', buildId: null, sourceFile: '/app/x.js:3' });
    builder.addSample([kernel, jit, frame('main')], 1, labels);
    builder.addSample([kernel, jit, frame('main')], 1, { ...labels, pid: 99 });
    const profile = Profile.decode(builder.encode());
    const s = profile.stringTable.strings;
    expect(profile.mapping.map((m) => s[Number(m.filename)]).sort()).toEqual(['/usr/bin/app', '/usr/bin/app', '[jit]', '[kernel.kallsyms]']);
    // Kernel addresses above 2^63 survive the round trip exactly.
    const kernelLocation = profile.location.find((l) => s[Number(profile.mapping[Number(l.mappingId) - 1]!.filename)] === '[kernel.kallsyms]')!;
    expect(BigInt(kernelLocation.address)).toBe(0xffffffff81000000n);
    const jitFunction = profile.function.find((f) => s[Number(f.name)] === 'hotLoop')!;
    expect(s[Number(jitFunction.filename)]).toBe('/app/x.js:3');
  });

  it('gzips what it encodes', async () => {
    const builder = new CpuProfileBuilder({ periodNs: 1, startTimeNs: 0n, comments: ['kernel drops {}'] });
    builder.addSample([frame('main')], 1, labels);
    const profile = Profile.decode(gunzipSync(await builder.encodeGzip()));
    expect(profile.comment.map((c) => profile.stringTable.strings[Number(c)])).toEqual(['kernel drops {}']);
  });
});
