import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { packageRoot } from '../util/package-root.js';
import { explainAddonLoadFailure, explainBpfFailure } from './errors.js';

/** A file descriptor of a BPF map as returned by the addon. */
export type MapFd = number;

export interface MapInfo {
  fd: MapFd;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
}

export interface DrainedEntries {
  keys: Buffer;
  values: Buffer;
  count: number;
}

interface NativeBpfObject {
  mapInfo(name: string): MapInfo;
  attachPerfEvent(programName: string, cpu: number, frequencyHz: number): void;
  attachProgram(programName: string): void;
  programStats(programName: string): { runTimeNs: number; runCount: number };
  startRingBuffer(mapName: string, onRecords: (records: Buffer[]) => void): void;
  consumeRingBuffers(): void;
  detach(): void;
  destroy(): void;
}

export interface NativeAddon {
  BpfObject: new (objectPath: string, mapMaxEntries: Record<string, number>) => NativeBpfObject;
  mapLookup(fd: MapFd, key: Buffer, valueSize: number): Buffer | null;
  mapUpdate(fd: MapFd, key: Buffer, value: Buffer): void;
  mapDrain(fd: MapFd, keySize: number, valueSize: number): DrainedEntries;
  /** Returns whether the key was there. */
  mapDelete(fd: MapFd, key: Buffer): boolean;
  /** `count` packed keys and values in one syscall. */
  mapUpdateBatch(fd: MapFd, keys: Buffer, values: Buffer, count: number): void;
  /** Copies `data` into the values of an array map created with BPF_F_MMAPABLE at `byteOffset` (values take round_up(valueSize, 8) bytes each). */
  mapWrite(fd: MapFd, byteOffset: number, data: Buffer): void;
  enableBpfStats(): number;
  closeFd(fd: number): void;
  possibleCpuCount(): number;
  libbpfVersion(): string;
}

let addon: NativeAddon | undefined;

export function loadAddon(): NativeAddon {
  if (addon) return addon;
  const path = join(packageRoot(), 'native', 'build', 'Release', 'fleetprof_native.node');
  try {
    addon = createRequire(import.meta.url)(path) as NativeAddon;
  } catch (error) {
    throw explainAddonLoadFailure(error, path);
  }
  return addon;
}

/** The sampler's BPF object; `unwindTables`: the build with the .eh_frame table walker (--unwind dwarf). */
export function bpfObjectPath(unwindTables = false): string {
  // FLEETPROF_BPF_OBJECT: a variant of the program (benchmarks compare builds with parts disabled).
  const path = process.env.FLEETPROF_BPF_OBJECT ?? join(packageRoot(), 'bpf', 'build', unwindTables ? 'profile-unwind.bpf.o' : 'profile.bpf.o');
  if (!existsSync(path)) throw new Error(`the BPF object ${path} is not built. Run: npm run build`);
  return path;
}

/** A loaded BPF object whose failures come out as advice (see errors.ts). */
export class BpfObject {
  private readonly native: NativeBpfObject;

  constructor(objectPath: string, mapMaxEntries: Record<string, number>) {
    const { BpfObject: Native } = loadAddon();
    this.native = wrap(() => new Native(objectPath, mapMaxEntries));
  }

  mapInfo(name: string): MapInfo {
    return this.native.mapInfo(name);
  }
  attachPerfEvent(programName: string, cpu: number, frequencyHz: number): void {
    wrap(() => this.native.attachPerfEvent(programName, cpu, frequencyHz));
  }
  attachProgram(programName: string): void {
    wrap(() => this.native.attachProgram(programName));
  }
  programStats(programName: string): { runTimeNs: number; runCount: number } {
    return this.native.programStats(programName);
  }
  startRingBuffer(mapName: string, onRecords: (records: Buffer[]) => void): void {
    wrap(() => this.native.startRingBuffer(mapName, onRecords));
  }
  consumeRingBuffers(): void {
    this.native.consumeRingBuffers();
  }
  detach(): void {
    this.native.detach();
  }
  destroy(): void {
    this.native.destroy();
  }
}

function wrap<T>(fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    throw explainBpfFailure(error);
  }
}
