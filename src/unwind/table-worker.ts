// The worker thread that builds unwind tables (table-builder.ts), so the
// agent's event loop only loads finished tables into the BPF maps. Requests
// are served small files first: a new program's own binary and libraries take
// milliseconds, and its stacks are whole from then on, while a big runtime
// (node, libLLVM) is built a slice at a time in between. Started by
// table-build-pool.ts, which answers from the table cache itself, so the
// worker sees only files the cache lacks; speaks only the messages declared
// there.

import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { buildTableSteps, transferList, type BuildResult } from './table-builder.js';
import type { BuildRequest, WorkerReply } from './table-build-pool.js';
import { TableCache, type TableCacheOptions } from './table-cache.js';

interface Job {
  /** Its identity and what the main thread's cache lookup found (table-build-pool.ts) come with it. */
  request: BuildRequest;
  steps: Generator<void, BuildResult>;
}

/** Work per turn of the worker's event loop before new requests are let in. */
const SLICE_MS = 10;
const jobs: Job[] = [];
let scheduled = false;

// Replies go on their own port, which the main thread can also read synchronously (receiveMessageOnPort).
const { replies, cache: cacheOptions } = workerData as { replies: MessagePort; cache?: TableCacheOptions };
const cache = cacheOptions === undefined ? undefined : new TableCache(cacheOptions);

function reply(message: WorkerReply, transfer: ArrayBuffer[] = []): void {
  replies.postMessage(message, transfer);
}

/** Runs a job one step; returns whether it finished (and its reply went out). */
function step(job: Job): boolean {
  let next: IteratorResult<void, BuildResult>;
  try {
    next = job.steps.next();
  } catch (error) {
    reply({ type: 'failed', id: job.request.id, message: (error as Error).message });
    return true;
  }
  if (next.done !== true) return false;
  const { identity } = job.request;
  let outcome = job.request.cache;
  if (cache !== undefined && identity !== undefined && next.value.kind === 'table' && !cache.store(identity, next.value)) outcome = 'write failed';
  reply({ type: 'built', id: job.request.id, result: next.value, cache: outcome }, transferList(next.value));
  return true;
}

/**
 * Steps the smallest job, always: a big runtime's table (node: ~0.2 s of CPU cold)
 * is built a few milliseconds at a time, and a file asked for meanwhile
 * (a new program's own binary) overtakes it at the next step.
 */
function pump(): void {
  scheduled = false;
  const deadline = performance.now() + SLICE_MS;
  while (jobs.length > 0 && performance.now() < deadline) {
    let smallest = 0;
    for (let i = 1; i < jobs.length; i++) if (jobs[i]!.request.sizeBytes < jobs[smallest]!.request.sizeBytes) smallest = i;
    if (step(jobs[smallest]!)) jobs.splice(smallest, 1);
  }
  if (jobs.length > 0) schedule();
}

function schedule(): void {
  if (scheduled) return;
  scheduled = true;
  setImmediate(pump);
}

// The main thread looked each file up in the table cache before sending it
// here (table-build-pool.ts): build it, and store it under that identity.
parentPort!.on('message', (request: BuildRequest) => {
  jobs.push({ request, steps: buildTableSteps(request.paths) });
  schedule();
});
