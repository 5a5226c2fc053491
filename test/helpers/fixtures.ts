import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../src/util/package-root.js';

export const FIXTURES_DIR = join(packageRoot(), 'test', 'fixtures');

/** Flags for frame-pointer C programs. clang, not GCC 12, which drops the frame pointer in leaf functions. */
const FRAME_POINTER_FLAGS = ['-O1', '-g', '-fno-omit-frame-pointer', '-mno-omit-leaf-frame-pointer'];

export interface BuiltFixtures {
  dir: string;
  cpuSplit: string;
  syscallHeavy: string;
}

/** Builds the C workloads from test/fixtures into a fresh temp dir. */
export function buildCFixtures(): BuiltFixtures {
  const dir = mkdtempSync(join(tmpdir(), 'fleetprof-fixtures-'));
  const src = (name: string): string => join(FIXTURES_DIR, name);
  execFileSync('clang', [...FRAME_POINTER_FLAGS, '-fPIC', '-shared', '-o', join(dir, 'libsplit.so'), src('libsplit.c')]);
  execFileSync('clang', [
    ...FRAME_POINTER_FLAGS,
    '-o',
    join(dir, 'cpu-split'),
    src('cpu-split.c'),
    `-L${dir}`,
    '-lsplit',
    `-Wl,-rpath,${dir}`,
  ]);
  execFileSync('clang', [...FRAME_POINTER_FLAGS, '-o', join(dir, 'syscall-heavy'), src('syscall-heavy.c')]);
  return { dir, cpuSplit: join(dir, 'cpu-split'), syscallHeavy: join(dir, 'syscall-heavy') };
}

/** Leaf function -> its share (percent) of the leaves' CPU time, as cpu-split measured itself. */
export type MeasuredShares = Record<'alpha_leaf' | 'beta_leaf' | 'shared_gamma_leaf', number>;

/** Parses cpu-split's exit line: thread CPU ns per leaf, as shares in percent. */
export function parseMeasuredShares(stdout: string): MeasuredShares {
  const line = stdout.trim().split('\n').pop() ?? '';
  const ns = JSON.parse(line) as MeasuredShares;
  const total = ns.alpha_leaf + ns.beta_leaf + ns.shared_gamma_leaf;
  return {
    alpha_leaf: (100 * ns.alpha_leaf) / total,
    beta_leaf: (100 * ns.beta_leaf) / total,
    shared_gamma_leaf: (100 * ns.shared_gamma_leaf) / total,
  };
}
