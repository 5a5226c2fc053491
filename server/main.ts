// Minimal standalone entry (until the lead's CLI wires `fleetprof server`):
//   node dist/server/main.js --data-dir DIR | --store URL [--port N] [--host H] [--retention-ms MS] [--commit-linger-ms MS]
// Prints "listening <url>" once ready; SIGINT/SIGTERM close cleanly.
import { parseArgs } from 'node:util';
import { startServer } from './index.js';

const { values } = parseArgs({
  options: {
    'data-dir': { type: 'string' },
    store: { type: 'string' },
    port: { type: 'string', default: '4100' },
    host: { type: 'string', default: '127.0.0.1' },
    'retention-ms': { type: 'string' },
    'commit-linger-ms': { type: 'string' },
    'ingest-token': { type: 'string' },
    'query-token': { type: 'string' },
    'web-dir': { type: 'string' },
  },
});
if (!values['data-dir'] && !values.store) {
  console.error('usage: main.js --data-dir DIR | --store sqlite:DIR|postgres://... [--port N] [--host H] [--retention-ms MS]');
  process.exit(2);
}
const server = await startServer({
  dataDir: values['data-dir'],
  store: values.store,
  port: Number(values.port),
  host: values.host,
  retentionMs: values['retention-ms'] ? Number(values['retention-ms']) : undefined,
  commitLingerMs: values['commit-linger-ms'] !== undefined ? Number(values['commit-linger-ms']) : undefined,
  ingestToken: values['ingest-token'],
  queryToken: values['query-token'],
  webDir: values['web-dir'],
});
console.log(`listening ${server.url}`);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    void server.close().then(() => process.exit(0));
  });
}
