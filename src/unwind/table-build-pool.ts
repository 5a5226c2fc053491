// The main thread's side of the table worker (table-worker.ts): sends it the
// files to build and hands each finished table to a callback. One worker: the
// machines this runs on give the agent a core at best, and one thread that
// builds while the event loop keeps draining and symbolizing is what keeps a
// new process's first samples whole. It is started on the first request the
// table cache cannot answer and ended after a while without any, so an idle
// agent does not keep its heap.
//
// The cache is read here, on the main thread, before any worker exists: a hit
// is a file read and a CRC check (node's table: ~2 MB, a few ms), while
// starting the worker costs a new isolate and its modules (52-66 ms of CPU,
// docs/benchmarks.md), which a warm start then never pays. For the same
// reason a small file the cache lacks is built here when no worker runs (a
// warm start's walks often reach one or two small libraries its cold start
// did not); a big one, or any file while a worker runs, goes to the worker.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { packageRoot } from '../util/package-root.js';
import { buildTable, type BuildResult } from './table-builder.js';
import { identityOf, TableCache, type TableCacheOptions } from './table-cache.js';

/** The worker ends after this long without work (its heap goes with it); the next request starts another. */
const IDLE_EXIT_MS = 10_000;
/**
 * Mappings up to this size are built on the main thread when no worker runs:
 * a few hundred FDEs, a few ms even before V8 optimizes the builder, against
 * the worker's start. Bigger ones would hold the event loop (libc: ~80 ms cold).
 */
const MAIN_THREAD_BUILD_MAX_BYTES = 256 << 10;

export interface BuildRequest {
  id: number;
  /** Ways to open the file, tried in order (through different processes' roots and map_files). */
  paths: string[];
  /** The mapping's size: the worker steps the smallest file first. */
  sizeBytes: number;
  /** The file's identity in the table cache, already looked up there (a miss or a corrupt entry): the worker builds and stores it. */
  identity?: string;
  cache?: CacheOutcome;
}

/** What the table cache (table-cache.ts) did for a build: undefined when there is no cache or the file could not be stat'ed. */
export type CacheOutcome = 'hit' | 'miss' | 'corrupt' | 'write failed';

export type WorkerReply = { type: 'built'; id: number; result: BuildResult; cache?: CacheOutcome } | { type: 'failed'; id: number; message: string };

/** The compiled worker script: next to this file when running from dist/, else in dist/ (vitest runs src/). */
function workerScript(): string {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith('.js')) return here.replace(/table-build-pool\.js$/, 'table-worker.js');
  const built = join(packageRoot(), 'dist', 'src', 'unwind', 'table-worker.js');
  if (!existsSync(built)) throw new Error(`fleetprof: the unwind table worker ${built} is missing: build with \`npx tsc -p tsconfig.json\``);
  return built;
}

export class TableBuildPool {
  private worker: Worker | undefined;
  private replies: MessagePort | undefined;
  private readonly pending = new Map<number, (reply: WorkerReply) => void>();
  private nextId = 1;
  private idleTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Workers started so far (one at a time). */
  started = 0;
  /** Tables built on the main thread (small files while no worker ran). */
  builtOnMainThread = 0;
  private readonly tableCache: TableCache | undefined;
  /** Replies made on this thread (read from the cache, or small files built here), delivered on the next turn of the event loop (or by deliverFinished()), as a worker's would be. */
  private cacheReplies: WorkerReply[] = [];

  constructor(
    private readonly onError: (message: string) => void,
    /** A persistent cache of built tables (undefined: none). */
    private readonly cache?: TableCacheOptions,
  ) {
    this.tableCache = cache === undefined ? undefined : new TableCache(cache);
  }

  /** Asks for a file's table; `done` runs on the main thread with the result. */
  build(paths: string[], sizeBytes: number, done: (reply: WorkerReply) => void): void {
    if (this.closed) return;
    const id = this.nextId++;
    this.pending.set(id, done);
    const request: BuildRequest = { id, paths, sizeBytes };
    if (this.fromCache(request)) return;
    if (this.worker === undefined && sizeBytes <= MAIN_THREAD_BUILD_MAX_BYTES) {
      this.buildHere(request);
      return;
    }
    this.ensureWorker().postMessage(request);
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  /** Answers from the table cache when it holds the file's table; otherwise notes on the request what it found. */
  private fromCache(request: BuildRequest): boolean {
    if (this.tableCache === undefined) return false;
    request.identity = identityOf(request.paths);
    if (request.identity === undefined) return false;
    const started = performance.now();
    let found;
    try {
      found = this.tableCache.lookup(request.identity);
    } catch {
      request.cache = 'corrupt'; // unreadable in a way lookup() did not foresee: build it
      return false;
    }
    if (found.kind !== 'hit') {
      request.cache = found.kind;
      return false;
    }
    this.replyLater({ type: 'built', id: request.id, result: { ...found.table, buildMs: performance.now() - started }, cache: 'hit' });
    return true;
  }

  /** Builds a small file now, on this thread, and stores it in the cache as the worker would. */
  private buildHere(request: BuildRequest): void {
    let reply: WorkerReply;
    try {
      const result = buildTable(request.paths);
      if (this.tableCache !== undefined && request.identity !== undefined && result.kind === 'table' && !this.tableCache.store(request.identity, result)) request.cache = 'write failed';
      reply = { type: 'built', id: request.id, result, cache: request.cache };
    } catch (error) {
      reply = { type: 'failed', id: request.id, message: (error as Error).message };
    }
    this.builtOnMainThread++;
    this.replyLater(reply);
  }

  /** A reply made on this thread goes out on the next turn of the event loop (or by deliverFinished()), as a worker's would. */
  private replyLater(reply: WorkerReply): void {
    if (this.cacheReplies.length === 0) setImmediate(() => this.deliverCached());
    this.cacheReplies.push(reply);
  }

  private deliverCached(): void {
    const replies = this.cacheReplies;
    this.cacheReplies = [];
    for (const reply of replies) this.dispatch(reply);
  }

  get busy(): boolean {
    return this.pending.size > 0;
  }

  /**
   * Delivers the tables finished so far, now: the collector calls it before
   * symbolizing, which may hold the event loop for a while, so a table ready
   * meanwhile is not kept waiting for it.
   */
  deliverFinished(): void {
    this.deliverCached();
    if (this.replies === undefined) return;
    for (;;) {
      const message = receiveMessageOnPort(this.replies);
      if (message === undefined) return;
      this.dispatch(message.message as WorkerReply);
    }
  }

  close(): void {
    this.closed = true;
    this.pending.clear();
    this.cacheReplies = [];
    this.stopWorker();
  }

  private ensureWorker(): Worker {
    if (this.worker !== undefined) return this.worker;
    const { port1, port2 } = new MessageChannel();
    const worker = new Worker(workerScript(), { workerData: { replies: port2, cache: this.cache }, transferList: [port2] });
    // Neither keeps the agent alive: the agent's own timers and the sampler do.
    worker.unref();
    port1.unref();
    port1.on('message', (reply: WorkerReply) => this.dispatch(reply));
    worker.on('error', (error) => {
      // Every table it was building is lost: the processes concerned keep using frame pointers.
      this.onError(`the table worker failed: ${error.message}`);
      const lost = [...this.pending];
      this.pending.clear();
      this.stopWorker();
      for (const [id, done] of lost) done({ type: 'failed', id, message: 'table worker failed' });
    });
    this.worker = worker;
    this.replies = port1;
    this.started++;
    return worker;
  }

  private dispatch(reply: WorkerReply): void {
    const done = this.pending.get(reply.id);
    if (done === undefined) return;
    this.pending.delete(reply.id);
    // A reply from the cache with no worker running leaves nothing to stop.
    if (this.pending.size === 0 && !this.closed && this.worker !== undefined) {
      if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
      this.idleTimer = setTimeout(() => this.stopWorker(), IDLE_EXIT_MS);
      this.idleTimer.unref();
    }
    done(reply);
  }

  private stopWorker(): void {
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    if (this.pending.size > 0) return;
    this.replies?.close();
    this.replies = undefined;
    void this.worker?.terminate();
    this.worker = undefined;
  }
}
