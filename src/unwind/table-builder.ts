// Builds one file's unwind table: opens it (through the first of several
// paths that works), reads its PT_LOAD segments and its CFI, and compiles the
// rows. Pure CPU and file reads, no BPF: it runs in the table worker
// (table-worker.ts) so a big runtime's table never holds the agent's event
// loop, and in tests directly. The result is typed arrays only (transferable
// to the main thread without a copy); the parse buffers stay behind and are
// garbage once it returns.

import { ElfError, ElfReader, FileByteSource, PT_LOAD } from '../symbolize/elf.js';
import { compileCfiSteps } from './elf-cfi.js';
import type { CfaKindValue, FpKindValue, UnwindRule } from './rules.js';

export interface LoadSegment {
  offset: number;
  vaddr: number;
  fileSize: number;
}

export interface BuiltTable {
  kind: 'table';
  segments: LoadSegment[];
  /** Distinct rules, 4 int32 each: cfa kind, cfa offset, fp kind, fp offset. Rows refer to them by index. */
  rules: Int32Array;
  /** Per row: low 16 bits of its address | local rule index << 16. */
  rows: Uint32Array;
  pages: Uint32Array;
  pageFirstRow: Uint32Array;
  pageRowCount: Uint32Array;
  /** Rows whose rule the walker cannot follow, by reason. */
  unsupported: [string, number][];
  buildMs: number;
}

export interface NoTable {
  kind: 'noTable';
  /** 'unreadable', 'no CFI', or an ElfError code. */
  reason: string;
  segments: LoadSegment[];
  buildMs: number;
}

export type BuildResult = BuiltTable | NoTable;

export const RULE_FIELDS = 4;

export function decodeRule(rules: Int32Array, index: number): UnwindRule {
  const at = index * RULE_FIELDS;
  return { cfa: rules[at]! as CfaKindValue, cfaOffset: rules[at + 1]!, fp: rules[at + 2]! as FpKindValue, fpOffset: rules[at + 3]! };
}

/** The buffers to transfer (not copy) with a result. */
export function transferList(result: BuildResult): ArrayBuffer[] {
  if (result.kind !== 'table') return [];
  return [result.rules, result.rows, result.pages, result.pageFirstRow, result.pageRowCount].map((a) => a.buffer as ArrayBuffer);
}

/**
 * buildTable() in steps: yields between slices of FDE programs so the worker
 * can serve a small file (a new program's own binary) while a big runtime
 * (node: 76k FDEs) is half built.
 */
export function* buildTableSteps(paths: readonly string[]): Generator<void, BuildResult> {
  const started = performance.now();
  let source: FileByteSource | undefined;
  for (const path of paths) {
    try {
      source = new FileByteSource(path);
      break;
    } catch {
      // try the next way in
    }
  }
  if (source === undefined) return { kind: 'noTable', reason: 'unreadable', segments: [], buildMs: performance.now() - started };
  let segments: LoadSegment[] = [];
  try {
    const elf = new ElfReader(source);
    segments = elf.programHeaders.filter((p) => p.type === PT_LOAD).map((p) => ({ offset: p.offset, vaddr: Number(p.vaddr), fileSize: p.fileSizeBytes }));
    const { table } = yield* compileCfiSteps(source);
    if (table === undefined) return { kind: 'noTable', reason: 'no CFI', segments, buildMs: performance.now() - started };
    const rules = new Int32Array(table.rules.length * RULE_FIELDS);
    table.rules.forEach((rule, i) => rules.set([rule.cfa, rule.cfaOffset, rule.fp, rule.fpOffset], i * RULE_FIELDS));
    return {
      kind: 'table',
      segments,
      rules,
      rows: table.rows,
      pages: table.pages,
      pageFirstRow: table.pageFirstRow,
      pageRowCount: table.pageRowCount,
      unsupported: [...table.stats.unsupported],
      buildMs: performance.now() - started,
    };
  } catch (error) {
    if (!(error instanceof ElfError)) throw error;
    return { kind: 'noTable', reason: error.code, segments, buildMs: performance.now() - started };
  } finally {
    source.close();
  }
}

export function buildTable(paths: readonly string[]): BuildResult {
  const steps = buildTableSteps(paths);
  for (;;) {
    const step = steps.next();
    if (step.done === true) return step.value;
  }
}
