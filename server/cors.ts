// CORS, off unless origins are configured (--cors-origin). Without it the
// browser's same-origin policy keeps other sites' pages from reading query
// answers, and ingest's media-type check keeps them from posting profiles.
// Written by hand (a dozen lines) rather than adding @fastify/cors for one
// exact-match origin list.
import type { FastifyInstance } from 'fastify';

const ALLOWED_METHODS = 'GET, POST, OPTIONS';
const ALLOWED_HEADERS = 'authorization, content-type, content-encoding';

export function registerCors(app: FastifyInstance, origins: readonly string[]): void {
  if (origins.length === 0) return;
  const allowed = new Set(origins);
  app.addHook('onRequest', async (req, reply) => {
    const origin = req.headers.origin;
    reply.header('vary', 'Origin');
    if (origin === undefined || !allowed.has(origin)) return;
    reply.header('access-control-allow-origin', origin);
    if (req.method === 'OPTIONS') {
      reply.header('access-control-allow-methods', ALLOWED_METHODS);
      reply.header('access-control-allow-headers', ALLOWED_HEADERS);
      reply.header('access-control-max-age', '600');
    }
  });
  // Preflights: answered for any path; the headers above say whether the origin may go on.
  app.options('/*', async (_req, reply) => reply.code(204).send());
}
