// What the symbolizer keeps of one ELF binary: enough to turn a runtime
// address into a function name, and nothing else (the file is closed after).

import { findDebugFile } from './debug-files.js';
import { ElfReader, type ElfSymbol, type ProgramHeader } from './elf.js';
import { SymbolTable, type RawSymbol } from './symbol-table.js';

export type LoadSegment = Pick<ProgramHeader, 'offset' | 'vaddr' | 'fileSizeBytes' | 'memSizeBytes' | 'flags'>;

export interface BinaryInfo {
  buildId: string | null;
  /** ET_EXEC or ET_DYN */
  elfType: number;
  loadSegments: LoadSegment[];
  symbols: SymbolTable;
  /** Where the names came from: the binary's own .symtab, only its .dynsym (stripped, no debug file), or a separate debug file. */
  symbolSource: 'symtab' | 'dynsym' | 'debug-file' | 'none';
  /** Host path of the debug file used, if any. */
  debugFile: string | null;
}

export interface LoadOptions {
  /** Path of the binary as its process sees it, for .gnu_debuglink lookups. */
  binaryPath: string;
  /** Roots to search for debug files (the process's root first). */
  debugRoots: string[];
}

function toRaw(symbols: ElfSymbol[]): RawSymbol[] {
  return symbols.map((s) => ({ name: s.name, address: s.address, sizeBytes: s.sizeBytes, binding: s.binding, limit: s.sectionEnd }));
}

/** Reads what BinaryInfo needs from an open ELF (which the caller closes). Throws ElfError on malformed files. */
export function loadBinary(elf: ElfReader, opts: LoadOptions): BinaryInfo {
  const buildId = elf.buildId();
  const loadSegments = elf.loadSegments.map(({ offset, vaddr, fileSizeBytes, memSizeBytes, flags }) => ({ offset, vaddr, fileSizeBytes, memSizeBytes, flags }));
  let symbols = elf.functionSymbols();
  let symbolSource: BinaryInfo['symbolSource'] = elf.hasSymtab() ? 'symtab' : symbols.length > 0 ? 'dynsym' : 'none';
  let debugFile: string | null = null;
  if (!elf.hasSymtab()) {
    let debugLink = null;
    try {
      debugLink = elf.debugLink();
    } catch {
      debugLink = null;
    }
    const found = findDebugFile({ roots: opts.debugRoots, binaryPath: opts.binaryPath, buildId, debugLink });
    if (found !== null) {
      try {
        const dbg = ElfReader.open(found.path);
        try {
          const extra = dbg.functionSymbols(['.symtab']);
          if (extra.length > 0) {
            symbols = symbols.concat(extra);
            symbolSource = 'debug-file';
            debugFile = found.path;
          }
        } finally {
          dbg.close();
        }
      } catch {
        // A broken debug file is no worse than none: keep the .dynsym names.
      }
    }
  }
  return { buildId, elfType: elf.header.type, loadSegments, symbols: SymbolTable.fromSymbols(toRaw(symbols)), symbolSource, debugFile };
}
