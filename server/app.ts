// Builds the fastify instance: error shape, routes, metrics, static viewer.
import { readFileSync } from 'node:fs';
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import fastifyStatic from '@fastify/static';
import type { ApiErrorResponse } from '../src/profile/api-types.js';
import { FpError, httpErrorName } from './errors.js';
import type { SqliteStore } from './store/sqlite-store.js';
import type { ServerMetrics } from './metrics.js';
import { ingestRoutes } from './routes/ingest.js';
import { queryRoutes } from './routes/query.js';
import { openApiDocument } from './openapi.js';
import { bearerAuth } from './auth.js';
import { registerCors } from './cors.js';
import type { ProfileTimeLimits } from './ingest-checks.js';

export interface AppOptions {
  store: SqliteStore;
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
}

export async function buildApp(o: AppOptions): Promise<FastifyInstance> {
  const https = o.tls ? { cert: readFileSync(o.tls.certPath), key: readFileSync(o.tls.keyPath) } : null;
  const app = Fastify({ logger: o.logger ?? false, https, bodyLimit: o.maxBodyBytes }) as unknown as FastifyInstance;

  app.setErrorHandler((error: FastifyError | FpError, req, reply) => {
    const statusCode = error.statusCode && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500;
    const code = statusCode === 500 && !(error instanceof FpError) && !error.code ? 'FP_ERR_INTERNAL' : (error.code ?? 'FP_ERR_INTERNAL');
    if (statusCode >= 500) req.log.error(error);
    if (req.url.startsWith('/api/v1/ingest')) o.metrics.ingestRejects.add(1, { reason: code });
    const body: ApiErrorResponse = { statusCode, code, error: httpErrorName(statusCode), message: error.message };
    return reply.code(statusCode).type('application/json').send(body);
  });
  app.setNotFoundHandler((req, reply) => {
    const body: ApiErrorResponse = { statusCode: 404, code: 'FP_ERR_NOT_FOUND', error: 'Not Found', message: `no route ${req.method} ${req.url.split('?')[0]}` };
    return reply.code(404).send(body);
  });

  registerCors(app, o.corsOrigins ?? []);
  app.get('/api/v1/openapi.json', async () => openApiDocument);
  // Liveness/readiness probe (deploy/ manifests): no auth, no store access.
  app.get('/healthz', async () => ({ status: 'ok' }));
  await app.register(async (scope) => {
    scope.addHook('onRequest', bearerAuth(o.queryToken, 'metrics'));
    scope.get('/metrics', async (_req, reply) => reply.type('text/plain; version=0.0.4; charset=utf-8').send(await o.metrics.scrape()));
  });
  await app.register(ingestRoutes, {
    store: o.store,
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
