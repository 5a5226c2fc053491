// What the symbolizer keeps of one ELF binary: enough to turn a runtime
// address into a function name, and nothing else (the file is closed after).

import { findDebugFile } from './debug-files.js';
import { ElfReader, type ProgramHeader } from './elf.js';
import { SymbolTableBuilder, type SymbolTable } from './symbol-table.js';

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

/** Reads what BinaryInfo needs from an open ELF (which the caller closes). Throws ElfError on malformed files. */
export function loadBinary(elf: ElfReader, opts: LoadOptions): BinaryInfo {
  const buildId = elf.buildId();
  const loadSegments = elf.loadSegments.map(({ offset, vaddr, fileSizeBytes, memSizeBytes, flags }) => ({ offset, vaddr, fileSizeBytes, memSizeBytes, flags }));
  const builder = new SymbolTableBuilder(1024);
  const hasSymtab = elf.hasSymtab();
  let symbolSource: BinaryInfo['symbolSource'] = 'none';
  let debugFile: string | null = null;
  if (hasSymtab) {
    // Like perf and elfutils: .dynsym only when there is no .symtab. A linker's .symtab holds every
    // defined .dynsym symbol (e.g. all 61k .dynsym functions of /usr/bin/node are among its 78k .symtab
    // ones), so reading both would only double the work and the name bytes read.
    elf.addFunctionSymbols(builder, ['.symtab']);
    symbolSource = 'symtab';
  } else {
    let debugLink = null;
    try {
      debugLink = elf.debugLink();
    } catch {
      debugLink = null;
    }
    const found = findDebugFile({ roots: opts.debugRoots, binaryPath: opts.binaryPath, buildId, debugLink });
    let fromDebug = 0;
    if (found !== null) {
      try {
        const dbg = ElfReader.open(found.path);
        try {
          fromDebug = dbg.addFunctionSymbols(builder, ['.symtab']);
          if (fromDebug > 0) debugFile = found.path;
        } finally {
          dbg.close();
        }
      } catch {
        // A broken debug file is no worse than none: keep the .dynsym names.
        fromDebug = 0;
      }
    }
    // The debug file's .symtab covers .dynsym the same way.
    const fromDynsym = fromDebug > 0 ? 0 : elf.addFunctionSymbols(builder, ['.dynsym']);
    symbolSource = fromDebug > 0 ? 'debug-file' : fromDynsym > 0 ? 'dynsym' : 'none';
  }
  return { buildId, elfType: elf.header.type, loadSegments, symbols: builder.build(), symbolSource, debugFile };
}
