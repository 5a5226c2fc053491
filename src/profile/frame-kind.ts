import type { FrameKind } from './api-types.js';

// How a pprof written by fleetprof marks where a frame came from. pprof has no
// field for it, so (like perf_to_profile and Parca) we use mapping file names:
// kernel frames live in "[kernel.kallsyms]" (modules in "[kernel.kallsyms]/<module>"),
// JIT frames resolved from /tmp/perf-PID.map live in "[jit]". Anything with a
// real path is native code. Profiles from other tools (Go, @datadog/pprof)
// fall back to "unknown" when they have no mapping at all.
export const KERNEL_MAPPING_FILE = '[kernel.kallsyms]';
export const JIT_MAPPING_FILE = '[jit]';

export function frameKindOfMapping(mappingFile: string | undefined): FrameKind {
  if (mappingFile === undefined || mappingFile === '') return 'unknown';
  if (mappingFile === KERNEL_MAPPING_FILE || mappingFile.startsWith(KERNEL_MAPPING_FILE + '/')) return 'kernel';
  if (mappingFile === JIT_MAPPING_FILE) return 'jit';
  return 'native';
}

/**
 * JIT runtimes whose code sits in anonymous executable memory, recognised by
 * a binary of theirs on the stack (the process name can be anything: a
 * symlink, process.title) or else by process name, with what makes them
 * write a perf map (/tmp/perf-PID.map) so their frames get names. Without
 * one, such a frame has only an address that means nothing outside this
 * process run; a name saying what it is and how to do better is more useful
 * (the address stays in the pprof location).
 */
const JIT_RUNTIMES: readonly { binary: RegExp; process: RegExp; name: string; hint: string }[] = [
  { binary: /^(node|nodejs|libnode\.so.*)$/, process: /^(node|nodejs)$/, name: 'node JIT', hint: 'start with --perf-basic-prof for names' },
  { binary: /^deno$/, process: /^deno$/, name: 'deno JIT', hint: 'start with --v8-flags=--perf-basic-prof for names' },
  { binary: /^libjvm\.so$/, process: /^java$/, name: 'JVM JIT', hint: 'run jcmd <pid> Compiler.perfmap (JDK 17+) or attach perf-map-agent for names' },
  { binary: /^libcoreclr\.so$/, process: /^dotnet$/, name: '.NET JIT', hint: 'set DOTNET_PerfMapEnabled=1 for names' },
  { binary: /^(libruby\.so.*|ruby\d*(\.\d+)*)$/, process: /^ruby/, name: 'Ruby YJIT', hint: 'start with --yjit-perf for names' },
  { binary: /^(libpython3.*\.so.*|python3(\.\d+)?)$/, process: /^python3?(\.\d+)?$/, name: 'Python JIT', hint: 'start with -X perf (3.12+) for names' },
];

/** The JIT runtime (an index, opaque) a mapped binary belongs to, or -1. */
export function jitRuntimeOfBinary(path: string): number {
  const base = path.slice(path.lastIndexOf('/') + 1);
  return JIT_RUNTIMES.findIndex((r) => r.binary.test(base));
}

/**
 * Name of an unsymbolized frame in anonymous executable memory (JIT code
 * without a perf map): "[node JIT, start with --perf-basic-prof for names]".
 * `runtime` from jitRuntimeOfBinary, or -1 to go by the process name.
 */
export function unnamedJitFrameName(runtime: number, processName: string): string {
  const rt = JIT_RUNTIMES[runtime] ?? JIT_RUNTIMES.find((r) => r.process.test(processName));
  return rt ? `[${rt.name}, ${rt.hint}]` : '[anonymous code: JIT without a perf map?]';
}
