// Builds the fastify instance: error shape, routes, metrics, static viewer.
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import fastifyStatic from '@fastify/static';
import type { ApiErrorResponse } from '../src/profile/api-types.js';
import { FpError, httpErrorName } from './errors.js';
import type { ProfileStore } from './store/store.js';
import { DEFAULT_INGEST_OPTIONS, type IngestOptions } from './ingest.js';
import type { ServerMetrics } from './metrics.js';
import { ingestRoutes } from './routes/ingest.js';
import { queryRoutes } from './routes/query.js';
import { openApiDocument } from './openapi.js';
import { bearerAuth } from './auth.js';
import { registerCors } from './cors.js';
import type { ProfileTimeLimits } from './ingest-checks.js';

export interface AppOptions {
  store: ProfileStore;
  ingest?: IngestOptions;
  metrics: ServerMetrics;
  ingestToken?: string;
  queryToken?: string;
  tls?: { certPath: string; keyPath: string };
  webDir?: string;
  /** Origins allowed cross-origin access (CORS); none by default. */
  corsOrigins?: readonly string[];
  maxBodyBytes: number;
  maxDecompressedBytes: number;
  timeLimits: ProfileTimeLimits;
  logger?: boolean;
  /** Resolves when the store answers a read (GET /readyz); rejects or hangs when it does not. */
  ready: () => Promise<unknown>;
  /** Where errors are logged (always, with their request id); default stderr. */
  logStream?: NodeJS.WritableStream;
}

/** How long /readyz waits for the store before answering 503. */
const READY_TIMEOUT_MS = 2000;

export async function buildApp(o: AppOptions): Promise<FastifyInstance> {
  const https = o.tls ? { cert: readFileSync(o.tls.certPath), key: readFileSync(o.tls.keyPath) } : null;
  // Request logging is opt-in (o.logger); errors are always logged, with the
  // request id that the 5xx answer carries, so an operator can find them.
  const logger = o.logger ? true : { level: 'error', stream: o.logStream ?? process.stderr };
  const app = Fastify({ logger, https, bodyLimit: o.maxBodyBytes, genReqId: () => randomUUID() }) as unknown as FastifyInstance;
  app.addHook('onRequest', async (req, reply) => {
    reply.header('x-request-id', req.id);
  });

  app.setErrorHandler((error: FastifyError | FpError, req, reply) => {
    const statusCode = error.statusCode && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500;
    const code = statusCode === 500 && !(error instanceof FpError) && !error.code ? 'FP_ERR_INTERNAL' : (error.code ?? 'FP_ERR_INTERNAL');
    if (req.url.startsWith('/api/v1/ingest')) o.metrics.ingestRejects.add(1, { reason: code });
    if (statusCode < 500) {
      const body: ApiErrorResponse = { statusCode, code, error: httpErrorName(statusCode), message: error.message, ...(error instanceof FpError ? error.details : undefined) };
      return reply.code(statusCode).type('application/json').send(body);
    }
    // 5xx: the detail (an SQLite message, a stack) goes to the log only; the
    // client gets the request id to quote.
    req.log.error({ err: error, reqId: req.id, url: req.url }, 'request failed');
    const body: ApiErrorResponse = {
      statusCode,
      code: error instanceof FpError ? code : 'FP_ERR_INTERNAL',
      error: httpErrorName(statusCode),
      message: `internal error (request id ${req.id}); the server log has the detail`,
      requestId: req.id,
    };
    return reply.code(statusCode).type('application/json').send(body);
  });
  app.setNotFoundHandler((req, reply) => {
    const body: ApiErrorResponse = { statusCode: 404, code: 'FP_ERR_NOT_FOUND', error: 'Not Found', message: `no route ${req.method} ${req.url.split('?')[0]}` };
    return reply.code(404).send(body);
  });

  registerCors(app, o.corsOrigins ?? []);
  app.get('/api/v1/openapi.json', async () => openApiDocument);
  // Liveness (the process answers): no auth, no store access, so a slow store
  // does not get the pod restarted.
  app.get('/healthz', async () => ({ status: 'ok' }));
  // Readiness: the store answers a read within READY_TIMEOUT_MS.
  app.get('/readyz', async (req, reply) => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer in ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS);
    });
    try {
      await Promise.race([o.ready(), timeout]);
      return { status: 'ready' };
    } catch (error) {
      req.log.error({ err: error, reqId: req.id }, 'readiness check failed: the store does not answer');
      return reply.code(503).send({ status: 'not ready', message: 'the store does not answer a read', requestId: req.id });
    } finally {
      clearTimeout(timer);
    }
  });
  await app.register(async (scope) => {
    scope.addHook('onRequest', bearerAuth(o.queryToken, 'metrics'));
    scope.get('/metrics', async (_req, reply) => reply.type('text/plain; version=0.0.4; charset=utf-8').send(await o.metrics.scrape()));
  });
  await app.register(ingestRoutes, {
    store: o.store,
    ingest: o.ingest ?? DEFAULT_INGEST_OPTIONS,
    metrics: o.metrics,
    ingestToken: o.ingestToken,
    maxBodyBytes: o.maxBodyBytes,
    maxDecompressedBytes: o.maxDecompressedBytes,
    timeLimits: o.timeLimits,
  });
  await app.register(queryRoutes, { store: o.store, metrics: o.metrics, queryToken: o.queryToken });
  if (o.webDir) await app.register(fastifyStatic, { root: o.webDir, prefix: '/', wildcard: true });
  return app;
}
