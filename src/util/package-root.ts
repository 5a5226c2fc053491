import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// Code runs both from src/ (vitest) and from dist/src/ (the CLI); build
// artefacts (BPF object, addon) are found relative to the package root.
let cachedRoot: string | undefined;

export function packageRoot(): string {
  if (cachedRoot !== undefined) return cachedRoot;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'bpf'))) {
      cachedRoot = dir;
      return dir;
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error('fleetprof: cannot find the package root above ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
}
