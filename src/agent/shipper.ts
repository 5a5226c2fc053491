import { setTimeout as sleep } from 'node:timers/promises';
import type { DiskSpool } from './spool.js';

export interface ShipperOptions {
  serverUrl: string;
  ingestToken?: string;
  spool: DiskSpool;
  /** First retry delay after a failure; doubles up to maxBackoffMs. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  requestTimeoutMs?: number;
  onPush?: (outcome: { ok: boolean; latencyMs: number; status?: number; error?: string }) => void;
}

/** Why a push failed in a way that retrying cannot fix. */
export class RejectedProfileError extends Error {}

/**
 * Sends profiles to the server. Every profile goes through the disk spool
 * first, so what is not acknowledged survives outages and restarts; a
 * single sender drains the spool oldest first with exponential backoff.
 */
export class Shipper {
  private readonly options: Required<Omit<ShipperOptions, 'ingestToken' | 'onPush'>> & Pick<ShipperOptions, 'ingestToken' | 'onPush'>;
  private backoffMs: number;
  private draining: Promise<void> | undefined;
  private stopped = false;
  private wake: (() => void) | undefined;
  /** Profiles the server refused as invalid (4xx other than 401/403/408/429): dropped, counted. */
  rejected = 0;
  sent = 0;

  constructor(options: ShipperOptions) {
    this.options = { initialBackoffMs: 1000, maxBackoffMs: 30_000, requestTimeoutMs: 10_000, ...options };
    this.backoffMs = this.options.initialBackoffMs;
  }

  /** Queues a profile; returns at once. */
  enqueue(labels: Record<string, string>, body: Buffer): void {
    this.options.spool.put(labels, body);
    this.kick();
  }

  /** Starts (or nudges) the background sender. */
  kick(): void {
    if (this.wake) {
      this.wake();
      return;
    }
    this.draining ??= this.drainLoop().finally(() => (this.draining = undefined));
  }

  /** Tries to send everything now; resolves when the spool is empty or a push failed. */
  async flush(): Promise<boolean> {
    await this.draining;
    return this.sendBacklog();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.draining;
  }

  private async drainLoop(): Promise<void> {
    while (!this.stopped) {
      if (await this.sendBacklog()) return; // spool empty: done until the next enqueue
      // Wait with backoff, unless a new profile or stop() wakes us.
      await Promise.race([sleep(this.jittered(this.backoffMs)), new Promise<void>((resolve) => (this.wake = resolve))]);
      this.wake = undefined;
      this.backoffMs = Math.min(this.backoffMs * 2, this.options.maxBackoffMs);
    }
  }

  /** True when the spool is empty; false when a push failed and should be retried later. */
  private async sendBacklog(): Promise<boolean> {
    for (const id of this.options.spool.list()) {
      if (this.stopped) return false;
      const entry = this.options.spool.read(id);
      if (!entry) continue;
      const result = await this.push(entry.labels, entry.body);
      if (result === 'retry') return false;
      this.options.spool.remove(id);
      if (result === 'rejected') this.rejected++;
      else this.sent++;
      this.backoffMs = this.options.initialBackoffMs;
    }
    return true;
  }

  private async push(labels: Record<string, string>, body: Buffer): Promise<'ok' | 'retry' | 'rejected'> {
    const url = new URL('/api/v1/ingest', this.options.serverUrl);
    for (const [key, value] of Object.entries(labels)) url.searchParams.set(key, value);
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    if (this.options.ingestToken) headers.authorization = `Bearer ${this.options.ingestToken}`;
    const started = performance.now();
    try {
      const response = await fetch(url, { method: 'POST', headers, body, signal: AbortSignal.timeout(this.options.requestTimeoutMs) });
      await response.arrayBuffer();
      const latencyMs = performance.now() - started;
      this.options.onPush?.({ ok: response.ok, latencyMs, status: response.status });
      if (response.ok) return 'ok';
      // A profile the server finds invalid will never be accepted: drop it
      // (counted) rather than block the queue behind it forever.
      const retryable = response.status >= 500 || [401, 403, 408, 429].includes(response.status);
      return retryable ? 'retry' : 'rejected';
    } catch (error) {
      this.options.onPush?.({ ok: false, latencyMs: performance.now() - started, error: error instanceof Error ? error.message : String(error) });
      return 'retry';
    }
  }

  private jittered(ms: number): number {
    return ms * (0.8 + Math.random() * 0.4);
  }
}
