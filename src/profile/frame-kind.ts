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
