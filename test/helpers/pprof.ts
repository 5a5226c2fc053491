import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { Profile } from 'pprof-format';

/** A pprof sample made readable: names root first, labels by key. */
export interface FlatSample {
  /** Function names from the root (outermost caller) to the leaf; '?' for unresolved. */
  stack: string[];
  /** Mapping file of each frame, same order as stack. */
  mappings: string[];
  values: number[];
  labels: Record<string, string | number>;
}

export function readProfile(path: string): Profile {
  return Profile.decode(gunzipSync(readFileSync(path)));
}

export function flattenProfile(profile: Profile): FlatSample[] {
  const strings = profile.stringTable.strings;
  const functions = new Map(profile.function.map((f) => [Number(f.id), strings[Number(f.name)] ?? '']));
  const mappings = new Map(profile.mapping.map((m) => [Number(m.id), strings[Number(m.filename)] ?? '']));
  const locations = new Map(profile.location.map((l) => [Number(l.id), l]));
  return profile.sample.map((sample) => {
    const stack: string[] = [];
    const files: string[] = [];
    for (const id of [...sample.locationId].reverse()) {
      const location = locations.get(Number(id));
      if (!location) throw new Error(`sample references missing location ${id}`);
      const file = mappings.get(Number(location.mappingId)) ?? '';
      // Inlined frames: line[0] is the innermost; root-first order wants the reverse.
      const lines = location.line.length === 0 ? [undefined] : [...location.line].reverse();
      for (const line of lines) {
        stack.push(line === undefined ? '?' : (functions.get(Number(line.functionId)) ?? '?'));
        files.push(file);
      }
    }
    const labels: Record<string, string | number> = {};
    for (const label of sample.label) {
      const key = strings[Number(label.key)] ?? '';
      labels[key] = Number(label.str) !== 0 ? (strings[Number(label.str)] ?? '') : Number(label.num);
    }
    return { stack, mappings: files, values: sample.value.map(Number), labels };
  });
}

/** True when `needle` appears in `stack` in order and without gaps. */
export function hasContiguousPath(stack: readonly string[], needle: readonly string[]): boolean {
  outer: for (let start = 0; start + needle.length <= stack.length; start++) {
    for (let i = 0; i < needle.length; i++) if (stack[start + i] !== needle[i]) continue outer;
    return true;
  }
  return false;
}

export function sumCounts(samples: readonly FlatSample[]): number {
  return samples.reduce((sum, sample) => sum + (sample.values[0] ?? 0), 0);
}
