// Server metrics through the OpenTelemetry API. The Prometheus exporter is
// used only as a pull MetricReader (its own HTTP server is never started);
// GET /metrics collects and serializes on demand, so it shares our port,
// TLS and auth.
import type { Counter, Histogram, Meter } from '@opentelemetry/api';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { SYMBOL_KINDS, type SymbolKind } from './store/store.js';

export interface ServerMetrics {
  ingestBytes: Counter;
  ingestProfiles: Counter;
  /** Accepted ingest requests by format: pprof, or push (lean). */
  ingestPushes: Counter;
  ingestRejects: Counter;
  droppedSampleLabels: Counter;
  queryDuration: Histogram;
  /** Prometheus text exposition of everything recorded so far. */
  scrape(): Promise<string>;
  shutdown(): Promise<void>;
}

export interface StoreGauges {
  sizeBytes(): Promise<number>;
  symbolRowCounts(): Promise<Record<SymbolKind, number>>;
  commitStats(): { commits: number; ingests: number };
}

export function createMetrics(store: StoreGauges): ServerMetrics {
  const reader = new PrometheusExporter({ preventServerStart: true });
  const provider = new MeterProvider({ readers: [reader] });
  const meter: Meter = provider.getMeter('fleetprof-server');
  const serializer = new PrometheusSerializer();
  const storeSize = meter.createObservableGauge('fleetprof_store_size_bytes', {
    description: 'Bytes on disk of the profile store (database + WAL)',
  });
  storeSize.addCallback(async (r) => r.observe(await store.sizeBytes()));
  // Current row counts, so an operator sees symbols stay bounded (garbage collection, store.ts).
  const symbolRows = meter.createObservableGauge('fleetprof_store_symbol_rows', {
    description: 'Symbol rows in the store, by kind (mapping, function, location, stack)',
  });
  symbolRows.addCallback(async (r) => {
    const counts = await store.symbolRowCounts();
    for (const kind of SYMBOL_KINDS) r.observe(counts[kind], { kind });
  });
  // Group commit (store/group-commit.ts): ingests / commits is how many ingests a commit shared.
  const commits = meter.createObservableCounter('fleetprof_store_commits', { description: 'Ingest commits this server made to the store' });
  commits.addCallback((r) => r.observe(store.commitStats().commits));
  const committed = meter.createObservableCounter('fleetprof_store_committed_ingests', { description: 'Ingests those commits held' });
  committed.addCallback((r) => r.observe(store.commitStats().ingests));
  return {
    ingestBytes: meter.createCounter('fleetprof_ingest_bytes', { description: 'Bytes of profile request bodies received (as sent, before gunzip)' }),
    ingestProfiles: meter.createCounter('fleetprof_ingest_profiles', { description: 'Profiles stored (one per series a pushed profile fell into)' }),
    ingestPushes: meter.createCounter('fleetprof_ingest_requests', { description: 'Ingest requests accepted, by format (pprof, or push: the lean push that references stored stacks by id)' }),
    droppedSampleLabels: meter.createCounter('fleetprof_ingest_dropped_sample_labels', {
      description: 'Sample labels not turned into series labels: --drop-sample-labels, numeric, or invalid (too long, too many)',
    }),
    ingestRejects: meter.createCounter('fleetprof_ingest_rejects', { description: 'Ingest requests rejected, by reason (error code)' }),
    queryDuration: meter.createHistogram('fleetprof_query_duration_seconds', {
      description: 'Latency of query API requests',
      advice: { explicitBucketBoundaries: [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10] },
    }),
    async scrape() {
      const { resourceMetrics } = await reader.collect();
      return serializer.serialize(resourceMetrics);
    },
    shutdown: () => provider.shutdown(),
  };
}
