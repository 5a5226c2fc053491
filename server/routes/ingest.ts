// POST /api/v1/ingest?<label>=<value>...  body: pprof, gzipped or not.
import type { FastifyInstance } from 'fastify';
import type { ProfileStore } from '../store/store.js';
import type { ServerMetrics } from '../metrics.js';
import { ingestProfile, maybeGunzip, parseSeriesLabels, type IngestOptions } from '../ingest.js';
import { bearerAuth } from '../auth.js';
import { errEmptyBody } from '../errors.js';

export interface IngestRouteOptions {
  store: ProfileStore;
  ingest: IngestOptions;
  metrics: ServerMetrics;
  ingestToken: string | undefined;
  maxBodyBytes: number;
  maxDecompressedBytes: number;
}

export async function ingestRoutes(app: FastifyInstance, o: IngestRouteOptions): Promise<void> {
  app.addHook('onRequest', bearerAuth(o.ingestToken, 'ingest'));
  // Bodies are raw bytes whatever the Content-Type says (agents send
  // application/octet-stream, curl sends x-www-form-urlencoded, Go sends none).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: o.maxBodyBytes }, (_req, body, done) => done(null, body));
  app.post('/api/v1/ingest', { bodyLimit: o.maxBodyBytes }, async (req, reply) => {
    const body = req.body;
    if (!Buffer.isBuffer(body)) throw errEmptyBody('request body is empty: expected a pprof profile');
    o.metrics.ingestBytes.add(body.length);
    const labels = parseSeriesLabels(req.query as Record<string, unknown>);
    const raw = await maybeGunzip(body, o.maxDecompressedBytes);
    const res = await ingestProfile(o.store, raw, labels, Date.now(), o.ingest);
    o.metrics.ingestProfiles.add(res.ids.length);
    if (res.droppedLabels > 0) o.metrics.droppedSampleLabels.add(res.droppedLabels);
    reply.code(200);
    return { id: res.id, ids: res.ids, timeMs: res.timeMs, samples: res.samples, stacks: res.stacks, droppedLabels: res.droppedLabels };
  });
}
