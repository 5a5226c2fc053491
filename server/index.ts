// Library entry of `fleetprof server`: the CLI parses flags into
// ServerOptions and calls startServer.
import { createMetrics } from './metrics.js';
import { buildApp } from './app.js';
import { DEFAULT_DROP_SAMPLE_LABELS, DEFAULT_MAX_DECOMPRESSED_BYTES } from './ingest.js';
import { openStore } from './store/open.js';
import { checkExposure, viewerMissingWarning } from './start-checks.js';
import { DEFAULT_MAX_FUTURE_SKEW_MS } from './ingest-checks.js';

export interface ServerOptions {
  /** Directory holding the SQLite database (created if missing); used when `store` is not given. */
  dataDir?: string;
  /** `sqlite:<dir>` (the default, same as dataDir) or `postgres://user@host:port/db`. */
  store?: string;
  /** How long a commit starting from idle waits for more ingests to share it (store/group-commit.ts); default 20 ms, 0 commits at once. */
  commitLingerMs?: number;
  /** Sample label names not turned into series labels; default pid, tid. */
  dropSampleLabels?: readonly string[];
  /** Listen address; default 127.0.0.1. */
  host?: string;
  /** Listen port; 0 picks a free one. Default 4100. */
  port?: number;
  /** Profiles older than this are deleted; default 7 days. */
  retentionMs?: number;
  /** Profiles dated further than this past the server's clock get 400; default 5 minutes. */
  maxFutureSkewMs?: number;
  /** How often retention runs; default 1 minute. */
  retentionIntervalMs?: number;
  /** Bearer token required by POST /api/v1/ingest; none when unset. */
  ingestToken?: string;
  /** Bearer token required by the query API and /metrics; none when unset. */
  queryToken?: string;
  /** Serve HTTPS with this PEM certificate and key. */
  tls?: { certPath: string; keyPath: string };
  /** Directory of the built web viewer, served at /. */
  webDir?: string;
  /** Origins allowed cross-origin access (CORS headers); none when unset. */
  corsOrigins?: string[];
  /** Largest accepted request body (as sent); default 32 MiB, larger gets 413. */
  maxBodyBytes?: number;
  /** Largest profile after gunzip; default 64 MiB, larger gets 413. */
  maxDecompressedBytes?: number;
  /** Listen beyond loopback without tokens (refused otherwise). */
  allowUnauthenticated?: boolean;
  /** Called with start-up warnings (e.g. the viewer is not built); default: stderr. */
  onWarning?: (message: string) => void;
  /** Fastify (pino) request logging; default off. */
  logger?: boolean;
}

export interface RunningServer {
  url: string;
  close(): Promise<void>;
}

export const DEFAULT_PORT = 4100;
export const DEFAULT_RETENTION_MS = 7 * 24 * 60 * 60 * 1000;

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  checkExposure({ host: opts.host ?? '127.0.0.1', ingestToken: opts.ingestToken, queryToken: opts.queryToken, allowUnauthenticated: opts.allowUnauthenticated });
  const viewerWarning = viewerMissingWarning(opts.webDir);
  if (viewerWarning) (opts.onWarning ?? ((m: string) => process.stderr.write(`fleetprof server: ${m}\n`)))(viewerWarning);
  const retentionMs = opts.retentionMs ?? DEFAULT_RETENTION_MS;
  const url = opts.store ?? (opts.dataDir !== undefined ? `sqlite:${opts.dataDir}` : undefined);
  if (url === undefined) throw new Error('no store: give --store sqlite:<dir> | postgres://... (or --data-dir)');
  const store = await openStore(url, { commitLingerMs: opts.commitLingerMs });
  const metrics = createMetrics(store);
  const app = await buildApp({
    store,
    ingest: { dropSampleLabels: new Set(opts.dropSampleLabels ?? DEFAULT_DROP_SAMPLE_LABELS) },
    metrics,
    ingestToken: opts.ingestToken,
    queryToken: opts.queryToken,
    tls: opts.tls,
    webDir: opts.webDir,
    corsOrigins: opts.corsOrigins,
    maxBodyBytes: opts.maxBodyBytes ?? 32 * 1024 * 1024,
    maxDecompressedBytes: opts.maxDecompressedBytes ?? DEFAULT_MAX_DECOMPRESSED_BYTES,
    logger: opts.logger,
    ready: () => store.getProfile(0),
    timeLimits: { retentionMs, maxFutureSkewMs: opts.maxFutureSkewMs ?? DEFAULT_MAX_FUTURE_SKEW_MS },
  });
  const runRetention = () => {
    const now = Date.now();
    store.retain(now - retentionMs, now).catch((e: unknown) => app.log.error(e));
  };
  runRetention();
  const timer = setInterval(runRetention, opts.retentionIntervalMs ?? 60_000);
  timer.unref();
  let address: string;
  try {
    address = await app.listen({ host: opts.host ?? '127.0.0.1', port: opts.port ?? DEFAULT_PORT });
  } catch (e) {
    clearInterval(timer);
    await store.close();
    throw e;
  }
  let closing: Promise<void> | undefined;
  return {
    url: address,
    close() {
      closing ??= (async () => {
        clearInterval(timer);
        await app.close();
        await store.close();
        await metrics.shutdown();
      })();
      return closing;
    },
  };
}
