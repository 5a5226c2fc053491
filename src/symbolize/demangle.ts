// C++ (Itanium) and Rust (legacy and v0) demangling through
// gecko-profiler-demangle, the Firefox Profiler's wasm build of the
// cpp_demangle and rustc-demangle crates.
//
// Its index.js does `import * as wasm from "./index_bg.wasm"`, which Node 20
// cannot load without --experimental-wasm-modules. So we import only the JS
// glue (index_bg.js) and instantiate index_bg.wasm ourselves, synchronously on
// first use (a ~200 KB module, compiled in a few milliseconds), wiring it the
// way index.js does: the glue's exports are the wasm's imports, then
// __wbg_set_wasm(exports) and __wbindgen_start().

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { setFlagsFromString } from 'node:v8';
// @ts-expect-error the package ships types for index.js only; WasmGlue below types what we use.
import * as glueModule from 'gecko-profiler-demangle/index_bg.js';

type WasmExports = Record<string, unknown>;

interface WasmGlue {
  __wbg_set_wasm(exports: WasmExports): void;
  demangle_any(name: string): string;
}

// The WebAssembly global is in Node but not in the ES lib or @types/node 20; type the two calls we make.
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: Record<string, unknown>) => { exports: WasmExports };
}
const wasmApi = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

const glue = glueModule as unknown as WasmGlue;
const WASM_IMPORT_MODULE = './index_bg.js';
/** Demangled names of a fleet's binaries are few (they repeat across samples); past this the cache starts over. */
const MAX_CACHE_ENTRIES = 200_000;

let ready = false;
const cache = new Map<string, string>();
/** Names handed to the wasm demangler (cache misses): what the cache saves is visible in tests and stats. */
let demanglerCalls = 0;

export function demanglerCallCount(): number {
  return demanglerCalls;
}

function ensureLoaded(): void {
  if (ready) return;
  // Liftoff (V8's baseline wasm compiler) only: with tier-up on, V8 recompiled
  // the demangler's hot functions with TurboFan on a background thread, which
  // measured ~0.1 s of CPU in a 10 s `record` (perf, 99 Hz), for names that are
  // demangled once each and cached. The flag is read when a module is compiled;
  // the demangler is the only wasm fleetprof compiles itself.
  setFlagsFromString('--no-wasm-tier-up');
  const wasmPath = createRequire(import.meta.url).resolve('gecko-profiler-demangle/index_bg.wasm');
  const module = new wasmApi.Module(readFileSync(wasmPath));
  const instance = new wasmApi.Instance(module, { [WASM_IMPORT_MODULE]: glueModule });
  glue.__wbg_set_wasm(instance.exports);
  (instance.exports.__wbindgen_start as () => void)();
  ready = true;
}

/** True for names in the Itanium C++ (`_Z`, Mach-O style `__Z`) or Rust v0 (`_R`) mangling schemes; Rust legacy names are `_ZN...`. */
export function looksMangled(name: string): boolean {
  return name.startsWith('_Z') || name.startsWith('__Z') || name.startsWith('_R');
}

/** Demangles a symbol name; returns it unchanged if it is not mangled or does not demangle. Never throws. */
export function demangle(name: string): string {
  if (!looksMangled(name)) return name;
  const cached = cache.get(name);
  if (cached !== undefined) return cached;
  let result = name;
  try {
    ensureLoaded();
    demanglerCalls++;
    result = glue.demangle_any(name);
    // On names no demangler accepts, one of its fallbacks just drops the Mach-O leading underscore.
    if (result === name.slice(1)) result = name;
  } catch {
    // A demangler failure (e.g. a wasm trap on a pathological name) must not lose the frame.
    result = name;
  }
  if (cache.size >= MAX_CACHE_ENTRIES) cache.clear();
  cache.set(name, result);
  return result;
}
