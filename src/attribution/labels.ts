// The label names a sample or series gets for where its process runs. The
// same names in and out of Kubernetes: outside it, service_name is the
// systemd unit's name and the pod labels are absent.
import type { CgroupIdentity } from './cgroup.js';
import type { PodMetadata } from './pods.js';

export const ATTRIBUTION_LABELS = ['container_id', 'namespace', 'pod', 'container', 'service_name', 'systemd_unit'] as const;
export type AttributionLabel = (typeof ATTRIBUTION_LABELS)[number];
export type AttributionLabels = Readonly<Partial<Record<AttributionLabel, string>>>;

const UNIT_SUFFIX = /\.(service|scope|socket|mount|swap|timer|path|target|device)$/;

/** Labels for one cgroup identity; pod labels when the pod metadata knows its container or pod UID. */
export function attributionLabels(identity: Omit<CgroupIdentity, 'unifiedPath'>, pods: PodMetadata | undefined): AttributionLabels {
  const labels: Partial<Record<AttributionLabel, string>> = {};
  if (identity.containerId !== undefined) labels.container_id = identity.containerId;
  const found = pods?.lookup(identity.containerId, identity.podUid);
  if (found) {
    labels.namespace = found.pod.namespace;
    labels.pod = found.pod.name;
    if (found.container !== undefined) labels.container = found.container;
    labels.service_name = found.pod.serviceName;
  } else if (identity.systemdUnit !== undefined) {
    labels.systemd_unit = identity.systemdUnit;
    // A unit's name is the host's service name (nginx.service -> nginx); a
    // session or a template instance (getty@tty1) keeps its own.
    labels.service_name = identity.systemdUnit.replace(UNIT_SUFFIX, '');
  }
  return labels;
}

/** A stable string for a label set (series keys, sample dedup). */
export function labelsKey(labels: AttributionLabels): string {
  let key = '';
  for (const name of ATTRIBUTION_LABELS) {
    const value = labels[name];
    if (value !== undefined) key += `${name}=${value}\u0000`;
  }
  return key;
}
