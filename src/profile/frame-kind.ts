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
 * JIT runtimes whose code sits in anonymous executable memory, by process
 * name, with what makes them write a perf map (/tmp/perf-PID.map) so their
 * frames get names. Without one, such a frame has only an address that means
 * nothing outside this process run; a name saying what it is and how to do
 * better is more useful (the address stays in the pprof location).
 */
const JIT_RUNTIMES: readonly { process: RegExp; name: string; hint: string }[] = [
  { process: /^(node|nodejs|node\d+)$/, name: 'node JIT', hint: 'start with --perf-basic-prof for names' },
  { process: /^deno$/, name: 'deno JIT', hint: 'start with --v8-flags=--perf-basic-prof for names' },
  { process: /^java$/, name: 'JVM JIT', hint: 'run jcmd <pid> Compiler.perfmap (JDK 17+) or attach perf-map-agent for names' },
  { process: /^(dotnet|.*\.dll)$/, name: '.NET JIT', hint: 'set DOTNET_PerfMapEnabled=1 for names' },
  { process: /^(ruby|ruby\d.*)$/, name: 'Ruby YJIT', hint: 'start with --yjit-perf for names' },
  { process: /^python3?(\.\d+)?$/, name: 'Python JIT', hint: 'start with -X perf (3.12+) for names' },
];

/**
 * Name of an unsymbolized frame in anonymous executable memory of a process
 * (JIT code without a perf map): "[node JIT, start with --perf-basic-prof for names]".
 */
export function unnamedJitFrameName(processName: string): string {
  const rt = JIT_RUNTIMES.find((r) => r.process.test(processName));
  return rt ? `[${rt.name}, ${rt.hint}]` : '[anonymous code: JIT without a perf map?]';
}
