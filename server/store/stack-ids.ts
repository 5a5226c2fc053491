// Dense stack ids. A stack is still identified by its content hash (src/profile/identity.ts:
// `stacks.hash`, unique), so servers never coordinate to name the same stack.
// The database additionally gives each stack row a small integer `id` (the
// SQLite store's own counter, a PostgreSQL identity column), and packed
// samples and rollups store those: sorted dense ids of a profile's stacks
// differ by about (live stacks) / (stacks in the profile), one or two bytes
// per delta, where 53-bit hashes cost six or seven (sample-codec.ts).
//
// Two servers on one PostgreSQL may both insert a new stack: the unique
// hash lets only one row in (INSERT ... ON CONFLICT DO NOTHING) and the
// other reads that row's id back, so every content has one id.
//
// Ingest resolves hash -> id with the probe of the marks cache it makes
// anyway (store.ts): the cache keeps each stack's dense id beside its mark
// (committed-memory.ts), and a stack it vouches for is stored with a mark >=
// the profile's, so such a row is not collected while that profile is
// retained and the id is still its id (NewProfile.denseIds). The commit
// resolves the rest: rows it writes, stacks a lean push referenced
// (resolveStackRefs), and, should ingest not have known an id, by hash.
import { IdMap } from './id-map.js';
import { encodeSamples } from './sample-codec.js';
import { orderByKey } from './accumulator.js';
import { unpackIds, type NewProfile, type SymbolKind } from './store.js';
import { errIdCollision } from '../errors.js';

/** A stack row as ingest hands it to the store: hash, packed location ids, mark. */
export interface StackWrite {
  hash: number;
  locations: Buffer;
  mark: number;
  /**
   * The check lane the marks cache keeps for it (IngestBatch.checks). The
   * PostgreSQL backend stores it, so that servers sharing the database can
   * put rows other servers wrote into their caches (pg-store.ts, learnStacks).
   */
  check: number;
}

/** What a backend does inside its transaction to write stack rows and read ids. */
export interface StackRowIo {
  /** Existing rows among `hashes`: their id and stored locations. */
  select(hashes: number[]): Promise<{ hash: number; id: number; locations: Buffer }[]>;
  /**
   * Raises the mark of rows (by id) to at least `mark`; returns the ids it
   * found (a row another server's retention deleted meanwhile is missing
   * from the answer and gets inserted again).
   */
  bumpMarks(ids: number[], mark: number): Promise<number[]>;
  /** Inserts rows not stored yet; returns the (hash, id) of those it inserted (a row another writer inserted meanwhile is not returned). */
  insert(rows: StackWrite[]): Promise<{ hash: number; id: number }[]>;
}

/**
 * Writes the stack rows of one commit group and resolves the dense id of every
 * stack hash its profiles use that ingest did not know (NewProfile.denseIds).
 * Returns hash -> id of those (for the marks cache, after commit). Different
 * content under a stored hash is a collision: refused (FP_ERR_ID_COLLISION),
 * never merged.
 */
export async function writeStacks(
  rows: Map<number, StackWrite>,
  profiles: readonly NewProfile[],
  io: StackRowIo,
  /** hash -> id of stacks already resolved in this transaction (resolveStackRefs). */
  known?: Map<number, number>,
): Promise<{ ids: IdMap; collided: number[] }> {
  const ids = new IdMap(Math.max(256, rows.size + (known?.size ?? 0)));
  if (known) for (const [hash, id] of known) ids.set(hash, id);
  const collided: number[] = [];
  let pending = [...rows.values()].sort((a, b) => a.hash - b.hash);
  // Two rounds: a row another server inserts between our select and insert is found by the second select.
  for (let round = 0; round < 3 && pending.length > 0; round++) {
    const existing = await io.select(pending.map((r) => r.hash));
    const found = new Map(existing.map((e) => [e.hash, e]));
    const bump = new Map<number, StackWrite[]>();
    const missing: StackWrite[] = [];
    for (const r of pending) {
      const e = found.get(r.hash);
      if (!e) missing.push(r);
      else if (!e.locations.equals(r.locations)) collided.push(r.hash);
      else {
        ids.set(r.hash, e.id);
        let l = bump.get(r.mark);
        if (!l) bump.set(r.mark, (l = []));
        l.push(r);
      }
    }
    for (const [mark, list] of bump) {
      const kept = new Set(await io.bumpMarks(list.map((r) => ids.get(r.hash)), mark));
      for (const r of list) {
        if (kept.has(ids.get(r.hash))) continue;
        ids.set(r.hash, -1);
        missing.push(r);
      }
    }
    pending = missing;
    if (missing.length === 0) break;
    const inserted = await io.insert(missing);
    for (const x of inserted) ids.set(x.hash, x.id);
    pending = missing.filter((r) => ids.get(r.hash) < 0);
  }
  if (pending.length > 0) throw new Error(`stack rows ${pending.slice(0, 3).map((r) => r.hash).join(', ')} could neither be inserted nor found`);
  // Stacks the profiles use that ingest had no id for and this commit did not write: by hash.
  const lookup: number[] = [];
  for (const p of profiles) {
    const hs = p.stackHashes;
    const dense = p.denseIds;
    for (let i = 0; i < hs.length; i++) {
      const h = hs[i]!;
      if (h === 0 || (dense !== undefined && dense[i]! > 0) || ids.has(h)) continue;
      lookup.push(h);
      ids.set(h, -1); // once per hash
    }
  }
  if (lookup.length > 0) {
    for (const e of await io.select(lookup)) ids.set(e.hash, e.id);
    const lost = lookup.filter((h) => ids.get(h) < 0);
    // Cannot happen while marks hold (see the header); refuse rather than store a dangling reference.
    if (lost.length > 0) throw errIdCollision(`stacks ${lost.slice(0, 3).join(', ')} are neither in this request nor stored; retry the upload`);
  }
  return { ids, collided };
}

const newPackScratch = (n: number, nTypes: number) => ({ dense: new Float64Array(n), sortedIds: new Float64Array(n), vals: new Float64Array(n * Math.max(1, nTypes)) });
let packScratch = newPackScratch(4096, 2);

/** Packs one profile's samples under dense ids (ascending): those ingest knew, else from `ids` (writeStacks). */
export function encodeDense(p: NewProfile, ids: IdMap): { blob: Buffer; scales: number[]; nStacks: number } {
  const n = p.stackHashes.length;
  const nTypes = p.nTypes;
  // Scratch columns reused across calls (encodeSamples copies the blob out): every commit packs thousands of stacks.
  if (packScratch.dense.length < n) packScratch = newPackScratch(Math.max(n, packScratch.dense.length * 2), nTypes);
  if (packScratch.vals.length < n * nTypes) packScratch.vals = new Float64Array(n * nTypes * 2);
  const dense = packScratch.dense.subarray(0, n);
  const known = p.denseIds;
  for (let i = 0; i < n; i++) {
    const d = known !== undefined ? known[i]! : 0;
    if (d > 0) dense[i] = d;
    else {
      const h = p.stackHashes[i]!;
      dense[i] = h === 0 ? 0 : ids.get(h);
    }
  }
  const order = orderByKey(dense, n);
  const sortedIds = packScratch.sortedIds.subarray(0, n);
  const vals = packScratch.vals.subarray(0, n * nTypes);
  for (let k = 0; k < n; k++) {
    const i = order[k]!;
    sortedIds[k] = dense[i]!;
    for (let t = 0; t < nTypes; t++) vals[k * nTypes + t] = p.values[i * nTypes + t]!;
  }
  const { blob, scales } = encodeSamples(sortedIds, vals, nTypes);
  return { blob, scales, nStacks: n };
}

/** What resolveStackRefs needs of a backend, inside the ingest transaction. */
export interface RefRowIo {
  /** Stack rows among `hashes`: dense id, mark, packed location ids. */
  selectStacks(hashes: number[]): Promise<{ hash: number; id: number; mark: number; locations: Buffer }[]>;
  /** Location rows among `ids`: mark, mapping id, lines as stored ("functionId,line,..."). */
  selectLocations(ids: number[]): Promise<{ id: number; mark: number; mapping_id: number; lines: string }[]>;
  /** Raises the mark of the rows of a kind to at least `mark` (locking them); returns the ids found. */
  raiseMarks(kind: SymbolKind, ids: number[], mark: number): Promise<number[]>;
}

/**
 * Stacks a lean push referenced by content id (IngestBatch.refs), per mark:
 * finds their rows and raises the marks of those marked below the batch's,
 * with their locations, functions and mappings first (a row is marked no
 * later than what it references, store.ts), so garbage collection keeps them
 * as long as the new profile. Returns hash -> dense id of those found, and
 * the hashes the store does not hold (never stored, or collected): their
 * batches are refused with FP_ERR_UNKNOWN_STACKS and the agent sends their
 * definitions. In steady state the marks cache vouches for referenced stacks
 * and nothing reaches here; a row is raised at most once per mark epoch.
 */
export async function resolveStackRefs(refs: Map<number, number[]>, io: RefRowIo): Promise<{ ids: Map<number, number>; missing: number[] }> {
  const ids = new Map<number, number>();
  const missing: number[] = [];
  for (const [mark, hashes] of refs) {
    const rows = await io.selectStacks(hashes);
    const found = new Set<number>();
    const stale: { hash: number; id: number; locations: number[] }[] = [];
    for (const r of rows) {
      found.add(r.hash);
      ids.set(r.hash, r.id);
      if (r.mark < mark) stale.push({ hash: r.hash, id: r.id, locations: unpackIds(r.locations) });
    }
    for (const h of hashes) if (!found.has(h)) missing.push(h);
    if (stale.length === 0) continue;
    const locIds = new Set<number>();
    for (const s of stale) for (const l of s.locations) locIds.add(l);
    const locs = await io.selectLocations([...locIds].sort((a, b) => a - b));
    const present = new Set<number>();
    const staleLocs: number[] = [];
    const fns = new Set<number>();
    const maps = new Set<number>();
    for (const l of locs) {
      present.add(l.id);
      if (l.mark >= mark) continue; // its functions and mapping are marked at least as late
      staleLocs.push(l.id);
      if (l.mapping_id !== 0) maps.add(l.mapping_id);
      const parts = l.lines === '' ? [] : l.lines.split(',');
      for (let j = 0; j < parts.length; j += 2) fns.add(Number(parts[j]));
    }
    // Kind order, then id order (as the upserts): servers sharing a database lock rows in the same order.
    const byId = (xs: Iterable<number>) => [...xs].sort((a, b) => a - b);
    await io.raiseMarks('mapping', byId(maps), mark);
    await io.raiseMarks('function', byId(fns), mark);
    const raisedLocs = new Set(await io.raiseMarks('location', byId(staleLocs), mark));
    const staleLocSet = new Set(staleLocs);
    const whole: number[] = [];
    for (const s of stale) {
      // A location collected meanwhile (another server's retention): the stack cannot be vouched for.
      if (s.locations.every((l) => present.has(l) && (raisedLocs.has(l) || !staleLocSet.has(l)))) whole.push(s.id);
      else {
        missing.push(s.hash);
        ids.delete(s.hash);
      }
    }
    const raised = new Set(await io.raiseMarks('stack', byId(whole), mark));
    for (const s of stale) {
      if (ids.has(s.hash) && !raised.has(s.id)) {
        missing.push(s.hash);
        ids.delete(s.hash);
      }
    }
  }
  return { ids, missing };
}

/** A group's referenced stacks (IngestBatch.refs) by mark (the highest a hash needs), minus those the group writes itself. */
export function groupRefs(batches: readonly { mark: number; refs?: number[] }[], written: ReadonlyMap<number, unknown>): Map<number, number[]> {
  const markOf = new Map<number, number>();
  for (const b of batches) {
    for (const h of b.refs ?? []) {
      if (written.has(h)) continue;
      if ((markOf.get(h) ?? -Infinity) < b.mark) markOf.set(h, b.mark);
    }
  }
  const out = new Map<number, number[]>();
  for (const [h, m] of markOf) {
    let l = out.get(m);
    if (!l) out.set(m, (l = []));
    l.push(h);
  }
  for (const l of out.values()) l.sort((a, b) => a - b);
  return out;
}
