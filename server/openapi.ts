// OpenAPI 3 description of the HTTP API, served at /api/v1/openapi.json.
// Written by hand to mirror src/profile/api-types.ts (the contract with the viewer).

const str = { type: 'string' } as const;
const num = { type: 'number' } as const;
const numArr = { type: 'array', items: num } as const;
const strArr = { type: 'array', items: str } as const;
const q = (name: string, description: string, required = false) => ({ name, in: 'query', required, description, schema: str });
const selectorParams = [
  q('query', 'Series selector, Prometheus style: {node="a",comm=~"post.*"}; empty selects everything'),
  q('from', 'Start (inclusive): RFC 3339, Unix milliseconds or now-<n><ms|s|m|h|d|w>; default to-1h'),
  q('to', 'End (exclusive), same formats; default now'),
];
const groupByParam = q('groupBy', 'Comma-separated series label names (at most 3), e.g. comm or node,pod: split the result by their values');
const sampleTypeParam = q('sampleType', '"type" or "type:unit"; default cpu, then wall, then samples, then the first type');
const err = { description: 'Problem with the request', content: { 'application/json': { schema: { $ref: '#/components/schemas/ApiError' } } } };
const json = (ref: string) => ({ description: 'OK', content: { 'application/json': { schema: { $ref: `#/components/schemas/${ref}` } } } });
const pprof = { description: 'gzipped pprof (profile.proto)', content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } };
const sampleType = { type: 'object', required: ['type', 'unit'], properties: { type: str, unit: str } };
const functions = {
  type: 'object',
  required: ['name', 'binary', 'kind'],
  properties: { name: strArr, binary: strArr, kind: { type: 'array', items: { type: 'string', enum: ['kernel', 'native', 'jit', 'unknown', 'label'] } } },
};
const tree = {
  type: 'object',
  description: 'Column-wise call tree in pre-order; node 0 is the root (func -1, parent -1)',
  required: ['func', 'parent', 'self', 'total'],
  properties: { func: numArr, parent: numArr, self: numArr, total: numArr },
};

export const openApiDocument = {
  openapi: '3.0.3',
  info: { title: 'fleetprof server', version: '1', description: 'Fleet-wide CPU profile store and query API' },
  components: {
    securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'ingestToken for /ingest, queryToken for everything else (when configured)' } },
    schemas: {
      ApiError: {
        type: 'object',
        required: ['statusCode', 'code', 'error', 'message'],
        properties: {
          statusCode: num,
          code: str,
          error: str,
          message: str,
          requestId: str,
          missingStacks: { type: 'array', items: { type: 'integer' }, description: 'FP_ERR_UNKNOWN_STACKS (409): referenced stack content ids the store does not hold' },
        },
      },
      SampleType: sampleType,
      FlameGraph: {
        type: 'object',
        description: 'With groupBy, the first groupBy.length levels under the root are label nodes (kind "label", name "label=value")',
        required: ['version', 'sampleType', 'total', 'groupBy', 'functions', 'tree'],
        properties: { version: { type: 'integer', enum: [1] }, sampleType, total: num, groupBy: strArr, functions, tree },
      },
      DiffFlameGraph: {
        type: 'object',
        required: ['version', 'sampleType', 'baselineTotal', 'total', 'groupBy', 'functions', 'tree'],
        properties: {
          version: { type: 'integer', enum: [1] },
          sampleType,
          baselineTotal: num,
          total: num,
          groupBy: strArr,
          functions,
          tree: { allOf: [tree, { type: 'object', required: ['baselineSelf', 'baselineTotal'], properties: { baselineSelf: numArr, baselineTotal: numArr } }] },
        },
      },
      Top: {
        type: 'object',
        required: ['sampleType', 'total', 'groupBy', 'rows'],
        properties: {
          sampleType,
          total: num,
          groupBy: strArr,
          rows: {
            type: 'array',
            items: {
              type: 'object',
              required: ['name', 'binary', 'kind', 'self', 'total', 'labels'],
              properties: { name: str, binary: str, kind: str, self: num, total: num, labels: { type: 'object', additionalProperties: str, description: 'The row\'s group; {} when not grouped' } },
            },
          },
        },
      },
      Timeline: {
        type: 'object',
        description: 'Each profile spread over its duration; values in sampleType units per step (cpu ns / (stepMs * 1e6) = cores)',
        required: ['sampleType', 'stepMs', 'timestampsMs', 'values', 'groupBy', 'series'],
        properties: {
          sampleType,
          stepMs: num,
          timestampsMs: numArr,
          values: numArr,
          groupBy: strArr,
          series: {
            type: 'array',
            items: { type: 'object', required: ['labels', 'total', 'values'], properties: { labels: { type: 'object', additionalProperties: str }, total: num, values: numArr } },
          },
        },
      },
      LabelSummary: {
        type: 'object',
        required: ['sampleType', 'total', 'labels'],
        properties: {
          sampleType,
          total: num,
          labels: {
            type: 'array',
            items: {
              type: 'object',
              required: ['name', 'distinct', 'values'],
              properties: {
                name: str,
                distinct: num,
                values: { type: 'array', items: { type: 'object', required: ['value', 'total'], properties: { value: str, total: num } } },
              },
            },
          },
        },
      },
      LabelNames: { type: 'object', required: ['names'], properties: { names: strArr } },
      LabelValues: { type: 'object', required: ['name', 'values'], properties: { name: str, values: strArr } },
      IngestResult: {
        type: 'object',
        description: 'One stored profile per series the samples fall into (string sample labels become series labels); id is the first',
        properties: { id: num, ids: { type: 'array', items: num }, timeMs: num, samples: num, stacks: num, droppedLabels: num },
      },
      ProfileList: {
        type: 'object',
        properties: {
          profiles: {
            type: 'array',
            items: {
              type: 'object',
              properties: {
                id: num,
                labels: { type: 'object', additionalProperties: str },
                timeMs: num,
                durationNs: num,
                sampleTypes: { type: 'array', items: sampleType },
                stacks: num,
              },
            },
          },
        },
      },
    },
  },
  security: [{ bearer: [] }],
  paths: {
    '/api/v1/ingest': {
      post: {
        summary: 'Store one pprof profile or lean push; query-string parameters are the series labels',
        parameters: [{ name: 'labels', in: 'query', style: 'form', explode: true, schema: { type: 'object', additionalProperties: str } }],
        requestBody: {
          required: true,
          description:
            'pprof, gzipped or not; or a lean push (application/vnd.fleetprof.push+protobuf, src/profile/push-format.ts), which references stored stacks by content id and is answered 409 FP_ERR_UNKNOWN_STACKS (missingStacks) when the store does not hold one; other media types get 415',
          content: Object.fromEntries(
            ['application/octet-stream', 'application/x-protobuf', 'application/vnd.google.protobuf', 'application/vnd.fleetprof.push+protobuf'].map((t) => [t, { schema: { type: 'string', format: 'binary' } }]),
          ),
        },
        responses: { 200: json('IngestResult'), 400: err, 401: err, 409: err, 413: err, 415: err, 500: err },
      },
    },
    '/api/v1/labels': { get: { summary: 'Label names', parameters: selectorParams, responses: { 200: json('LabelNames'), 400: err } } },
    '/api/v1/labels/summary': {
      get: {
        summary: 'Label names with their values ranked by share of the selection',
        parameters: [...selectorParams, sampleTypeParam, q('limit', 'Values per label (default 10)')],
        responses: { 200: json('LabelSummary'), 400: err },
      },
    },
    '/api/v1/labels/{name}/values': {
      get: {
        summary: 'Values of one label',
        parameters: [{ name: 'name', in: 'path', required: true, schema: str }, ...selectorParams],
        responses: { 200: json('LabelValues'), 400: err },
      },
    },
    '/api/v1/profile': { get: { summary: 'Merged profile as gzipped pprof', parameters: [...selectorParams, sampleTypeParam], responses: { 200: pprof, 400: err } } },
    '/api/v1/flamegraph': { get: { summary: 'Merged flame graph', parameters: [...selectorParams, sampleTypeParam, groupByParam], responses: { 200: json('FlameGraph'), 400: err } } },
    '/api/v1/top': {
      get: { summary: 'Functions by self value', parameters: [...selectorParams, sampleTypeParam, groupByParam, q('limit', 'Rows (default 100)')], responses: { 200: json('Top'), 400: err } },
    },
    '/api/v1/timeline': {
      get: { summary: 'Total value per time step', parameters: [...selectorParams, sampleTypeParam, groupByParam, q('stepMs', 'Step in ms (default range/100)')], responses: { 200: json('Timeline'), 400: err } },
    },
    '/api/v1/diff': {
      get: {
        summary: 'Diff flame graph: left = baseline, right = self/total',
        parameters: ['leftQuery', 'leftFrom', 'leftTo', 'rightQuery', 'rightFrom', 'rightTo'].map((n) => q(n, 'As query/from/to, per side')).concat([sampleTypeParam, groupByParam]),
        responses: { 200: json('DiffFlameGraph'), 400: err },
      },
    },
    '/api/v1/profiles': {
      get: { summary: 'Stored profiles', parameters: [...selectorParams, q('limit', 'Max rows (default 1000)')], responses: { 200: json('ProfileList'), 400: err } },
    },
    '/api/v1/profiles/{id}': {
      get: { summary: 'One stored profile as gzipped pprof', parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'integer' } }], responses: { 200: pprof, 404: err } },
    },
    '/healthz': { get: { summary: 'Liveness probe (no auth)', responses: { 200: { description: '{"status":"ok"}', content: { 'application/json': { schema: { type: 'object' } } } } } } },
    '/readyz': {
      get: {
        summary: 'Readiness probe (no auth): the store answers a read',
        responses: { 200: { description: '{"status":"ready"}' }, 503: { description: 'the store does not answer within 2 s' } },
      },
    },
    '/metrics': { get: { summary: 'Prometheus metrics', responses: { 200: { description: 'Prometheus text format', content: { 'text/plain': { schema: str } } } } } },
  },
};
