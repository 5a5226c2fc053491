import type { Meter } from '@opentelemetry/api';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';

export interface PrometheusMetrics {
  meter: Meter;
  /** The current values in Prometheus text format, for a /metrics route. */
  render(): Promise<string>;
  shutdown(): Promise<void>;
}

/**
 * An OpenTelemetry meter whose metrics are read on demand in Prometheus
 * format. The exporter's own HTTP server stays off: agent and server each
 * serve /metrics on their own port.
 */
export function createPrometheusMetrics(meterName: string): PrometheusMetrics {
  const exporter = new PrometheusExporter({ preventServerStart: true });
  const provider = new MeterProvider({ readers: [exporter] });
  const serializer = new PrometheusSerializer();
  return {
    meter: provider.getMeter(meterName),
    async render() {
      const { resourceMetrics } = await exporter.collect();
      return serializer.serialize(resourceMetrics);
    },
    shutdown: () => provider.shutdown(),
  };
}
