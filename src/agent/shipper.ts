import { readFileSync } from 'node:fs';
import { gunzipSync, gzipSync } from 'node:zlib';
import { Profile } from 'pprof-format';
import { encodePush, prepareLeanPush, preparePush, pushRequestBody, type LeanProfile, type PreparedPush } from '../profile/push-encode.js';
import { PUSH_MEDIA_TYPE } from '../profile/push-format.js';
import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { DiskSpool } from './spool.js';

/** TLS client settings for an https server URL. */
export interface ShipperTlsOptions {
  /** PEM file of a CA to trust (e.g. a private CA), in place of the system's. */
  caFile?: string;
  /** PEM client certificate and key, for servers (or proxies) that ask for one. */
  certFile?: string;
  keyFile?: string;
}

export interface ShipperOptions {
  serverUrl: string;
  ingestToken?: string;
  spool: DiskSpool;
  tls?: ShipperTlsOptions;
  /** Pushes in flight at once while draining a backlog. */
  concurrency?: number;
  /** First retry delay after a failure; doubles up to maxBackoffMs. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** Every push is abandoned (and retried later) after this long, whatever the server does. */
  requestTimeoutMs?: number;
  onPush?: (outcome: { ok: boolean; latencyMs: number; status?: number; error?: string }) => void;
  /** Send lean pushes (stacks the server holds by content id) when the server takes them; default false (see agent.ts). */
  lean?: boolean;
  /** When a profile is written to the spool (see SpoolWhen); default 'always'. */
  spoolWhen?: SpoolWhen;
}

/**
 * When a profile is written to the disk spool:
 * - 'always': before its first push (fsynced), so nothing handed to the
 *   shipper is lost by a crash of the agent or of the node.
 * - 'failure': only when a push of it fails (or the server is known down),
 *   when more than HELD_MAX profiles wait in memory, and at stop(). While the
 *   server answers, a profile goes from memory to the server and never
 *   touches the disk: no pprof encoding (with lean pushes), no gzip and no
 *   fsync per interval. What a kill -9 or a node crash loses is the profiles
 *   in memory at that moment: the last interval's, from the end of the
 *   interval until the server acknowledges them (normally well under a
 *   second). Outages and restarts lose nothing, as with 'always'.
 */
export type SpoolWhen = 'always' | 'failure';

/** The pprof of a profile handed to the shipper: made when first needed (a push as pprof, or the spool), then kept. */
export type PprofSource = Buffer | (() => Buffer);

type PushResult = 'ok' | 'retry' | 'rejected';
/** One HTTP exchange: how it ended, the status, and the answer's body (kept only for 4xx: a 409 names missing stacks). */
interface Exchange {
  result: PushResult;
  status?: number;
  answer?: Buffer;
}

/** Makes the PreparedPush of one encodePush with these `holds` and `define`. */
type PushPreparer = (holds: (id: number, check: number) => boolean, define: ReadonlySet<number> | undefined) => PreparedPush;

/** Recent spool entries whose decoded (or lean) profile is kept in memory (one interval's series, typically). */
const DECODED_KEPT = 64;
/** Stack ids the server is known to hold, kept before the set starts over (about 50 bytes each). */
const KNOWN_STACKS_MAX = 1_000_000;
/** zlib level of lean pushes that define stacks: level 1 took 40% of the CPU of the default for 9% more bytes (bench/agent-push-prepare.ts). */
const PUSH_GZIP_LEVEL = 1;
/** After a server refused the lean push's media type (415: it predates it), pprof only for this long, then try again. */
const LEAN_RETRY_AFTER_MS = 60 * 60 * 1000;
/** Profiles held in memory (spool 'failure') before the oldest is written to the spool: a slow server must not grow the agent's heap. */
const HELD_MAX = 64;

/** A profile not yet on disk (spool 'failure'): its labels and its pprof, made when first needed. */
interface HeldProfile {
  labels: Record<string, string>;
  pprof: () => Buffer;
}

/** `source` as a function that makes the bytes on its first call and gives the same bytes after. */
export function madeOnce(source: PprofSource): () => Buffer {
  if (Buffer.isBuffer(source)) return () => source;
  let made: Buffer | undefined;
  return () => (made ??= source());
}

const isGzip = (body: Buffer): boolean => body[0] === 0x1f && body[1] === 0x8b;

/**
 * Sends profiles to the server. A profile goes through the disk spool first
 * (spoolWhen 'always'), or waits in memory and is spooled only if its push
 * fails or the shipper stops before the server has it ('failure'); either
 * way what is not acknowledged survives outages and restarts.
 *
 * Draining: as soon as the server answers, the whole backlog goes, oldest
 * first, with up to `concurrency` pushes in flight; profiles spooled during
 * a pass are picked up by the same pass. After a failure the sender waits
 * (exponential backoff with jitter); a new profile ends the wait early with
 * one probe push, so a server that comes back is found within one agent
 * interval and not a full backoff later. Every push has a deadline, and
 * stop() aborts those in flight: what they carried stays in the spool.
 */
export class Shipper {
  private readonly options: Required<Omit<ShipperOptions, 'ingestToken' | 'onPush' | 'tls'>> & Pick<ShipperOptions, 'ingestToken' | 'onPush'>;
  /** Stack content id -> cache check of the stacks the server acknowledged (defined or referenced in a 2xx push). */
  private readonly known = new Map<number, number>();
  private leanOffUntilMs = 0;
  /** Spool id -> its profile, decoded or as the builder's LeanProfile (enqueue); bounded. */
  private readonly decoded = new Map<string, Profile | LeanProfile>();
  /** Pushes acknowledged as lean pushes, and as full pprof. */
  leanPushes = 0;
  fullPushes = 0;
  /** Stacks defined again because the server answered that it does not hold them (409 FP_ERR_UNKNOWN_STACKS). */
  stacksResent = 0;
  /** Stacks defined in full, and samples that referenced a stack by id, in acknowledged lean pushes. */
  stacksDefined = 0;
  samplesByReference = 0;
  /** Bytes sent in acknowledged pushes, by format. */
  leanBytes = 0;
  fullBytes = 0;
  private readonly url: URL;
  private readonly httpAgent: HttpAgent;
  private readonly tls: { ca?: Buffer; cert?: Buffer; key?: Buffer };
  private backoffMs: number;
  /** True after a failed push until one succeeds: the next pass starts with a single probe. */
  private failing = false;
  /** The last push that ended failed (and is to be retried): the server may be down. */
  private lastPushFailed = false;
  private draining: Promise<void> | undefined;
  /** Set by kick(): something new was spooled since the current pass listed the spool. */
  private pending = false;
  private stopped = false;
  private wake: (() => void) | undefined;
  private readonly inFlight = new Set<string>();
  /** Spool id -> a profile not written to the spool yet (spoolWhen 'failure'), oldest first. */
  private readonly held = new Map<string, HeldProfile>();
  /** Profiles written to the spool after waiting in memory: their push failed, too many waited, or the shipper stopped. */
  heldSpooled = 0;
  private readonly requests = new Set<ClientRequest>();
  private idleWaiters: (() => void)[] = [];
  /** Profiles the server refused as invalid (4xx other than 401/403/408/429): dropped, counted. */
  rejected = 0;
  sent = 0;
  /** Pushes that failed and will be retried (network error, timeout, 5xx, 401/403/408/429). */
  failed = 0;

  constructor(options: ShipperOptions) {
    this.options = { concurrency: 4, initialBackoffMs: 1000, maxBackoffMs: 30_000, requestTimeoutMs: 10_000, lean: false, spoolWhen: 'always', ...options };
    this.backoffMs = this.options.initialBackoffMs;
    this.url = new URL('/api/v1/ingest', this.options.serverUrl);
    const t = options.tls ?? {};
    if ((t.certFile === undefined) !== (t.keyFile === undefined)) throw new Error('a client certificate needs both its certificate and its key file');
    // Read once at start: a missing or unreadable file is a configuration error to report now.
    this.tls = {
      ca: t.caFile !== undefined ? readFileSync(t.caFile) : undefined,
      cert: t.certFile !== undefined ? readFileSync(t.certFile) : undefined,
      key: t.keyFile !== undefined ? readFileSync(t.keyFile) : undefined,
    };
    const agentOptions = { keepAlive: true, maxSockets: this.options.concurrency };
    this.httpAgent = this.url.protocol === 'https:' ? new HttpsAgent({ ...agentOptions, ...this.tls }) : new HttpAgent(agentOptions);
  }

  /**
   * Queues a profile; returns at once. `pprof` is its pprof (gzipped or
   * not), or a function that makes it: with spoolWhen 'failure' and lean
   * pushes it may never be called. The profile is spooled now (durably) or
   * held in memory (see SpoolWhen). `profile`, the decoded form of the pprof
   * when the caller has it, spares the lean push a decode, and a LeanProfile
   * (the agent's builder makes one) spares it hashing the profile too (kept
   * for the few most recent entries only: a backlog, or entries spooled
   * before a restart, are prepared from the spooled pprof).
   */
  enqueue(labels: Record<string, string>, pprof: PprofSource, profile?: Profile | LeanProfile): void {
    let id: string;
    // Held only while the server answers: a profile made during an outage would fail its push and be spooled anyway.
    if (this.options.spoolWhen === 'failure' && !this.stopped && !this.failing && !this.lastPushFailed) {
      id = this.options.spool.newId();
      this.held.set(id, { labels, pprof: madeOnce(pprof) });
      if (this.held.size > HELD_MAX) {
        for (const oldest of this.held.keys()) {
          if (this.inFlight.has(oldest)) continue; // its push ends it either way
          this.spoolHeld(oldest);
          break;
        }
      }
    } else {
      id = this.options.spool.put(labels, this.spoolBytes(madeOnce(pprof)()));
    }
    if (profile && this.options.lean) {
      this.decoded.set(id, profile);
      if (this.decoded.size > DECODED_KEPT) this.decoded.delete(this.decoded.keys().next().value!);
    }
    this.kick();
  }

  /** Starts (or nudges) the background sender. */
  kick(): void {
    if (this.stopped) return;
    this.pending = true;
    if (this.wake) {
      this.wake();
      return;
    }
    // Started on the next turn of the event loop: a burst of enqueues (one per
    // series at the end of an interval) is all spooled before the first listing.
    this.draining ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.drainLoop()).finally(() => {
      this.draining = undefined;
      for (const resolve of this.idleWaiters.splice(0)) resolve();
    });
  }

  /** Resolves when the sender has nothing left to do (spool empty) or is stopped. */
  whenIdle(): Promise<void> {
    if (!this.draining) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Tries to send everything now, for at most `deadlineMs`; resolves true when
   * the spool is empty. Used on shutdown: what is left stays spooled.
   */
  async flush(deadlineMs: number): Promise<boolean> {
    this.failing = false; // one last full attempt, not a probe
    this.backoffMs = this.options.initialBackoffMs;
    this.kick();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.whenIdle(), new Promise<void>((resolve) => (timer = setTimeout(resolve, deadlineMs)))]);
    clearTimeout(timer);
    return this.options.spool.list().length === 0 && this.held.size === 0;
  }

  /**
   * Stops sending: aborts pushes in flight and waits for the sender to end;
   * every profile not acknowledged is in the spool when it resolves.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    for (const request of this.requests) request.destroy(new Error('shipper stopped'));
    await this.draining;
    this.spoolAllHeld();
    this.httpAgent.destroy();
  }

  /**
   * Writes every profile held in memory to the spool, synchronously: for an
   * exit that cannot wait for stop() (a shutdown deadline), so that only a
   * kill -9 or a node crash can lose them.
   */
  spoolAllHeld(): void {
    for (const id of [...this.held.keys()]) this.spoolHeld(id);
  }

  /** Profiles waiting in memory, not in the spool (spoolWhen 'failure'). */
  get heldProfiles(): number {
    return this.held.size;
  }

  /** A held profile goes to the spool under the id it was given (its place in the send order), gzipped. */
  private spoolHeld(id: string): void {
    const held = this.held.get(id);
    if (!held) return;
    this.held.delete(id);
    const body = held.pprof();
    this.options.spool.put(held.labels, isGzip(body) ? body : gzipSync(body), id);
    this.heldSpooled++;
  }

  /** What the spool keeps of a pprof: the bytes as given when gzipped, else gzipped unless spoolsRaw. */
  private spoolBytes(body: Buffer): Buffer {
    return isGzip(body) || this.spoolsRaw ? body : gzipSync(body);
  }

  /** Every profile waiting, spooled or held, oldest first. */
  private waiting(): string[] {
    const ids = this.options.spool.list();
    if (this.held.size === 0) return ids;
    return [...ids, ...this.held.keys()].sort();
  }

  private async drainLoop(): Promise<void> {
    while (!this.stopped) {
      this.pending = false;
      const outcome = await this.pass();
      if (this.stopped) return;
      if (outcome === 'empty') {
        if (!this.pending) return; // done until the next enqueue
        continue;
      }
      // A push failed: wait with backoff, unless a new profile (probe at once) or stop() wakes us.
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        timer = setTimeout(resolve, this.jittered(this.backoffMs));
      });
      clearTimeout(timer);
      this.wake = undefined;
      this.backoffMs = Math.min(this.backoffMs * 2, this.options.maxBackoffMs);
    }
  }

  /**
   * One pass over the spool; 'empty' when everything listed (and spooled
   * meanwhile) went, 'failed' after a retryable failure. Up to `concurrency`
   * pushes run at once; when the list runs out and something was spooled
   * meanwhile, the spool is listed again and the pool refilled.
   */
  private async pass(): Promise<'empty' | 'failed'> {
    let queue = this.waiting();
    // After failures the first push goes alone: a down server gets one request per wake-up, not `concurrency`.
    if (this.failing && queue.length > 0) {
      const first = queue.shift()!;
      if ((await this.sendOne(first)) === 'retry') return 'failed';
      this.failing = false;
    }
    let failedNow = false;
    let running = 0;
    return new Promise((resolve) => {
      const refill = (): void => {
        while (!this.stopped && !failedNow && running < this.options.concurrency) {
          if (queue.length === 0 && this.pending) {
            this.pending = false;
            queue = this.waiting().filter((id) => !this.inFlight.has(id));
          }
          const id = queue.shift();
          if (id === undefined) break;
          if (this.inFlight.has(id)) continue;
          running++;
          void this.sendOne(id).catch((): PushResult => 'retry').then((result) => {
            running--;
            if (result === 'retry') failedNow = true;
            refill();
          });
        }
        if (running > 0) return; // the next completion refills or ends the pass
        if (failedNow) this.failing = true;
        resolve(failedNow ? 'failed' : 'empty');
      };
      refill();
    });
  }

  private async sendOne(id: string): Promise<PushResult> {
    const held = this.held.get(id);
    let entry: { labels: Record<string, string>; pprof: () => Buffer } | undefined = held;
    if (!entry) {
      const spooled = this.options.spool.read(id);
      if (!spooled) return 'ok'; // removed meanwhile (trimmed or unreadable, counted by the spool)
      entry = { labels: spooled.labels, pprof: () => spooled.body };
    }
    this.inFlight.add(id);
    try {
      const result = await this.pushEntry(entry.labels, entry.pprof, this.decoded.get(id));
      if (result === 'retry') {
        this.failed++;
        this.lastPushFailed = true;
        this.spoolHeld(id); // held: it waits for the server on disk now
        return result;
      }
      // Acknowledged (or refused for good): only now does it leave memory, or the spool (where a held one may have gone meanwhile: spoolAllHeld).
      if (!this.held.delete(id)) this.options.spool.remove(id);
      this.decoded.delete(id);
      if (result === 'rejected') this.rejected++;
      else this.sent++;
      this.lastPushFailed = false;
      this.backoffMs = this.options.initialBackoffMs;
      return result;
    } finally {
      this.inFlight.delete(id);
    }
  }

  /**
   * Sends one spooled profile: as a lean push when the server takes it
   * (stacks it acknowledged before go by id; a 409 naming stacks it does not
   * hold is answered at once with their definitions), else as the pprof.
   * The spool keeps the pprof, so either can be made from it at any time.
   */
  private async pushEntry(labels: Record<string, string>, pprof: () => Buffer, decoded: Profile | LeanProfile | undefined): Promise<PushResult> {
    if (this.options.lean && Date.now() >= this.leanOffUntilMs) {
      let prepare: PushPreparer | undefined;
      if (decoded !== undefined && !(decoded instanceof Profile)) {
        const lean = decoded;
        prepare = (holds, define) => prepareLeanPush(lean, holds, define);
      } else {
        try {
          let profile = decoded;
          if (profile === undefined) {
            const body = pprof();
            profile = Profile.decode(isGzip(body) ? gunzipSync(body) : body);
          }
          const prepared = preparePush(profile);
          prepare = () => prepared;
        } catch {
          prepare = undefined; // not a profile this encoder reads: the server judges the pprof itself
        }
      }
      if (prepare) {
        const lean = await this.pushLean(labels, prepare);
        if (lean !== 'unsupported') return lean;
        this.leanOffUntilMs = Date.now() + LEAN_RETRY_AFTER_MS;
      }
    }
    // Held, or spooled while lean pushes went through, the pprof may be uncompressed (see spoolsRaw): compressed only now that it goes.
    const body = pprof();
    const wire = isGzip(body) ? body : gzipSync(body);
    const sent = await this.post(labels, wire, 'application/octet-stream');
    if (sent.result === 'ok') {
      this.fullPushes++;
      this.fullBytes += wire.length;
    }
    return sent.result;
  }

  /**
   * Whether a profile spooled now may be the uncompressed pprof: while the
   * server takes lean pushes, a spooled pprof is almost never sent (it leaves
   * the spool when its lean push is acknowledged), so gzipping it at every
   * interval would be work for nothing; it is gzipped if it ever goes as
   * pprof. While pushes fail (a backlog builds up) or the server refused the
   * lean push, profiles are spooled gzipped, so the spool's byte bound holds
   * as many as before.
   */
  get spoolsRaw(): boolean {
    return this.options.lean && !this.failing && !this.lastPushFailed && Date.now() >= this.leanOffUntilMs;
  }

  private async pushLean(labels: Record<string, string>, prepare: PushPreparer): Promise<PushResult | 'unsupported'> {
    const holds = (id: number, check: number) => this.known.get(id) === check;
    let define: Set<number> | undefined;
    for (let attempt = 0; ; attempt++) {
      const push = encodePush(prepare(holds, define), holds, define);
      const body = pushRequestBody(push, PUSH_GZIP_LEVEL);
      const sent = await this.post(labels, body, PUSH_MEDIA_TYPE);
      if (sent.status === 415) return 'unsupported';
      if (sent.result === 'ok') {
        if (this.known.size + push.defined.length > KNOWN_STACKS_MAX) this.known.clear();
        for (const d of push.defined) this.known.set(d.id, d.check);
        this.leanPushes++;
        this.leanBytes += body.length;
        this.stacksDefined += push.defined.length;
        this.samplesByReference += push.referenced;
        return 'ok';
      }
      const missing = sent.status === 409 ? missingStacks(sent.answer) : undefined;
      if (missing === undefined) return sent.result;
      // The server does not hold these (never had them, or collected them): forget them and define them.
      for (const id of missing) this.known.delete(id);
      if (attempt > 0) return 'retry'; // missing again right away (e.g. collected meanwhile): the next pass starts over
      this.stacksResent += missing.length;
      define = new Set(missing);
    }
  }

  private post(labels: Record<string, string>, body: Buffer, contentType: string): Promise<Exchange> {
    const url = new URL(this.url);
    for (const [key, value] of Object.entries(labels)) url.searchParams.set(key, value);
    const headers: Record<string, string | number> = { 'content-type': contentType, 'content-length': body.length };
    if (this.options.ingestToken) headers.authorization = `Bearer ${this.options.ingestToken}`;
    const started = performance.now();
    const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise<Exchange>((resolve) => {
      let settled = false;
      const finish = (result: PushResult, outcome: { ok: boolean; status?: number; error?: string }, answer?: Buffer) => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        this.requests.delete(req);
        this.options.onPush?.({ ...outcome, latencyMs: performance.now() - started });
        resolve({ result, status: outcome.status, answer });
      };
      const req = request(url, { method: 'POST', headers, agent: this.httpAgent }, (response: IncomingMessage) => {
        // Only a 4xx answer is read (a 409 lists missing stacks; bounded); any other is drained so the socket is reused.
        const status = response.statusCode ?? 0;
        const chunks: Buffer[] = [];
        let size = 0;
        if (status >= 400 && status < 500) {
          response.on('data', (c: Buffer) => {
            size += c.length;
            if (size <= 16 << 20) chunks.push(c);
          });
        } else response.resume();
        response.on('error', (error) => finish('retry', { ok: false, error: error.message }));
        response.on('end', () => {
          if (status >= 200 && status < 300) return finish('ok', { ok: true, status });
          // A profile the server finds invalid will never be accepted: drop it
          // (counted) rather than block the queue behind it forever.
          const retryable = status >= 500 || [401, 403, 408, 429].includes(status);
          finish(retryable ? 'retry' : 'rejected', { ok: false, status }, Buffer.concat(chunks));
        });
      });
      // One deadline for the whole exchange (connect, send, answer): a server
      // that accepts and never answers costs requestTimeoutMs, not forever.
      const deadline = setTimeout(() => req.destroy(new Error(`no answer in ${this.options.requestTimeoutMs} ms`)), this.options.requestTimeoutMs);
      this.requests.add(req);
      req.on('error', (error) => finish('retry', { ok: false, error: error.message }));
      req.end(body);
    });
  }

  /** Stacks the server is known to hold (for metrics and tests). */
  get knownStacks(): number {
    return this.known.size;
  }

  private jittered(ms: number): number {
    return ms * (0.8 + Math.random() * 0.4);
  }
}

/** The stack ids of a 409 FP_ERR_UNKNOWN_STACKS answer, or undefined for any other answer. */
function missingStacks(answer: Buffer | undefined): number[] | undefined {
  if (!answer) return undefined;
  try {
    const body = JSON.parse(answer.toString('utf8')) as { code?: unknown; missingStacks?: unknown };
    if (body.code !== 'FP_ERR_UNKNOWN_STACKS' || !Array.isArray(body.missingStacks)) return undefined;
    const ids = body.missingStacks.filter((x): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x > 0);
    return ids.length > 0 ? ids : undefined;
  } catch {
    return undefined;
  }
}
