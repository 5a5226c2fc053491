// Server metrics through the OpenTelemetry API. The Prometheus exporter is
// used only as a pull MetricReader (its own HTTP server is never started);
// GET /metrics collects and serializes on demand, so it shares our port,
// TLS and auth.
import type { Counter, Histogram, Meter } from '@opentelemetry/api';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';

export interface ServerMetrics {
  ingestBytes: Counter;
  ingestProfiles: Counter;
  ingestRejects: Counter;
  queryDuration: Histogram;
  /** Prometheus text exposition of everything recorded so far. */
  scrape(): Promise<string>;
  shutdown(): Promise<void>;
}

export function createMetrics(storeSizeBytes: () => number): ServerMetrics {
  const reader = new PrometheusExporter({ preventServerStart: true });
  const provider = new MeterProvider({ readers: [reader] });
  const meter: Meter = provider.getMeter('fleetprof-server');
  const serializer = new PrometheusSerializer();
  const storeSize = meter.createObservableGauge('fleetprof_store_size_bytes', {
    description: 'Bytes on disk of the profile store (database + WAL)',
  });
  storeSize.addCallback((r) => r.observe(storeSizeBytes()));
  return {
    ingestBytes: meter.createCounter('fleetprof_ingest_bytes', { description: 'Bytes of profile request bodies received (as sent, before gunzip)' }),
    ingestProfiles: meter.createCounter('fleetprof_ingest_profiles', { description: 'Profiles stored' }),
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
