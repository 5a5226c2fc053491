// Builds the ELF fixtures the symbolizer tests need from source, into a temp
// dir: nothing binary is committed.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const LIB_SRC = `
#include <stdio.h>
__attribute__((noinline)) static long lib_inner(long n) {
  volatile long s = 0;
  for (long i = 0; i < n; i++) s += i;
  return s;
}
__attribute__((noinline)) long lib_spin(long n) { return lib_inner(n) + 1; }
void *lib_inner_addr(void) { return (void *)&lib_inner; }
void *lib_spin_addr(void) { return (void *)&lib_spin; }
`;

const MAIN_SRC = `
#include <stdio.h>
#include <unistd.h>
extern "C" long lib_spin(long n);
extern "C" void *lib_inner_addr(void);
extern "C" void *lib_spin_addr(void);
namespace fleet {
struct Widget {
  __attribute__((noinline)) static long spin(long n) { volatile long s = 0; for (long i = 0; i < n; i++) s += i * 3; return s; }
};
}
extern "C" __attribute__((noinline)) long hot_loop(long n) {
  volatile long s = 0;
  for (long i = 0; i < n; i++) s += i;
  return s;
}
int main(int argc, char **argv) {
  printf("hot_loop=%p\\n", (void *)&hot_loop);
  printf("widget_spin=%p\\n", (void *)&fleet::Widget::spin);
  printf("lib_inner=%p\\n", lib_inner_addr());
  printf("lib_spin=%p\\n", lib_spin_addr());
  printf("READY\\n");
  fflush(stdout);
  for (;;) {
    hot_loop(1000000);
    fleet::Widget::spin(1000);
    lib_spin(1000);
    usleep(1000);
  }
}
`;

export interface SymbolizeFixtures {
  dir: string;
  /** Shared library with a local (static) and a global function. */
  lib: string;
  /** C++ PIE executable linked against lib. */
  pie: string;
  /** Same program, ET_EXEC. */
  noPie: string;
  /** PIE with .symtab stripped and a .gnu_debuglink to pie.debug in the same dir. */
  strippedDebuglink: string;
  /** PIE stripped, no debuglink; its debug file lives under buildIdRoot by build ID. */
  strippedBuildId: string;
  /** A directory standing for "/" that holds usr/lib/debug/.build-id/xx/yyyy.debug. */
  buildIdRoot: string;
}

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8' });
}

export function buildSymbolizeFixtures(): SymbolizeFixtures {
  const dir = mkdtempSync(join(tmpdir(), 'fleetprof-symbolize-'));
  writeFileSync(join(dir, 'spin.c'), LIB_SRC);
  writeFileSync(join(dir, 'main.cpp'), MAIN_SRC);
  const lib = join(dir, 'libspin.so');
  run('gcc', ['-g', '-O1', '-fPIC', '-shared', '-Wl,--build-id', '-o', lib, join(dir, 'spin.c')]);
  const link = [`-L${dir}`, '-lspin', `-Wl,-rpath,${dir}`, '-Wl,--build-id'];
  const pie = join(dir, 'pie');
  run('g++', ['-g', '-O1', '-fPIE', '-pie', '-o', pie, join(dir, 'main.cpp'), ...link]);
  const noPie = join(dir, 'nopie');
  run('g++', ['-g', '-O1', '-fno-pie', '-no-pie', '-o', noPie, join(dir, 'main.cpp'), ...link]);

  // Stripped copy + separate debug file found through .gnu_debuglink (same dir).
  const debugFile = join(dir, 'pie.debug');
  run('objcopy', ['--only-keep-debug', pie, debugFile]);
  const strippedDebuglink = join(dir, 'pie-stripped');
  run('objcopy', ['--strip-all', `--add-gnu-debuglink=${debugFile}`, pie, strippedDebuglink]);

  // Stripped copy whose debug file is only findable by build ID. Built in its
  // own dir with a different program text so its build ID differs from pie's.
  const bdir = join(dir, 'byid');
  mkdirSync(bdir);
  writeFileSync(join(bdir, 'main.cpp'), MAIN_SRC.replace('hot_loop=%p', 'hot_loop= %p'));
  const unstripped = join(bdir, 'pie-full');
  run('g++', ['-g', '-O1', '-fPIE', '-pie', '-o', unstripped, join(bdir, 'main.cpp'), ...link]);
  const strippedBuildId = join(bdir, 'pie-byid');
  run('objcopy', ['--strip-all', unstripped, strippedBuildId]);
  const buildId = /Build ID: ([0-9a-f]+)/.exec(run('readelf', ['-n', unstripped]))![1]!;
  const buildIdRoot = join(dir, 'root');
  const idDir = join(buildIdRoot, 'usr/lib/debug/.build-id', buildId.slice(0, 2));
  mkdirSync(idDir, { recursive: true });
  run('objcopy', ['--only-keep-debug', unstripped, join(idDir, `${buildId.slice(2)}.debug`)]);
  return { dir, lib, pie, noPie, strippedDebuglink, strippedBuildId, buildIdRoot };
}

/** Addresses a fixture process printed before "READY". */
export type PrintedAddresses = Record<'hot_loop' | 'widget_spin' | 'lib_inner' | 'lib_spin', bigint>;

export function parsePrintedAddresses(stdout: string): PrintedAddresses {
  const out: Record<string, bigint> = {};
  for (const m of stdout.matchAll(/^(\w+)= ?(0x[0-9a-f]+)$/gm)) out[m[1]!] = BigInt(m[2]!);
  return out as PrintedAddresses;
}

export function removeSymbolizeFixtures(fx: SymbolizeFixtures | undefined): void {
  if (fx !== undefined) rmSync(fx.dir, { recursive: true, force: true });
}

/** One row of a reference symbol table. */
export interface ReferenceRow {
  start: bigint;
  end: bigint;
  name: string;
  payload: number;
}

interface ReferenceSymbol {
  name: string;
  address: bigint;
  sizeBytes: number | bigint;
  binding?: 'global' | 'weak' | 'local';
  limit?: bigint;
  payload?: number;
}

/**
 * The straightforward BigInt algorithm SymbolTable implements column-wise
 * (sort, one row per address with the preferred alias, zero-size symbols
 * extended to the next row or their limit), as an oracle for its results.
 */
export function referenceSymbolRows(symbols: readonly ReferenceSymbol[]): ReferenceRow[] {
  const MAX = 0xffff_ffff_ffff_ffffn;
  const rank = { global: 0, weak: 1, local: 2 } as const;
  const under = (s: string): number => s.length - s.replace(/^_+/, '').length;
  const cmp = (a: ReferenceSymbol, b: ReferenceSymbol): number =>
    a.address !== b.address
      ? a.address < b.address
        ? -1
        : 1
      : rank[a.binding ?? 'global'] - rank[b.binding ?? 'global'] ||
        (BigInt(a.sizeBytes) > 0n ? 0 : 1) - (BigInt(b.sizeBytes) > 0n ? 0 : 1) ||
        under(a.name) - under(b.name) ||
        a.name.length - b.name.length ||
        (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  const sorted = symbols.slice().sort(cmp);
  const groups: { s: ReferenceSymbol; size: bigint; limit: bigint | undefined }[] = [];
  for (const s of sorted) {
    const last = groups[groups.length - 1];
    if (last !== undefined && last.s.address === s.address) {
      if (BigInt(s.sizeBytes) > last.size) last.size = BigInt(s.sizeBytes);
      if (s.limit !== undefined && (last.limit === undefined || s.limit > last.limit)) last.limit = s.limit;
      continue;
    }
    groups.push({ s, size: BigInt(s.sizeBytes), limit: s.limit });
  }
  return groups.map(({ s, size, limit }, i) => {
    let end: bigint;
    if (size > 0n) end = s.address + size > MAX ? MAX : s.address + size;
    else {
      const next = groups[i + 1]?.s.address ?? MAX;
      const lim = limit !== undefined && limit > s.address ? limit : MAX;
      end = next < lim ? next : lim;
    }
    return { start: s.address, end, name: s.name, payload: s.payload ?? -1 };
  });
}
