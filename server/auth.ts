// Optional bearer tokens. Ingest and query have separate tokens so agents
// cannot read profiles and viewers cannot write them.
import { timingSafeEqual, createHash } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { errUnauthorized } from './errors.js';

const digest = (s: string) => createHash('sha256').update(s).digest();

/** An onRequest hook enforcing `Authorization: Bearer <token>`; no-op when token is unset. */
export function bearerAuth(token: string | undefined, scope: string) {
  const want = token === undefined || token === '' ? undefined : digest(token);
  return async (req: FastifyRequest): Promise<void> => {
    if (!want) return;
    const h = req.headers.authorization ?? '';
    const m = /^Bearer\s+(.+)$/i.exec(h);
    // Compare fixed-length digests so timing reveals neither content nor length.
    if (!m || !timingSafeEqual(digest(m[1]!.trim()), want)) {
      throw errUnauthorized(`missing or wrong bearer token for ${scope}`);
    }
  };
}
