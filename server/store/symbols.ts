// The in-memory half of the symbol database: every string, mapping, function,
// location and stack ever stored, deduplicated across all profiles (the same
// idea as Pyroscope's symdb and Parca's metastore). Ingest assigns global ids
// here synchronously (so there are no races between concurrent requests), and
// records the rows it created as "pending"; the store writes pending rows in
// the same transaction as the profiles that use them. Queries read symbols
// from here, never from SQLite.
//
// Stacks form a prefix tree rooted at id 0: a stack is (parent stack, leaf
// location). A child is always created after its parent, so parent id < id,
// which lets a merge propagate totals with one backwards pass.
import { IntPairMap, IntVec } from './int-pair-map.js';
import type { SqlValue } from './sqlite.js';

export interface MappingSym {
  memoryStart: bigint;
  memoryLimit: bigint;
  fileOffset: bigint;
  filename: number; // global string id
  buildId: number;
  flags: number; // bit0 has_functions, bit1 has_filenames, bit2 has_line_numbers, bit3 has_inline_frames
}

export interface FunctionSym {
  name: number;
  systemName: number;
  filename: number;
  startLine: number;
}

export interface LocationSym {
  mappingId: number; // 0 = none
  address: bigint;
  isFolded: boolean;
  /** Pairs (functionId, line), innermost (leaf) frame first as in pprof. */
  lines: number[];
}

export interface PendingRows {
  strings: SqlValue[][];
  mappings: SqlValue[][];
  functions: SqlValue[][];
  locations: SqlValue[][];
  stacks: SqlValue[][];
}

export function emptyPending(): PendingRows {
  return { strings: [], mappings: [], functions: [], locations: [], stacks: [] };
}

const hex = (v: bigint) => v.toString(16);

export class SymbolDb {
  readonly strings: string[] = [''];
  private readonly stringIds = new Map<string, number>([['', 0]]);
  // Index 0 of each table is a placeholder so ids are array indices.
  readonly mappings: (MappingSym | undefined)[] = [undefined];
  private readonly mappingIds = new Map<string, number>();
  readonly functions: (FunctionSym | undefined)[] = [undefined];
  private readonly functionIds = new Map<string, number>();
  readonly locations: (LocationSym | undefined)[] = [undefined];
  private readonly locationIds = new Map<string, number>();
  // Fast paths: a function is almost always identified by its name, a
  // location by its first function; building a composite string key for each
  // of the ~10k symbols of every profile was the top ingest cost.
  private readonly functionByName = new Map<number, number>();
  private readonly locationByFirstFn = new Map<number, number>();
  readonly stackParent = new IntVec(1 << 16);
  readonly stackLocation = new IntVec(1 << 16);
  private readonly stackIds = new IntPairMap(1 << 16);
  pending: PendingRows = emptyPending();

  constructor() {
    // Stack 0 is the root (empty stack).
    this.stackParent.push(-1);
    this.stackLocation.push(0);
  }

  get stackCount(): number {
    return this.stackParent.length;
  }

  takePending(): PendingRows {
    const p = this.pending;
    this.pending = emptyPending();
    return p;
  }

  /** Puts rows back after a failed transaction so the next flush writes them. */
  restorePending(p: PendingRows): void {
    const cur = this.pending;
    this.pending = {
      strings: [...p.strings, ...cur.strings],
      mappings: [...p.mappings, ...cur.mappings],
      functions: [...p.functions, ...cur.functions],
      locations: [...p.locations, ...cur.locations],
      stacks: [...p.stacks, ...cur.stacks],
    };
  }

  string(s: string): number {
    let id = this.stringIds.get(s);
    if (id === undefined) {
      id = this.strings.length;
      this.strings.push(s);
      this.stringIds.set(s, id);
      this.pending.strings.push([id, s]);
    }
    return id;
  }

  // Interning straight from a profile's UTF-8 bytes: hash the bytes, verify
  // against a copy of the bytes of the candidate string, and only decode a
  // JS string for strings not seen before. Result is always string(decoded).
  private readonly stringByBytes = new IntPairMap(1 << 16);
  private arena = new Uint8Array(1 << 20);
  private arenaLen = 0;
  private readonly strOff: number[] = [];
  private readonly strLen: number[] = [];
  private static readonly utf8 = new TextDecoder('utf-8', { fatal: false });

  stringFromBytes(buf: Uint8Array, s: number, e: number): number {
    // One multiply per byte; the second key is the length. A collision only
    // costs time: the candidate's bytes are compared below.
    let h1 = 0x811c9dc5;
    for (let k = s; k < e; k++) h1 = Math.imul(h1 ^ buf[k]!, 0x01000193);
    h1 = (h1 ^ (h1 >>> 15)) >>> 1;
    const h2 = e - s;
    const cand = this.stringByBytes.get(h1, h2);
    if (cand !== -1 && this.strLen[cand] === e - s) {
      const arena = this.arena;
      let o = this.strOff[cand]!;
      let k = s;
      while (k < e && arena[o] === buf[k]) {
        o++;
        k++;
      }
      if (k === e) return cand;
    }
    const id = this.string(SymbolDb.utf8.decode(buf.subarray(s, e)));
    if (cand === -1) {
      this.stringByBytes.insert(h1, h2, id);
      if (this.strLen[id] === undefined || this.strLen[id] < 0) {
        while (this.strLen.length <= id) {
          this.strLen.push(-1);
          this.strOff.push(0);
        }
        const n = e - s;
        if (this.arenaLen + n > this.arena.length) {
          const next = new Uint8Array(Math.max(this.arena.length * 2, this.arenaLen + n));
          next.set(this.arena.subarray(0, this.arenaLen));
          this.arena = next;
        }
        this.arena.set(buf.subarray(s, e), this.arenaLen);
        this.strOff[id] = this.arenaLen;
        this.strLen[id] = n;
        this.arenaLen += n;
      }
    }
    return id;
  }

  private static mappingKey(m: MappingSym): string {
    return `${hex(m.memoryStart)}|${hex(m.memoryLimit)}|${hex(m.fileOffset)}|${m.filename}|${m.buildId}|${m.flags}`;
  }

  mapping(m: MappingSym): number {
    const key = SymbolDb.mappingKey(m);
    let id = this.mappingIds.get(key);
    if (id === undefined) {
      id = this.mappings.length;
      this.mappings.push(m);
      this.mappingIds.set(key, id);
      this.pending.mappings.push([id, hex(m.memoryStart), hex(m.memoryLimit), hex(m.fileOffset), m.filename, m.buildId, m.flags]);
    }
    return id;
  }

  /** As func(), without building the object when the function is known. */
  funcOf(name: number, systemName: number, filename: number, startLine: number): number {
    const guess = this.functionByName.get(name);
    if (guess !== undefined) {
      const g = this.functions[guess]!;
      if (g.systemName === systemName && g.filename === filename && g.startLine === startLine) return guess;
    }
    return this.func({ name, systemName, filename, startLine });
  }

  func(f: FunctionSym): number {
    const guess = this.functionByName.get(f.name);
    if (guess !== undefined) {
      const g = this.functions[guess]!;
      if (g.systemName === f.systemName && g.filename === f.filename && g.startLine === f.startLine) return guess;
    }
    const key = `${f.name}|${f.systemName}|${f.filename}|${f.startLine}`;
    let id = this.functionIds.get(key);
    if (id === undefined) {
      id = this.functions.length;
      this.functions.push(f);
      this.functionIds.set(key, id);
      if (guess === undefined) this.functionByName.set(f.name, id);
      this.pending.functions.push([id, f.name, f.systemName, f.filename, f.startLine]);
    }
    return id;
  }

  // Location content hash -> id: one numeric probe per location of a pushed
  // profile instead of a composite string key; a hit is verified field by field.
  private readonly locationByHash = new IntPairMap(1 << 16);
  // Per location id, as int32 columns (no heap numbers): address halves,
  // mapping id and (line count << 1 | folded), for cheap exact checks.
  private readonly locAddrHi = new IntVec(1 << 16);
  private readonly locAddrLo = new IntVec(1 << 16);
  private readonly locMappingId = new IntVec(1 << 16);
  private readonly locShape = new IntVec(1 << 16);

  private static locationHash(mappingId: number, hi: number, lo: number, folded: boolean, lines: readonly number[]): void {
    let h1 = Math.imul(mappingId ^ 0x9e3779b9, 0x85ebca6b) ^ lo;
    let h2 = Math.imul(hi ^ 0x27d4eb2f, 0xc2b2ae35) ^ (folded ? 1 : 0);
    for (let i = 0; i < lines.length; i++) {
      const v = lines[i]!;
      h1 = Math.imul(h1 ^ (v | 0), 0x01000193);
      h2 = Math.imul(h2 + ((v / 4294967296) | 0) + (v | 0), 0x9e3779b1) ^ (h2 >>> 15);
    }
    SymbolDb.h1 = h1 >>> 1;
    SymbolDb.h2 = h2 & 0x7fffffff;
  }
  private static h1 = 0;
  private static h2 = 0;

  /** Global id of a location given its address as uint32 halves; `lines` is only read. */
  locationOf(mappingId: number, hi: number, lo: number, isFolded: boolean, lines: readonly number[]): number {
    SymbolDb.locationHash(mappingId, hi, lo, isFolded, lines);
    const h1 = SymbolDb.h1;
    const h2 = SymbolDb.h2;
    const cand = this.locationByHash.get(h1, h2);
    if (cand !== -1) {
      const c = this.locations[cand]!;
      if (c.mappingId === mappingId && this.locAddrHi.data[cand] === (hi | 0) && this.locAddrLo.data[cand] === (lo | 0) && c.isFolded === isFolded && c.lines.length === lines.length) {
        let same = true;
        for (let i = 0; i < lines.length; i++) {
          if (c.lines[i] !== lines[i]) {
            same = false;
            break;
          }
        }
        if (same) return cand;
      }
    }
    const id = this.location({ mappingId, address: (BigInt(hi) << 32n) | BigInt(lo), isFolded, lines: lines.slice() });
    if (cand === -1) this.locationByHash.insert(h1, h2, id);
    return id;
  }

  // Content cache filled by ingest: a 62-bit hash of a location's resolved
  // content (mapping id, address, folded flag, and per line the bytes of the
  // function's name / system name / filename, its start line and the line
  // number) -> global location id. A hit skips string, function and location
  // interning; mapping, address, folded flag and line count are compared exactly.
  readonly locationByContent = new IntPairMap(1 << 16);

  /** Whether location `id` has this mapping, address, folded flag and line count. */
  locationIs(id: number, mappingId: number, hi: number, lo: number, isFolded: boolean, nLines: number): boolean {
    return (
      id < this.locShape.length &&
      this.locAddrLo.data[id] === (lo | 0) &&
      this.locAddrHi.data[id] === (hi | 0) &&
      this.locMappingId.data[id] === mappingId &&
      this.locShape.data[id] === ((nLines << 1) | (isFolded ? 1 : 0))
    );
  }

  private noteAddress(id: number, l: LocationSym): void {
    while (this.locShape.length <= id) {
      // Id 0 and gaps: a shape of -1 never matches.
      this.locAddrHi.push(0);
      this.locAddrLo.push(0);
      this.locMappingId.push(0);
      this.locShape.push(-1);
    }
    this.locAddrHi.data[id] = Number((l.address >> 32n) & 0xffffffffn) | 0;
    this.locAddrLo.data[id] = Number(l.address & 0xffffffffn) | 0;
    this.locMappingId.data[id] = l.mappingId;
    this.locShape.data[id] = ((l.lines.length >> 1) << 1) | (l.isFolded ? 1 : 0);
  }

  location(l: LocationSym): number {
    const first = l.lines.length > 0 ? l.lines[0]! : -1;
    const guess = first >= 0 ? this.locationByFirstFn.get(first) : undefined;
    if (guess !== undefined && SymbolDb.sameLocation(this.locations[guess]!, l)) return guess;
    const lines = l.lines.join(',');
    const key = `${l.mappingId}|${hex(l.address)}|${l.isFolded ? 1 : 0}|${lines}`;
    let id = this.locationIds.get(key);
    if (id === undefined) {
      id = this.locations.length;
      this.locations.push(l);
      this.noteAddress(id, l);
      this.locationIds.set(key, id);
      if (first >= 0 && guess === undefined) this.locationByFirstFn.set(first, id);
      this.pending.locations.push([id, l.mappingId, hex(l.address), l.isFolded ? 1 : 0, lines]);
    }
    return id;
  }

  private static sameLocation(a: LocationSym, b: LocationSym): boolean {
    if (a.mappingId !== b.mappingId || a.address !== b.address || a.isFolded !== b.isFolded || a.lines.length !== b.lines.length) return false;
    for (let i = 0; i < a.lines.length; i++) if (a.lines[i] !== b.lines[i]) return false;
    return true;
  }

  // Whole-stack cache: hash of the global location sequence -> leaf stack id.
  // One multiply per frame instead of one hash-table probe per frame; a hit
  // is verified by walking the parent chain, so collisions cost only time.
  private readonly leafByHash = new IntPairMap(1 << 16);

  /**
   * Stack id of a sample whose global location ids are locs[from..to), leaf
   * first (pprof order). Creates missing prefix-tree nodes.
   */
  stackOf(locs: ArrayLike<number>, from: number, to: number): number {
    let h1 = 0x811c9dc5;
    let h2 = to - from;
    for (let j = from; j < to; j++) {
      const l = locs[j]!;
      h1 = Math.imul(h1 ^ l, 0x01000193);
      h2 = Math.imul(h2 + l, 0x9e3779b1) ^ (h2 >>> 15);
    }
    const k1 = h1 >>> 1;
    const k2 = h2 & 0x7fffffff;
    const cached = this.leafByHash.get(k1, k2);
    if (cached !== -1) {
      const parent = this.stackParent.data;
      const location = this.stackLocation.data;
      let s = cached;
      let j = from;
      while (j < to && s > 0 && location[s] === locs[j]) {
        s = parent[s]!;
        j++;
      }
      if (j === to && s === 0) return cached;
    }
    let stack = 0;
    for (let j = to - 1; j >= from; j--) stack = this.stack(stack, locs[j]!);
    this.leafByHash.set(k1, k2, stack);
    return stack;
  }

  /** Child of `parent` with leaf `location`, created if new. */
  stack(parent: number, location: number): number {
    let id = this.stackIds.get(parent, location);
    if (id === -1) {
      id = this.stackParent.length;
      this.stackParent.push(parent);
      this.stackLocation.push(location);
      this.stackIds.insert(parent, location, id);
      this.pending.stacks.push([id, parent, location]);
    }
    return id;
  }

  // ---- loading from SQLite at startup: rows arrive in id order ----

  loadString(id: number, s: string): void {
    this.fill(this.strings, id, '');
    this.strings[id] = s;
    this.stringIds.set(s, id);
  }

  loadMapping(id: number, m: MappingSym): void {
    this.fill(this.mappings, id, undefined);
    this.mappings[id] = m;
    this.mappingIds.set(SymbolDb.mappingKey(m), id);
  }

  loadFunction(id: number, f: FunctionSym): void {
    this.fill(this.functions, id, undefined);
    this.functions[id] = f;
    this.functionIds.set(`${f.name}|${f.systemName}|${f.filename}|${f.startLine}`, id);
    if (!this.functionByName.has(f.name)) this.functionByName.set(f.name, id);
  }

  loadLocation(id: number, l: LocationSym): void {
    this.fill(this.locations, id, undefined);
    this.locations[id] = l;
    this.noteAddress(id, l);
    this.locationIds.set(`${l.mappingId}|${hex(l.address)}|${l.isFolded ? 1 : 0}|${l.lines.join(',')}`, id);
    if (l.lines.length > 0 && !this.locationByFirstFn.has(l.lines[0]!)) this.locationByFirstFn.set(l.lines[0]!, id);
  }

  loadStack(id: number, parent: number, location: number): void {
    while (this.stackParent.length < id) {
      // A gap can only come from a crash between id assignment and commit;
      // keep ids aligned with a dead root-child that nothing references.
      this.stackParent.push(0);
      this.stackLocation.push(0);
    }
    this.stackParent.push(parent);
    this.stackLocation.push(location);
    this.stackIds.insert(parent, location, id);
  }

  private fill<T>(arr: T[], id: number, blank: T): void {
    while (arr.length < id) arr.push(blank);
  }
}
