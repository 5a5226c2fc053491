import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
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
  /** Entry id -> bytes on disk. The spool's files are ours alone, so this is
   * read from disk once at start and kept in step after, instead of a
   * directory scan on every put and every metrics scrape. */
  private readonly sizes = new Map<string, number>();
  private totalBytes = 0;

  constructor(dir: string, maxBytes: number) {
    this.dir = dir;
    this.maxBytes = maxBytes;
    mkdirSync(dir, { recursive: true });
    this.removeIncomplete();
    for (const name of readdirSync(dir).filter((n) => n.endsWith(BODY_SUFFIX)).sort()) {
      const id = name.slice(0, -BODY_SUFFIX.length);
      this.track(id, this.sizeOnDisk(id));
    }
  }

  /**
   * A new entry id: it sorts after every id given before (creation time,
   * then a sequence), so a profile held in memory (Shipper, spool 'failure')
   * takes its place in the send order and keeps it if it is spooled later.
   */
  newId(): string {
    return `${Date.now().toString().padStart(15, '0')}-${process.pid}-${(this.sequence++).toString().padStart(8, '0')}`;
  }

  /** Writes an entry durably; `id` from newId() when the entry was named before (else a new one). */
  put(labels: Record<string, string>, body: Buffer, id: string = this.newId()): string {
    // Labels first and the body last, each written, fsynced and renamed into
    // place, then the directory fsynced (the renames are directory entries):
    // only then is the entry spooled, so a node crash after put() returns
    // loses nothing. A crash before leaves a .tmp or a lone labels file,
    // which removeIncomplete cleans.
    const labelsBytes = Buffer.from(JSON.stringify(labels));
    writeDurably(join(this.dir, id + LABELS_SUFFIX), labelsBytes);
    writeDurably(join(this.dir, id + BODY_SUFFIX), body);
    fsyncDirectory(this.dir);
    this.track(id, labelsBytes.length + body.length);
    this.trim();
    return id;
  }

  /** Ids, oldest first. */
  list(): string[] {
    return [...this.sizes.keys()].sort();
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
    this.totalBytes -= this.sizes.get(id) ?? 0;
    this.sizes.delete(id);
  }

  stats(): SpoolStats {
    return { files: this.sizes.size, bytes: this.totalBytes, droppedProfiles: this.droppedProfiles, droppedBytes: this.droppedBytes };
  }

  private track(id: string, size: number): void {
    this.sizes.set(id, size);
    this.totalBytes += size;
  }

  private sizeOnDisk(id: string): number {
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
    for (const id of this.list()) {
      if (this.totalBytes <= this.maxBytes) break;
      this.droppedBytes += this.sizes.get(id) ?? 0;
      this.droppedProfiles++;
      this.remove(id);
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

/** Writes `data` to path.tmp, fsyncs it, renames it to path (fsync the directory after). */
function writeDurably(path: string, data: Buffer): void {
  const fd = openSync(path + '.tmp', 'w');
  try {
    for (let off = 0; off < data.length; ) off += writeSync(fd, data, off, data.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(path + '.tmp', path);
}

function fsyncDirectory(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
