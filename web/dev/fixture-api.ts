// DEV AID ONLY: a vite plugin answering /api/v1/* with generated JSON in the
// api-types shapes, so the viewer can be worked on without the real server.
// Not used by any test. FIXTURE_NODES=100000 npx vite web for a big profile.
import type { Plugin } from 'vite';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TimelineResponse, LabelNamesResponse, LabelSummaryResponse, LabelValuesResponse } from '../../src/profile/api-types.js';
import { diffFromProfiles, profileFromStacks, type StackSample } from '../src/profile-logic/tree.js';
import { syntheticProfile } from '../src/profile-logic/synthetic.js';

const LABELS: Record<string, string[]> = { node: ['web-1', 'web-2', 'db-1'], comm: ['nginx', 'postgres', 'node'] };

function smallStacks(hot: number): StackSample[] {
  return [
    { frames: ['main', 'serve', 'handle_request', 'parse_json'], value: 300 },
    { frames: ['main', 'serve', 'handle_request', 'render'], value: 200 },
    { frames: ['main', 'serve', 'handle_request', 'render', 'parse_json'], value: 50 },
    { frames: ['main', 'serve', 'write', 'sys_write', 'tcp_sendmsg'], value: 150 },
    { frames: ['main', 'gc', 'js.mark'], value: 100 },
    { frames: ['main', 'compress', 'deflate'], value: hot },
  ];
}

const info = (name: string): { binary: string; kind: 'kernel' | 'jit' | 'native' } =>
  name.startsWith('sys_') || name.startsWith('tcp_')
    ? { binary: '[kernel.kallsyms]', kind: 'kernel' }
    : name.startsWith('js.')
      ? { binary: '[jit]', kind: 'jit' }
      : { binary: name === 'deflate' ? '/usr/lib/libz.so.1' : '/usr/bin/app', kind: 'native' };

function profileFor(query: string): ReturnType<typeof profileFromStacks> {
  const big = Number(process.env.FIXTURE_NODES ?? 0);
  if (big > 0) return syntheticProfile(big, 7);
  return profileFromStacks(smallStacks(query.includes('web-2') ? 600 : 100), info);
}

function send(res: ServerResponse, body: unknown, status = 200): void {
  res.statusCode = status;
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(body));
}

export function fixtureApi(): Plugin {
  return {
    name: 'fleetprof-fixture-api',
    configureServer(server) {
      server.middlewares.use((req: IncomingMessage, res: ServerResponse, next: () => void) => {
        const url = new URL(req.url ?? '/', 'http://x');
        const q = url.searchParams;
        const p = url.pathname;
        if (!p.startsWith('/api/v1/')) return next();
        if (p === '/api/v1/flamegraph') return send(res, profileFor(q.get('query') ?? ''));
        if (p === '/api/v1/diff') return send(res, diffFromProfiles(profileFor(q.get('leftQuery') ?? ''), profileFor(q.get('rightQuery') ?? '')));
        if (p === '/api/v1/timeline') {
          const from = Number(q.get('from'));
          const to = Number(q.get('to'));
          const step = Number(q.get('stepMs')) || 60_000;
          const ts: number[] = [];
          const values: number[] = [];
          for (let t = from - (from % step); t < to; t += step) {
            ts.push(t);
            values.push(1000 + Math.round(500 * Math.sin(t / 600_000)));
          }
          const body: TimelineResponse = { sampleType: { type: 'cpu', unit: 'nanoseconds' }, stepMs: step, timestampsMs: ts, values, groupBy: [], series: [{ labels: {}, total: values.reduce((a, b) => a + b, 0), values }] };
          return send(res, body);
        }
        if (p === '/api/v1/labels') return send(res, { names: Object.keys(LABELS) } satisfies LabelNamesResponse);
        if (p === '/api/v1/labels/summary') {
          const labels = Object.entries(LABELS).map(([name, values]) => ({ name, distinct: values.length, values: values.map((value, i) => ({ value, total: 1000 / (i + 1) })) }));
          return send(res, { sampleType: { type: 'cpu', unit: 'nanoseconds' }, total: 1000 + 500 + 1000 / 3, labels } satisfies LabelSummaryResponse);
        }
        const m = /^\/api\/v1\/labels\/([^/]+)\/values$/.exec(p);
        if (m) {
          const name = decodeURIComponent(m[1]!);
          return send(res, { name, values: LABELS[name] ?? [] } satisfies LabelValuesResponse);
        }
        return send(res, { statusCode: 404, code: 'FST_ERR_NOT_FOUND', error: 'Not Found', message: `fixture has no ${p}` }, 404);
      });
    },
  };
}
