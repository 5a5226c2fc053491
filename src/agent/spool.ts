import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';

/** One pushed profile waiting on disk: the gzipped pprof and its series labels. */
export interface SpooledProfile {
  id: string;
  labels: Record<string, string>;
  body: Buffer;
}

export interface SpoolStats {
  files: number;
  bytes: number;
  /** Profiles dropped because the spool was full (oldest first). */
  droppedProfiles: number;
  droppedBytes: number;
}

// File layout: <id>.pb.gz plus <id>.json (labels). The id sorts by creation
// time, so the backlog is sent oldest first and trimmed oldest first.
const BODY_SUFFIX = '.pb.gz';
const LABELS_SUFFIX = '.json';

/**
 * Profiles the server has not acknowledged yet, kept on disk so an agent
 * restart or a long server outage loses nothing until the size bound, and
 * then only the oldest, counted.
 */
export class DiskSpool {
  private readonly dir: string;
  private readonly maxBytes: number;
  private sequence = 0;
  private droppedProfiles = 0;
  private droppedBytes = 0;

  constructor(dir: string, maxBytes: number) {
    this.dir = dir;
    this.maxBytes = maxBytes;
    mkdirSync(dir, { recursive: true });
    this.removeIncomplete();
  }

  put(labels: Record<string, string>, body: Buffer): string {
    const id = `${Date.now().toString().padStart(15, '0')}-${process.pid}-${(this.sequence++).toString().padStart(8, '0')}`;
    // Labels first and the body last, each through a rename: a crash leaves
    // either a whole entry or an orphan that removeIncomplete cleans.
    writeAtomically(join(this.dir, id + LABELS_SUFFIX), Buffer.from(JSON.stringify(labels)));
    writeAtomically(join(this.dir, id + BODY_SUFFIX), body);
    this.trim();
    return id;
  }

  /** Ids, oldest first. */
  list(): string[] {
    return readdirSync(this.dir)
      .filter((name) => name.endsWith(BODY_SUFFIX))
      .map((name) => name.slice(0, -BODY_SUFFIX.length))
      .sort();
  }

  read(id: string): SpooledProfile | undefined {
    try {
      const labels = JSON.parse(readFileSync(join(this.dir, id + LABELS_SUFFIX), 'utf8')) as Record<string, string>;
      return { id, labels, body: readFileSync(join(this.dir, id + BODY_SUFFIX)) };
    } catch {
      this.remove(id); // unreadable entry: nothing could ever send it
      return undefined;
    }
  }

  remove(id: string): void {
    rmSync(join(this.dir, id + BODY_SUFFIX), { force: true });
    rmSync(join(this.dir, id + LABELS_SUFFIX), { force: true });
  }

  stats(): SpoolStats {
    const ids = this.list();
    return { files: ids.length, bytes: ids.reduce((sum, id) => sum + this.sizeOf(id), 0), droppedProfiles: this.droppedProfiles, droppedBytes: this.droppedBytes };
  }

  private sizeOf(id: string): number {
    let size = 0;
    for (const suffix of [BODY_SUFFIX, LABELS_SUFFIX]) {
      try {
        size += statSync(join(this.dir, id + suffix)).size;
      } catch {
        // removed meanwhile
      }
    }
    return size;
  }

  private trim(): void {
    const ids = this.list();
    let total = ids.reduce((sum, id) => sum + this.sizeOf(id), 0);
    for (const id of ids) {
      if (total <= this.maxBytes) break;
      const size = this.sizeOf(id);
      this.remove(id);
      total -= size;
      this.droppedProfiles++;
      this.droppedBytes += size;
    }
  }

  private removeIncomplete(): void {
    const names = new Set(readdirSync(this.dir));
    for (const name of names) {
      if (name.endsWith('.tmp')) rmSync(join(this.dir, name), { force: true });
      else if (name.endsWith(LABELS_SUFFIX) && !names.has(name.slice(0, -LABELS_SUFFIX.length) + BODY_SUFFIX)) rmSync(join(this.dir, name), { force: true });
    }
  }
}

function writeAtomically(path: string, data: Buffer): void {
  writeFileSync(path + '.tmp', data);
  renameSync(path + '.tmp', path);
}
