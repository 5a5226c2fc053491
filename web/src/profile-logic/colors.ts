// Frame colours: a hue family per frame kind (native warm, JIT green, kernel
// blue, unknown grey-violet), the hue within the family from a hash of the
// binary/package, so colours are stable across reloads and machines.
import type { FrameKind } from '../../../src/profile/api-types.js';

export type Scheme = 'light' | 'dark';

/** FNV-1a, 32 bit. */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export const KIND_FAMILY: Record<FrameKind, { hue: number; range: number; sat: number; label: string }> = {
  native: { hue: 10, range: 40, sat: 75, label: 'native' },
  jit: { hue: 95, range: 50, sat: 55, label: 'JIT' },
  kernel: { hue: 200, range: 45, sat: 65, label: 'kernel' },
  unknown: { hue: 265, range: 40, sat: 18, label: 'unknown' },
  label: { hue: 45, range: 10, sat: 12, label: 'group' },
};

/** The package a frame belongs to: the binary's base name, or for JIT frames a name prefix. */
export function packageOf(kind: FrameKind, binary: string, name: string): string {
  if (kind === 'jit' || binary === '') {
    const m = /^(.*?)(?:::|\.|\/)[^.:/]*$/.exec(name.replace(/\(.*$/, ''));
    return m && m[1] ? m[1] : name;
  }
  const slash = binary.lastIndexOf('/');
  return slash >= 0 ? binary.slice(slash + 1) : binary;
}

export function frameColor(kind: FrameKind, binary: string, name: string, scheme: Scheme): string {
  const fam = KIND_FAMILY[kind] ?? KIND_FAMILY.unknown;
  const hp = hashString(packageOf(kind, binary, name));
  const hn = hashString(name);
  const hue = fam.hue + (hp % (fam.range + 1));
  const light = scheme === 'dark' ? 34 + (hn % 10) : 62 + (hn % 12);
  return `hsl(${hue} ${fam.sat}% ${light}%)`;
}

export function legendColor(kind: FrameKind, scheme: Scheme): string {
  const fam = KIND_FAMILY[kind];
  return `hsl(${fam.hue + fam.range / 2} ${fam.sat}% ${scheme === 'dark' ? 40 : 65}%)`;
}

/** Diff colour: red for a growing share, blue for a shrinking one, grey for no change. */
export function diffColor(delta: number, scale: number, scheme: Scheme): string {
  const t = Math.max(-1, Math.min(1, scale > 0 ? delta / scale : 0));
  const a = Math.abs(t);
  const hue = t >= 0 ? 0 : 215;
  const sat = Math.round(10 + 80 * a);
  const light = scheme === 'dark' ? Math.round(30 + 12 * a) : Math.round(85 - 25 * a);
  return `hsl(${hue} ${sat}% ${light}%)`;
}
