// What building `.eh_frame` unwind tables costs a cold host: CPU, wall time
// and peak memory of table-builder.ts's buildTableSteps() (what the agent's
// table worker runs) for /usr/bin/node, libc, a few big system libraries and
// every executable file the running processes map. No BPF: in-process only.
//
// Each measurement runs in a fresh child process so its peak RSS is its own
// and the JIT is as cold as in a new worker: one child per file, and one
// child that builds every file in turn, as the worker does on a new host.
// Several checkouts (each with its dist/ built) can be given: they run
// interleaved, round by round, so they share the machine's noise, and the
// tables they build are compared by digest (any difference is reported).
// CPU is process.cpuUsage() (user + system, GC threads included) around the
// build; peak RSS is getrusage's maxRSS minus the RSS before the build; peak
// heap is V8's used heap plus external memory (array buffers), sampled at every step of the
// build (the builder yields every few hundred FDEs).
// Usage: node dist/bench/unwind-table-build.js [--rounds 5] [--files a,b,...] [--no-mapped] [CHECKOUT ...]
// (no CHECKOUT: this one; e.g. `/tmp/main-checkout .` compares main with this branch).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, constants, existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { loadavg } from 'node:os';
import { getHeapStatistics } from 'node:v8';
import { basename, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { packageRoot } from '../src/util/package-root.js';

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    rounds: { type: 'string', default: '5' },
    files: { type: 'string' },
    // Leave out the files the running processes map (only node, libc and the fixed list).
    'no-mapped': { type: 'boolean', default: false },
    child: { type: 'string' },
  },
});

/** What one child measured. */
interface Measurement {
  files: string[];
  cpuMs: number;
  wallMs: number;
  /** maxRSS during the build minus the RSS before it. */
  peakRssDeltaMb: number;
  maxRssMb: number;
  peakHeapMb: number;
  fdes: number;
  inputRows: number;
  tableRows: number;
  /** SHA-256 of every table's arrays, segments and unsupported counts. */
  digest: string;
}

type BuildResult =
  | { kind: 'table'; segments: unknown; unsupported: unknown; rules: Int32Array; rows: Uint32Array; pages: Uint32Array; pageFirstRow: Uint32Array; pageRowCount: Uint32Array }
  | { kind: 'noTable'; reason: string };
interface BuilderModule {
  buildTableSteps(paths: readonly string[]): Generator<void, BuildResult>;
}
interface CfiModule {
  compileCfiSteps(source: unknown): Generator<void, { table: { stats: { fdes: number; inputRows: number; tableRows: number } } | undefined }>;
}
interface ElfModule {
  FileByteSource: new (path: string) => { close(): void };
}

const mb = (bytes: number): number => bytes / (1 << 20);

async function child(checkout: string, files: string[]): Promise<void> {
  const load = (relative: string): Promise<unknown> => import(pathToFileURL(join(checkout, 'dist', 'src', relative)).href);
  const builder = (await load('unwind/table-builder.js')) as BuilderModule;
  const rssBefore = process.memoryUsage().rss;
  let peakHeap = 0;
  // V8's own counters (a few µs), not process.memoryUsage(), which also reads the RSS from /proc.
  const sampleHeap = (): void => {
    const heap = getHeapStatistics();
    peakHeap = Math.max(peakHeap, heap.used_heap_size + heap.external_memory);
  };
  sampleHeap();
  const results: BuildResult[] = [];
  const cpuBefore = process.cpuUsage();
  const wallBefore = performance.now();
  for (const file of files) {
    const steps = builder.buildTableSteps([file]);
    for (;;) {
      const step = steps.next();
      sampleHeap();
      if (step.done === true) {
        results.push(step.value);
        break;
      }
    }
  }
  const cpu = process.cpuUsage(cpuBefore);
  const wallMs = performance.now() - wallBefore;
  const maxRss = process.resourceUsage().maxRSS * 1024;
  // Not measured: the digest, and the row counts from the compile step alone (its stats are not in a built table).
  const hash = createHash('sha256');
  for (const result of results) {
    if (result.kind !== 'table') {
      hash.update(`noTable ${result.reason}\n`);
      continue;
    }
    hash.update(JSON.stringify([result.segments, result.unsupported]));
    for (const array of [result.rules, result.rows, result.pages, result.pageFirstRow, result.pageRowCount]) {
      hash.update(`${array.length}:`);
      hash.update(new Uint8Array(array.buffer, array.byteOffset, array.byteLength));
    }
  }
  const cfi = (await load('unwind/elf-cfi.js')) as CfiModule;
  const elf = (await load('symbolize/elf.js')) as ElfModule;
  let fdes = 0;
  let inputRows = 0;
  let tableRows = 0;
  for (const file of files) {
    let source: { close(): void } | undefined;
    try {
      source = new elf.FileByteSource(file);
      const steps = cfi.compileCfiSteps(source);
      let step = steps.next();
      while (step.done !== true) step = steps.next();
      const stats = step.value.table?.stats;
      fdes += stats?.fdes ?? 0;
      inputRows += stats?.inputRows ?? 0;
      tableRows += stats?.tableRows ?? 0;
    } catch {
      // not an ELF file: its build above said so (noTable)
    } finally {
      source?.close();
    }
  }
  const measurement: Measurement = {
    files,
    cpuMs: (cpu.user + cpu.system) / 1000,
    wallMs,
    peakRssDeltaMb: mb(maxRss - rssBefore),
    maxRssMb: mb(maxRss),
    peakHeapMb: mb(peakHeap),
    fdes,
    inputRows,
    tableRows,
    digest: hash.digest('hex').slice(0, 16),
  };
  process.stdout.write(JSON.stringify(measurement) + '\n');
}

/** Executable files mapped by the running processes (what an agent starting now would build). */
function mappedExecutables(): string[] {
  const found = new Set<string>();
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    let maps: string;
    try {
      maps = readFileSync(`/proc/${pid}/maps`, 'utf8');
    } catch {
      continue; // gone, or not ours to read
    }
    for (const line of maps.split('\n')) {
      const fields = line.trim().split(/\s+/);
      const path = fields[5];
      if (fields[1]?.includes('x') !== true || path === undefined || !path.startsWith('/') || path.startsWith('/memfd:') || fields.length > 6) continue;
      found.add(path);
    }
  }
  return [...found];
}

/** The files to build: node, libc, big system libraries that exist here, and (unless --no-mapped) what processes map. */
function filesToBuild(): string[] {
  if (args.files !== undefined) return args.files.split(',').filter((f) => f !== '');
  const fixed = [
    '/usr/bin/node',
    '/lib/x86_64-linux-gnu/libc.so.6',
    '/lib/x86_64-linux-gnu/libstdc++.so.6',
    '/lib/x86_64-linux-gnu/libcrypto.so.3',
    '/lib/x86_64-linux-gnu/libpython3.11.so.1.0',
    '/lib/x86_64-linux-gnu/libperl.so.5.36',
    '/usr/bin/bash',
  ];
  const candidates = [...fixed, ...(args['no-mapped'] ? [] : mappedExecutables())];
  const seen = new Set<string>();
  const files: string[] = [];
  for (const path of candidates) {
    let real: string;
    try {
      real = realpathSync(path);
      accessSync(real, constants.R_OK);
      if (!statSync(real).isFile()) continue;
    } catch {
      continue;
    }
    if (seen.has(real)) continue;
    seen.add(real);
    files.push(real);
  }
  return files;
}

function runChild(checkout: string, files: string[]): Measurement {
  const out = execFileSync(process.execPath, [join(packageRoot(), 'dist', 'bench', 'unwind-table-build.js'), '--child', checkout, '--files', files.join(',')], {
    encoding: 'utf8',
    maxBuffer: 16 << 20,
  });
  return JSON.parse(out.trim().split('\n').at(-1)!) as Measurement;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function main(): void {
  const checkouts = (positionals.length > 0 ? positionals : [packageRoot()]).map((c) => resolve(c));
  for (const checkout of checkouts) {
    if (!existsSync(join(checkout, 'dist', 'src', 'unwind', 'table-builder.js'))) throw new Error(`${checkout} has no dist/src/unwind/table-builder.js: build it (npx tsc -p tsconfig.json)`);
  }
  const labels = checkouts.map((c, i) => `${basename(c)}${checkouts.filter((d) => basename(d) === basename(c)).length > 1 ? `#${i}` : ''}`);
  const files = filesToBuild();
  const rounds = Number(args.rounds);
  const jobs: string[][] = [files, ...files.map((f) => [f])];
  // results[job][checkout] = one measurement per round
  const results: Measurement[][][] = jobs.map(() => checkouts.map(() => []));
  const loads: string[] = [];
  for (let round = 0; round < rounds; round++) {
    const loadBefore = loadavg()[0]!;
    for (let j = 0; j < jobs.length; j++) {
      // Alternate which checkout goes first, so neither always runs right after the other's garbage.
      const order = checkouts.map((_, i) => i);
      if ((round + j) % 2 === 1) order.reverse();
      for (const i of order) results[j]![i]!.push(runChild(checkouts[i]!, jobs[j]!));
    }
    loads.push(`${loadBefore.toFixed(2)}-${loadavg()[0]!.toFixed(2)}`);
    process.stderr.write(`round ${round + 1}/${rounds} done, load ${loads.at(-1)}\n`);
  }

  const lines: string[] = [];
  lines.push(`Checkouts: ${checkouts.map((c, i) => `${labels[i]} = ${c}`).join('; ')}. ${rounds} rounds, medians; load average (1 min) per round ${loads.join(', ')}.`);
  lines.push('');
  const header = ['file', 'FDEs', 'rows in -> table rows', ...labels.flatMap((l) => [`${l} CPU ms`, `${l} wall ms`, `${l} peak RSS +MB`, `${l} peak heap MB`])];
  if (checkouts.length > 1) header.push(`CPU ${labels.at(-1)}/${labels[0]}`, `RSS+ ${labels.at(-1)}/${labels[0]}`, 'same tables');
  lines.push(`| ${header.join(' | ')} |`);
  lines.push(`| ${header.map(() => '---').join(' | ')} |`);
  for (let j = 0; j < jobs.length; j++) {
    const first = results[j]![0]![0]!;
    const name = j === 0 ? `all ${files.length} files, one process` : jobs[j]![0]!;
    const cells = [name, String(first.fdes), `${first.inputRows} -> ${first.tableRows}`];
    const cpu = results[j]!.map((runs) => median(runs.map((r) => r.cpuMs)));
    const rss = results[j]!.map((runs) => median(runs.map((r) => r.peakRssDeltaMb)));
    for (let i = 0; i < checkouts.length; i++) {
      const runs = results[j]![i]!;
      cells.push(cpu[i]!.toFixed(0), median(runs.map((r) => r.wallMs)).toFixed(0), rss[i]!.toFixed(1), median(runs.map((r) => r.peakHeapMb)).toFixed(1));
    }
    if (checkouts.length > 1) {
      const digests = new Set(results[j]!.flatMap((runs) => runs.map((r) => r.digest)));
      cells.push((cpu.at(-1)! / cpu[0]!).toFixed(2), (rss.at(-1)! / Math.max(0.1, rss[0]!)).toFixed(2), digests.size === 1 ? 'yes' : `NO (${[...digests].join(', ')})`);
    }
    lines.push(`| ${cells.join(' | ')} |`);
  }
  process.stdout.write(lines.join('\n') + '\n');
}

if (args.child !== undefined) {
  await child(args.child, (args.files ?? '').split(',').filter((f) => f !== ''));
} else {
  main();
}
