// What a process's cgroup path says about where it runs: the container id
// (containerd, CRI-O, Docker, Podman), the Kubernetes pod UID and QoS class
// when the path is kubelet's, and the systemd unit otherwise. Parsed from
// /proc/PID/cgroup on cgroup v1, v2 and hybrid hosts.
//
// Written by hand: no npm package parses these shapes, and the shapes are the
// runtimes' and kubelet's naming conventions, not a format with a spec. The
// tests hold one real-world path per runtime, driver and hierarchy.

export type ContainerRuntime = 'containerd' | 'cri-o' | 'docker' | 'podman';
export type QosClass = 'guaranteed' | 'burstable' | 'besteffort';

export interface CgroupIdentity {
  /** The path in the unified (v2) hierarchy, as the reader sees it ('0::' line); undefined on a v1-only host. */
  unifiedPath?: string;
  /** 64 hex digits, as `crictl ps` and the pod's status (`containerd://<id>`) show it. */
  containerId?: string;
  runtime?: ContainerRuntime;
  /** The pod's metadata.uid, with dashes (the systemd driver writes them as underscores). */
  podUid?: string;
  qosClass?: QosClass;
  /** The systemd unit (`nginx.service`, `session-3.scope`) of a process outside any container. */
  systemdUnit?: string;
}

export interface CgroupLine {
  hierarchyId: number;
  /** Controllers ('cpu,cpuacct', 'name=systemd'); '' for the unified hierarchy. */
  controllers: string;
  path: string;
}

/** Lines of /proc/PID/cgroup ("ID:CONTROLLERS:PATH"); malformed lines are skipped. */
export function parseCgroupFile(text: string): CgroupLine[] {
  const lines: CgroupLine[] = [];
  for (const line of text.split('\n')) {
    // The path may itself hold ':' (it is a file name), so split on the first two only.
    const first = line.indexOf(':');
    const second = first < 0 ? -1 : line.indexOf(':', first + 1);
    if (second < 0) continue;
    const hierarchyId = Number(line.slice(0, first));
    if (!Number.isInteger(hierarchyId)) continue;
    lines.push({ hierarchyId, controllers: line.slice(first + 1, second), path: line.slice(second + 1) });
  }
  return lines;
}

const HEX64 = '[0-9a-f]{64}';
// One path component naming a container, for each runtime and cgroup driver.
// The conmon/monitor scopes (crio-conmon-ID, libpod-conmon-ID) are not the
// container's processes and match none of these.
const CONTAINER_COMPONENTS: { re: RegExp; runtime: ContainerRuntime }[] = [
  { re: new RegExp(`^cri-containerd-(${HEX64})\\.scope$`), runtime: 'containerd' },
  { re: new RegExp(`^crio-(${HEX64})\\.scope$`), runtime: 'cri-o' },
  { re: new RegExp(`^docker-(${HEX64})\\.scope$`), runtime: 'docker' },
  { re: new RegExp(`^libpod-(${HEX64})\\.scope$`), runtime: 'podman' },
];
// cgroupfs driver: the bare id, under kubepods/<qos>/pod<uid>/ or docker/.
const BARE_ID = new RegExp(`^(${HEX64})$`);
// kubepods-burstable-pod0c9e..._..._.slice (systemd) or pod0c9e...-... (cgroupfs).
const POD_COMPONENT = /^(?:.*-)?pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?:\.slice)?$/;
const QOS_COMPONENT = /(?:^|-)(burstable|besteffort)(?:\.slice)?$/;
const UNIT_COMPONENT = /\.(service|scope|socket|mount|swap|timer|path|target|device)$/;

/** What one cgroup path tells (container, pod, unit); empty when it tells nothing. */
export function identifyPath(path: string): Omit<CgroupIdentity, 'unifiedPath'> {
  // A reader in another cgroup namespace sees paths relative to its own root
  // ("/../../kubepods.slice/..."): the ".." components say nothing.
  const components = path.split('/').filter((part) => part !== '' && part !== '..' && part !== '.');
  const identity: Omit<CgroupIdentity, 'unifiedPath'> = {};
  let containerAt = -1;
  // The innermost container component wins: a container may make cgroups of its own below it.
  for (let i = components.length - 1; i >= 0 && containerAt < 0; i--) {
    const component = components[i]!;
    for (const { re, runtime } of CONTAINER_COMPONENTS) {
      const match = re.exec(component);
      if (match) {
        identity.containerId = match[1];
        identity.runtime = runtime;
        containerAt = i;
        break;
      }
    }
    if (containerAt < 0 && BARE_ID.test(component) && i > 0) {
      const parent = components[i - 1]!;
      // Only where a runtime puts bare ids: under a pod (kubelet, cgroupfs driver) or docker/.
      if (POD_COMPONENT.test(parent) || parent === 'docker') {
        identity.containerId = component;
        identity.runtime = parent === 'docker' ? 'docker' : undefined;
        if (identity.runtime === undefined) delete identity.runtime;
        containerAt = i;
      }
    }
  }
  // kubelet's part of the path. A reader in another cgroup namespace may not
  // see the kubepods root, but systemd-driver names carry "kubepods-" in every
  // component, and a pod directly above a container is one.
  const kubepods = components.findIndex((part) => part === 'kubepods' || part.endsWith('kubepods.slice'));
  const end = containerAt < 0 ? components.length : containerAt;
  for (let i = 0; i < end; i++) {
    const component = components[i]!;
    const underKubelet = (kubepods >= 0 && i > kubepods) || component.startsWith('kubepods-') || component.includes('-kubepods-');
    const pod = POD_COMPONENT.exec(component);
    if (pod && (underKubelet || i === containerAt - 1)) {
      identity.podUid = pod[1]!.replaceAll('_', '-');
      // systemd driver: the pod's slice name repeats its QoS class (kubepods-besteffort-pod...).
      const qosInName = /-(burstable|besteffort)-pod/.exec(component);
      if (qosInName) identity.qosClass = qosInName[1] as QosClass;
      continue;
    }
    const qos = underKubelet ? QOS_COMPONENT.exec(component) : null;
    if (qos && identity.podUid === undefined) identity.qosClass = qos[1] as QosClass;
  }
  if (identity.podUid !== undefined && identity.qosClass === undefined) identity.qosClass = 'guaranteed';
  if (identity.containerId === undefined && identity.podUid === undefined) {
    // Outside containers: the innermost unit (getty@tty1.service under system-getty.slice).
    for (let i = components.length - 1; i >= 0; i--) {
      if (UNIT_COMPONENT.test(components[i]!)) {
        identity.systemdUnit = components[i];
        break;
      }
    }
  }
  return identity;
}

/**
 * Reads one process's identity from its /proc/PID/cgroup text. The unified
 * line ('0::') is asked first, then systemd's named v1 hierarchy, then the
 * other v1 controllers: on a hybrid host whose runtime uses the cgroupfs
 * driver, the container's own cgroups exist only under the v1 controllers,
 * while its unified path is the runtime's service.
 */
export function identifyProcess(cgroupFileText: string): CgroupIdentity {
  const lines = parseCgroupFile(cgroupFileText);
  const unified = lines.find((line) => line.hierarchyId === 0 && line.controllers === '');
  const systemd = lines.find((line) => line.controllers === 'name=systemd');
  const ordered = [unified, systemd, ...lines.filter((line) => line !== unified && line !== systemd)].filter(
    (line): line is CgroupLine => line !== undefined,
  );
  let best: Omit<CgroupIdentity, 'unifiedPath'> = {};
  for (const line of ordered) {
    const identity = identifyPath(line.path);
    if (identity.containerId !== undefined) {
      best = identity;
      break;
    }
    if (best.podUid === undefined && best.systemdUnit === undefined) best = identity;
    else if (best.podUid === undefined && identity.podUid !== undefined) best = identity;
  }
  return unified === undefined ? best : { unifiedPath: unified.path, ...best };
}
