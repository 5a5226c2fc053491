// POST /api/v1/ingest?<label>=<value>...  body: pprof, gzipped or not; or,
// as application/vnd.fleetprof.push+protobuf, a lean push (src/profile/push-format.ts).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ProfileStore } from '../store/store.js';
import type { ServerMetrics } from '../metrics.js';
import { ingestProfile, maybeGunzip, parseSeriesLabels, type IngestOptions } from '../ingest.js';
import { ingestPush } from '../ingest-push.js';
import { PUSH_MEDIA_TYPE } from '../../src/profile/push-format.js';
import { bearerAuth } from '../auth.js';
import { errEmptyBody, errUnsupportedMediaType } from '../errors.js';
import type { ProfileTimeLimits } from '../ingest-checks.js';

/** Media types a pprof body may be sent as (gzipped or not: the body is sniffed). */
export const PROTOBUF_MEDIA_TYPES = ['application/octet-stream', 'application/x-protobuf', 'application/vnd.google.protobuf'];
const CONTENT_ENCODINGS = ['identity', 'gzip'];
/** Every media type ingest takes: pprof's, and the lean push's. */
export const INGEST_MEDIA_TYPES = [...PROTOBUF_MEDIA_TYPES, PUSH_MEDIA_TYPE];

const mediaTypeOf = (header: string | undefined) => (header ?? '').split(';')[0]!.trim().toLowerCase();

export interface IngestRouteOptions {
  store: ProfileStore;
  ingest: IngestOptions;
  metrics: ServerMetrics;
  ingestToken: string | undefined;
  maxBodyBytes: number;
  maxDecompressedBytes: number;
  timeLimits: ProfileTimeLimits;
}

export async function ingestRoutes(app: FastifyInstance, o: IngestRouteOptions): Promise<void> {
  app.addHook('onRequest', bearerAuth(o.ingestToken, 'ingest'));
  app.addHook('onRequest', requireProtobuf);
  // Bodies are raw bytes under every accepted media type (requireProtobuf has
  // refused the others before the body is read).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: o.maxBodyBytes }, (_req, body, done) => done(null, body));
  app.post('/api/v1/ingest', { bodyLimit: o.maxBodyBytes }, async (req, reply) => {
    const body = req.body;
    if (!Buffer.isBuffer(body)) throw errEmptyBody('request body is empty: expected a pprof profile');
    o.metrics.ingestBytes.add(body.length);
    const labels = parseSeriesLabels(req.query as Record<string, unknown>);
    const raw = await maybeGunzip(body, o.maxDecompressedBytes);
    const lean = mediaTypeOf(req.headers['content-type']) === PUSH_MEDIA_TYPE;
    const res = lean ? await ingestPush(o.store, raw, labels, Date.now(), o.ingest, o.timeLimits) : await ingestProfile(o.store, raw, labels, Date.now(), o.ingest, o.timeLimits);
    o.metrics.ingestProfiles.add(res.ids.length);
    o.metrics.ingestPushes.add(1, { format: lean ? 'push' : 'pprof' });
    if (res.droppedLabels > 0) o.metrics.droppedSampleLabels.add(res.droppedLabels);
    reply.code(200);
    return { id: res.id, ids: res.ids, timeMs: res.timeMs, samples: res.samples, stacks: res.stacks, droppedLabels: res.droppedLabels };
  });
}

/**
 * Only protobuf media types reach the decoder. A web page can send text/plain,
 * application/x-www-form-urlencoded or multipart/form-data (or no type at
 * all) cross-origin without a CORS preflight; refusing those means a page in
 * someone's browser cannot post profiles to a server it can reach.
 */
async function requireProtobuf(req: FastifyRequest): Promise<void> {
  if (req.method !== 'POST') return;
  const header = req.headers['content-type'];
  if (!INGEST_MEDIA_TYPES.includes(mediaTypeOf(header))) {
    const got = header === undefined ? 'no Content-Type' : `Content-Type ${JSON.stringify(header)}`;
    throw errUnsupportedMediaType(`ingest takes a pprof as one of ${PROTOBUF_MEDIA_TYPES.join(', ')}, or a lean push as ${PUSH_MEDIA_TYPE}; got ${got}`);
  }
  const encoding = req.headers['content-encoding']?.trim().toLowerCase();
  if (encoding !== undefined && encoding !== '' && !CONTENT_ENCODINGS.includes(encoding)) {
    throw errUnsupportedMediaType(`ingest takes Content-Encoding gzip or none; got ${JSON.stringify(encoding)}`);
  }
}
