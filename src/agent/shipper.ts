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
}

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

/**
 * Sends profiles to the server. Every profile goes through the disk spool
 * first, so what is not acknowledged survives outages and restarts.
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
  private readonly requests = new Set<ClientRequest>();
  private idleWaiters: (() => void)[] = [];
  /** Profiles the server refused as invalid (4xx other than 401/403/408/429): dropped, counted. */
  rejected = 0;
  sent = 0;
  /** Pushes that failed and will be retried (network error, timeout, 5xx, 401/403/408/429). */
  failed = 0;

  constructor(options: ShipperOptions) {
    this.options = { concurrency: 4, initialBackoffMs: 1000, maxBackoffMs: 30_000, requestTimeoutMs: 10_000, lean: false, ...options };
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
   * Queues a profile (durably, in the spool); returns at once. `profile`, the
   * decoded form of `body` when the caller has it, spares the lean push a
   * decode of the spooled pprof, and a LeanProfile (the agent's builder
   * makes one) spares it hashing the profile too (kept for the few most
   * recent entries only: a backlog, or entries spooled before a restart,
   * are prepared from the spooled pprof).
   */
  enqueue(labels: Record<string, string>, body: Buffer, profile?: Profile | LeanProfile): void {
    const id = this.options.spool.put(labels, body);
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
    return this.options.spool.list().length === 0;
  }

  /** Stops sending: aborts pushes in flight (their profiles stay spooled) and waits for the sender to end. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    for (const request of this.requests) request.destroy(new Error('shipper stopped'));
    await this.draining;
    this.httpAgent.destroy();
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
    let queue = this.options.spool.list();
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
            queue = this.options.spool.list().filter((id) => !this.inFlight.has(id));
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
    const entry = this.options.spool.read(id);
    if (!entry) return 'ok'; // removed meanwhile (trimmed or unreadable, counted by the spool)
    this.inFlight.add(id);
    try {
      const result = await this.pushEntry(entry.labels, entry.body, this.decoded.get(id));
      if (result === 'retry') {
        this.failed++;
        this.lastPushFailed = true;
        return result;
      }
      // Acknowledged (or refused for good): only now does it leave the spool.
      this.options.spool.remove(id);
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
  private async pushEntry(labels: Record<string, string>, body: Buffer, decoded: Profile | LeanProfile | undefined): Promise<PushResult> {
    if (this.options.lean && Date.now() >= this.leanOffUntilMs) {
      let prepare: PushPreparer | undefined;
      if (decoded !== undefined && !(decoded instanceof Profile)) {
        const lean = decoded;
        prepare = (holds, define) => prepareLeanPush(lean, holds, define);
      } else {
        try {
          const prepared = preparePush(decoded ?? Profile.decode(body[0] === 0x1f && body[1] === 0x8b ? gunzipSync(body) : body));
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
    // Spooled while lean pushes went through, the pprof may be uncompressed (see spoolsRaw): compressed only now that it goes.
    const wire = body[0] === 0x1f && body[1] === 0x8b ? body : gzipSync(body);
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
