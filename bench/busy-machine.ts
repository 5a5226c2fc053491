// The load the record benches profile: both CPUs busy with diverse stacks.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { buildCFixtures, FIXTURES_DIR } from '../test/helpers/fixtures.js';
import { buildOmitFramePointerSplit } from '../test/helpers/unwind-fixtures.js';

/** C, a shared library, syscalls and JIT code; with `processChurn`, also a shell spawning /bin/true. */
export function startBusyMachine({ processChurn }: { processChurn: boolean }): ChildProcess[] {
  const fixtures = buildCFixtures();
  // The same workload as Debian builds code, without frame pointers: what --unwind dwarf is for.
  const withoutFramePointers = buildOmitFramePointerSplit('clang');
  const forever = String(24 * 3600);
  const load = [
    spawn(fixtures.cpuSplit, [forever], { stdio: 'ignore' }),
    spawn(withoutFramePointers.cpuSplit, [forever], { stdio: 'ignore' }),
    spawn(fixtures.syscallHeavy, [forever], { stdio: 'ignore' }),
    spawn(process.execPath, ['--perf-basic-prof', join(FIXTURES_DIR, 'js-split.js'), forever], { stdio: 'ignore' }),
  ];
  if (processChurn) load.push(spawn('/bin/sh', ['-c', 'while :; do /bin/true; sleep 0.05; done'], { stdio: 'ignore' }));
  return load;
}
