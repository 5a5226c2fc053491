import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURES_DIR } from './fixtures.js';

/** How Debian builds its packages: optimized, no frame pointers. */
export const OMIT_FRAME_POINTER_FLAGS = ['-O2', '-g', '-fomit-frame-pointer'];

export interface OmitFramePointerBuild {
  dir: string;
  /** cpu-split with its gamma leaf in libsplit.so. */
  cpuSplit: string;
  library: string;
}

/** Builds cpu-split and libsplit.so without frame pointers with `compiler` (clang or gcc). */
export function buildOmitFramePointerSplit(compiler: 'clang' | 'gcc', extraFlags: string[] = []): OmitFramePointerBuild {
  const dir = mkdtempSync(join(tmpdir(), `fleetprof-nofp-${compiler}-`));
  const flags = [...OMIT_FRAME_POINTER_FLAGS, ...extraFlags];
  const library = join(dir, 'libsplit.so');
  execFileSync(compiler, [...flags, '-fPIC', '-shared', '-o', library, join(FIXTURES_DIR, 'libsplit.c')]);
  const cpuSplit = join(dir, 'cpu-split');
  execFileSync(compiler, [...flags, '-o', cpuSplit, join(FIXTURES_DIR, 'cpu-split.c'), `-L${dir}`, '-lsplit', `-Wl,-rpath,${dir}`]);
  return { dir, cpuSplit, library };
}

/** Builds one C file from test/fixtures without frame pointers. */
export function buildOmitFramePointerProgram(compiler: 'clang' | 'gcc', source: string, extraFlags: string[] = []): string {
  const dir = mkdtempSync(join(tmpdir(), `fleetprof-nofp-${compiler}-`));
  const out = join(dir, source.replace(/\.c$/, ''));
  execFileSync(compiler, [...OMIT_FRAME_POINTER_FLAGS, ...extraFlags, '-o', out, join(FIXTURES_DIR, source)]);
  return out;
}
