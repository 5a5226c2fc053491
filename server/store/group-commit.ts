// The group-commit write queue both store backends (sqlite-store.ts,
// pg-store.ts) put their ingests through. The backend supplies the commit of
// one group (its own transaction logic); this class owns the queueing.
//
// What it guarantees:
// - A batch's promise settles only from the backend's commit callback, which
//   resolves it after the transaction holding it committed (or rejects it, or
//   hands it back with `requeue` to go again): 2xx means durable.
// - One flush at a time: commits never overlap, so a backend needs a single
//   writer connection and its in-memory state changes in commit order.
// - Batches arriving during a flush wait and go together in the next one.
// - Background jobs (SQLite rollups, retention) run on the same queue, between
//   flushes, so they never interleave with a commit.
// - Commit linger: a flush that starts from idle waits `lingerMs` first, so
//   the ingests arriving meanwhile share its commit (Kafka's `linger.ms`,
//   PostgreSQL's `commit_delay`). Every commit has a fixed cost (SQLite: a
//   thread-pool hop and a WAL append; PostgreSQL: a round trip, a transaction,
//   the series bounds and the dirty rollup rows it rewrites), and agents push
//   every few seconds, each on its own schedule, so without a linger nearly
//   every push is its own commit. The price is up to `lingerMs` more before
//   an ingest is answered, which nothing waits on (agents ship asynchronously,
//   from a spool). A busy queue does not linger: batches that arrive during a
//   commit go in the next one at once, and `lingerMaxBatches` waiting, a
//   close or an `idle()` cut a linger short.
import type { IngestBatch } from './store.js';
import { errUnknownStacks } from '../errors.js';

/** One ingest waiting for its commit. */
export interface PendingWrite<B, R> {
  batch: B;
  resolve: (result: R) => void;
  reject: (e: unknown) => void;
}

/** Commits every batch of `group` in one transaction, settling or requeueing each; must not leave one unsettled. */
export type CommitGroup<B, R> = (group: PendingWrite<B, R>[]) => Promise<void>;

export interface GroupCommitOptions {
  /** How long a flush starting from idle waits for more ingests to join its commit (0: the next turn of the event loop). */
  lingerMs?: number;
  /** A lingering flush starts at once when this many batches wait. */
  lingerMaxBatches?: number;
}

/** The default commit linger on SQLite (`fleetprof server --commit-linger-ms`). */
export const DEFAULT_COMMIT_LINGER_MS = 20;
/**
 * The default on PostgreSQL. A commit there costs more than on SQLite (a
 * network round trip, a transaction in another process), and several servers
 * sharing a database each see only their share of the pushes, so in 20 ms
 * fewer ingests meet: three servers made 2.0-2.3 ingests per commit with 20 ms
 * and 3.7-4.7 with 60 ms, which cut their CPU per profile (servers +
 * PostgreSQL) from 3.8-4.2 ms to 3.1-3.7 ms (bench/fleet-ingest.ts,
 * docs/benchmarks.md). An ingest is answered up to 60 ms later; agents push
 * from a spool and do not wait on it.
 */
export const DEFAULT_PG_COMMIT_LINGER_MS = 60;
const DEFAULT_LINGER_MAX_BATCHES = 64;

export class GroupCommitQueue<B, R> {
  private queue: PendingWrite<B, R>[] = [];
  private readonly jobs: (() => Promise<void>)[] = [];
  private flushing: Promise<void> | undefined;
  private closedFlag = false;
  private readonly lingerMs: number;
  private readonly lingerMaxBatches: number;
  /** Set while a flush lingers: starts it now. */
  private startLingering: (() => void) | undefined;
  private commitCount = 0;
  private committedBatches = 0;

  constructor(
    private readonly commit: CommitGroup<B, R>,
    options: GroupCommitOptions = {},
  ) {
    this.lingerMs = Math.max(0, options.lingerMs ?? 0);
    this.lingerMaxBatches = Math.max(1, options.lingerMaxBatches ?? DEFAULT_LINGER_MAX_BATCHES);
  }

  /** Groups committed so far and the batches they held (batches / groups: how well commits are shared). */
  get stats(): { commits: number; batches: number } {
    return { commits: this.commitCount, batches: this.committedBatches };
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /** Batches waiting for the next flush. */
  get pending(): number {
    return this.queue.length;
  }

  /** Jobs waiting to run. */
  get jobsPending(): number {
    return this.jobs.length;
  }

  /** Resolves after the transaction holding `batch` committed. */
  write(batch: B): Promise<R> {
    if (this.closedFlag) return Promise.reject(new Error('store is closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ batch, resolve, reject });
      if (this.startLingering && this.queue.length >= this.lingerMaxBatches) this.startLingering();
      else this.kick();
    });
  }

  /** Puts a batch of a failed group back: it goes in the next flush (after those already waiting). */
  requeue(write: PendingWrite<B, R>): void {
    this.queue.push(write);
  }

  /** Queues a job to run between flushes; `kick` starts it. */
  addJob(job: () => Promise<void>): void {
    this.jobs.push(job);
  }

  /** Starts a flush loop unless one is running. */
  kick(): void {
    if (this.flushing) return;
    // Only ingests linger: a job (a rollup, retention) or a closing queue starts at once.
    const linger = this.lingerMs > 0 && !this.closedFlag && this.jobs.length === 0 && this.queue.length < this.lingerMaxBatches;
    this.flushing = new Promise<void>((resolve) => {
      // Runs once: from the timer, or from startLingering, which clears the timer and is unset here.
      const start = () => {
        this.startLingering = undefined;
        void this.flushLoop().finally(resolve);
      };
      if (!linger) {
        setImmediate(start);
        return;
      }
      const timer = setTimeout(start, this.lingerMs);
      this.startLingering = () => {
        clearTimeout(timer);
        start();
      };
    });
  }

  /** From inside a job: commits what waits now, so a long job does not hold ingest back. */
  async flushPending(): Promise<void> {
    if (this.queue.length > 0) await this.flushOnce();
  }

  private async flushOnce(): Promise<void> {
    const group = this.queue;
    this.queue = [];
    this.commitCount++;
    this.committedBatches += group.length;
    await this.commit(group);
  }

  private async flushLoop(): Promise<void> {
    try {
      while (this.queue.length > 0 || this.jobs.length > 0) {
        if (this.queue.length > 0) await this.flushOnce();
        const job = this.jobs.shift();
        if (job) await job();
      }
    } finally {
      this.flushing = undefined;
    }
    if (this.queue.length > 0 || this.jobs.length > 0) this.kick();
  }

  /** Resolves once nothing is queued or running. */
  async idle(): Promise<void> {
    while (this.flushing || this.queue.length > 0 || this.jobs.length > 0) {
      this.kick();
      this.startLingering?.();
      await this.flushing;
    }
  }

  /** Refuses new writes, then waits for the running flush loop (which drains what was queued). */
  async close(): Promise<void> {
    this.closedFlag = true;
    this.startLingering?.();
    while (this.flushing) await this.flushing;
  }
}

/**
 * After a group's transaction failed: with `collided` (ids another row already
 * holds with different content), refuse only the batches that brought one and
 * put the others back for the next flush; otherwise refuse them all.
 */
export function failIngestGroup<R>(
  queue: GroupCommitQueue<IngestBatch, R>,
  group: PendingWrite<IngestBatch, R>[],
  e: unknown,
  collided: ReadonlySet<number> | undefined,
  /** Referenced stacks the store does not hold (resolveStackRefs): the batches referencing one are refused with FP_ERR_UNKNOWN_STACKS naming theirs. */
  unknown?: ReadonlySet<number>,
): void {
  if (unknown) {
    for (const q of group) {
      const missing = (q.batch.refs ?? []).filter((h) => unknown.has(h));
      if (missing.length > 0) q.reject(errUnknownStacks(missing));
      else queue.requeue(q);
    }
    return;
  }
  if (!collided) {
    for (const q of group) q.reject(e);
    return;
  }
  for (const q of group) {
    const b = q.batch;
    const hit =
      [b.rows.mappings, b.rows.functions, b.rows.locations, b.rows.stacks].some((rs) => rs.some((r) => collided.has(r.id))) ||
      b.series.some((s) => collided.has(s.id)) ||
      b.profileTypes.some((t) => collided.has(t.id));
    if (hit) q.reject(e);
    else queue.requeue(q);
  }
}
