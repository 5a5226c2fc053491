import { execFileSync } from 'node:child_process';

/** binutils' readelf, the oracle the ELF tests check our reader against. */
export function readelf(args: string[]): string {
  return execFileSync('readelf', args, { encoding: 'utf8', maxBuffer: 256 << 20 });
}
