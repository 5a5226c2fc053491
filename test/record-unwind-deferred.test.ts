// Unwind tables are built for the files walks reach, not for every file a
// process maps: a library mapped but never on a stack (here one preloaded and
// never called) is not built, while the program's own binary (asked for at
// once), its shared library and libc (asked for by the BPF walker through the
// ring buffer when a walk first meets them) are, and its stacks still reach
// the thread's root. Fails where every mapped file is built on sight (the
// unused library gets a table), and where the walker's requests are lost (no
// chain reaches _start through libc). Also checks that the rows were copied
// into the rows map's memory (not one kernel update per row) and walk right.
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { record } from '../src/agent/record.js';
import { fileIdentity } from '../src/unwind/table-cache.js';
import { flattenProfile, hasContiguousPath, readProfile, sumCounts, type FlatSample } from './helpers/pprof.js';
import { buildOmitFramePointerSplit } from './helpers/unwind-fixtures.js';

const RECORD_MS = 4_000;
const FREQUENCY_HZ = 499;
// Samples taken before the walker's requests are served use frame pointers (counted); the bound leaves them room.
const WHOLE_MIN_PERCENT = 70;

const userFrames = (s: FlatSample): string[] => s.stack.filter((_, i) => !s.mappings[i]!.startsWith('[kernel.kallsyms]'));

/** The table cache's file for `path` (table-cache.ts: sha-256 of the file's identity). */
function cacheEntryFor(cacheDir: string, path: string): string {
  const identity = fileIdentity(statSync(path, { bigint: true }));
  return join(cacheDir, createHash('sha256').update(identity).digest('hex').slice(0, 32) + '.fput');
}

function libcPath(pid: number): string {
  const maps = execFileSync('cat', [`/proc/${pid}/maps`], { encoding: 'utf8' });
  const path = maps.split('\n').map((line) => line.split(/\s+/)[5] ?? '').find((p) => /\/libc\.so\.6$/.test(p));
  if (path === undefined) throw new Error(`no libc in /proc/${pid}/maps`);
  return path;
}

describe('record --unwind dwarf: tables for the files walks reach', () => {
  it('builds the program, its library and libc, not a library it maps but never runs, and still reaches the root', async () => {
    const split = buildOmitFramePointerSplit('clang');
    const unused = join(split.dir, 'libunused.so');
    const source = join(split.dir, 'unused.c');
    writeFileSync(source, 'int fleetprof_never_called(int x) { return x * 3 + 1; }\n');
    execFileSync('clang', ['-O2', '-fPIC', '-shared', '-o', unused, source]);
    const cacheDir = mkdtempSync(join(tmpdir(), 'fleetprof-unwind-deferred-cache-'));
    const profilePath = join(mkdtempSync(join(tmpdir(), 'fleetprof-unwind-deferred-')), 'profile.pb.gz');

    const child = spawn(split.cpuSplit, [String(RECORD_MS / 1000 + 2)], { stdio: 'ignore', env: { ...process.env, LD_PRELOAD: unused } });
    await sleep(200); // mapped and spinning
    const libc = libcPath(child.pid!);
    expect(readdirSync(cacheDir)).toEqual([]);
    const summary = await record({
      durationMs: RECORD_MS,
      frequencyHz: FREQUENCY_HZ,
      pid: child.pid!,
      outputPath: profilePath,
      unwind: 'dwarf',
      drainIntervalMs: 500,
      unwindTableCache: { dir: cacheDir, maxBytes: 64 << 20 },
    });
    child.kill('SIGKILL');
    await once(child, 'exit');

    const tables = summary.unwind!.tables!;
    const built = Object.fromEntries([split.cpuSplit, split.library, libc, unused].map((path) => [path, existsSync(cacheEntryFor(cacheDir, path))]));
    const context = JSON.stringify({ built, tables: { files: tables.files, deferred: tables.filesDeferred, wanted: tables.tablesWanted }, outcomes: summary.unwind!.outcomes });
    expect(built[split.cpuSplit], context).toBe(true);
    expect(built[split.library], context).toBe(true);
    expect(built[libc], context).toBe(true);
    expect(built[unused], context).toBe(false);
    expect(tables.filesDeferred, context).toBeGreaterThanOrEqual(1);
    // libsplit.so and libc at least were asked for by walks (the program's own binary is asked for at once).
    expect(tables.tablesWanted, context).toBeGreaterThanOrEqual(2);
    // Rows go into the map's memory in one copy (this kernel has mmapable array maps), and the walks below read them.
    expect(tables.rowsWrittenInPlace).toBe(true);

    const mine = flattenProfile(readProfile(profilePath)).filter((s) => s.labels.pid === child.pid && userFrames(s).length > 0);
    const total = sumCounts(mine);
    // The whole chain: _start (the binary) through libc's __libc_start_* (libc's table) to main and a leaf.
    const rooted = (s: FlatSample): boolean => {
      const user = userFrames(s);
      return user[0] === '_start' && user.some((f) => f.startsWith('__libc_start')) && ['alpha_leaf', 'beta_leaf', 'shared_gamma_leaf'].some((leaf) => hasContiguousPath(user, ['main', 'run_round', leaf]) && user.at(-1) === leaf);
    };
    const whole = sumCounts(mine.filter(rooted));
    expect(total, context).toBeGreaterThan(100);
    expect((100 * whole) / total, `${context} whole ${whole} of ${total}`).toBeGreaterThanOrEqual(WHOLE_MIN_PERCENT);
  }, 60_000);
});
