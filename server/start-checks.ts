// Checks made before the server listens: refusing a setup that would serve
// everyone's profiles to anyone on the network, and saying why.
import { existsSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';

/** True for addresses only this host can reach. Host names other than localhost count as exposed. */
export function isLoopback(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[|\]$/g, '');
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || /^::ffff:127\./.test(h) || h === '0:0:0:0:0:0:0:1';
  return false;
}

export interface ExposureOptions {
  host: string;
  ingestToken?: string;
  queryToken?: string;
  allowUnauthenticated?: boolean;
}

/**
 * Throws when the server would listen beyond loopback without both tokens,
 * unless that is asked for explicitly: profiles carry function and process
 * names, and an open ingest lets anyone fill the disk.
 */
export function checkExposure(o: ExposureOptions): void {
  if (isLoopback(o.host) || o.allowUnauthenticated) return;
  const missing = [!o.ingestToken && '--ingest-token (FLEETPROF_INGEST_TOKEN)', !o.queryToken && '--query-token (FLEETPROF_QUERY_TOKEN)'].filter(Boolean);
  if (missing.length === 0) return;
  throw new Error(
    `refusing to listen on ${o.host} without ${missing.join(' and ')}: anyone who can reach it could read and write profiles. ` +
      'Set the token(s), listen on 127.0.0.1, or pass --allow-unauthenticated to run open on purpose.',
  );
}

/** A warning when the viewer's files are missing (the API works, / answers 404), else undefined. */
export function viewerMissingWarning(webDir: string | undefined): string | undefined {
  if (webDir === undefined || existsSync(join(webDir, 'index.html'))) return undefined;
  return `the web viewer is not built (${join(webDir, 'index.html')} is missing), so / answers 404; build it with \`npm run build\` (or \`npm run build:web\`)`;
}
