// Attribution for `record` and the agent: which container, pod and service
// each sampled process belongs to, and which of them to profile at all
// (--include/--exclude, decided per cgroup in the kernel, settled per sample
// here). Sits between the collector (which hands it processes and samples)
// and the profile builder.
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import type { MapInfo } from '../native/addon.js';
import type { ResolvedSample } from '../agent/collector.js';
import { identifyPath, identifyProcess, type CgroupIdentity } from './cgroup.js';
import { findUnifiedHierarchy, listCgroups, type UnifiedHierarchy } from './cgroup-tree.js';
import { KernelCgroupFilter, type CgroupId } from './kernel-filter.js';
import { attributionLabels, type AttributionLabels } from './labels.js';
import { PodMetadata, type PodMetadataOptions, type PodWatchStats } from './pods.js';
import { Selection } from './selection.js';

export interface AttributionOptions {
  procRoot?: string;
  selection?: Selection;
  /** Pod metadata from the Kubernetes API; undefined: labels from the cgroup path only. */
  kubernetes?: Omit<PodMetadataOptions, 'onChange' | 'onError' | 'onWarning'>;
  /** How often the cgroup tree is walked for new cgroups to filter (default 5 s); pod changes trigger a walk too. */
  cgroupRefreshMs?: number;
  onWarning?: (message: string) => void;
}

export interface AttributionStats {
  /** Processes whose cgroup could not be read (gone before they were looked at). */
  cgroupUnreadable: number;
  /** Processes whose /proc/PID/root could not be followed: their binaries in other mount namespaces cannot be read. */
  procRootUnreadable: number;
  /** Samples the kernel dropped for --include/--exclude. */
  kernelFilteredSamples: number;
  /** Samples dropped here for --include/--exclude (comm matchers, cgroups the kernel could not tell apart, new cgroups). */
  userFilteredSamples: number;
  /** Cgroups the kernel filter could not hold (map full). */
  kernelFilterOverflow: number;
  /** Cgroup ids in the kernel filter's set. */
  kernelFilterCgroups: number;
  /** Whether the kernel filter is on (a selection and a usable cgroup v2 hierarchy). */
  kernelFilterActive: boolean;
  kubernetes?: PodWatchStats;
}

interface ProcessEntry {
  identity: CgroupIdentity;
  labels?: AttributionLabels;
  labelsVersion: number;
  lastUsed: number;
}

const PROCESS_IDLE_DRAINS = 30;

export class Attribution {
  private readonly procRoot: string;
  private readonly selection: Selection | undefined;
  private readonly onWarning: (message: string) => void;
  private readonly processes = new Map<number, ProcessEntry>();
  private pods: PodMetadata | undefined;
  private kernelFilter: KernelCgroupFilter | undefined;
  private hierarchy: UnifiedHierarchy | undefined;
  private refreshTimer: NodeJS.Timeout | undefined;
  private refreshSoon: NodeJS.Timeout | undefined;
  /** Bumped when pod metadata changes: cached labels are recomputed. */
  private labelsVersion = 0;
  private drain = 0;
  private readonly counters = { cgroupUnreadable: 0, procRootUnreadable: 0, userFilteredSamples: 0, kernelFilterOverflow: 0 };
  private readonly cgroupRefreshMs: number;
  private apiWasReachable = true;

  private constructor(options: AttributionOptions) {
    this.procRoot = options.procRoot ?? '/proc';
    this.selection = options.selection?.active ? options.selection : undefined;
    this.onWarning = options.onWarning ?? (() => {});
    this.cgroupRefreshMs = options.cgroupRefreshMs ?? 5000;
  }

  static async start(options: AttributionOptions): Promise<Attribution> {
    const attribution = new Attribution(options);
    if (options.kubernetes) {
      attribution.pods = await PodMetadata.start({
        ...options.kubernetes,
        onChange: () => attribution.podsChanged(),
        onError: (message) => attribution.apiFailed(message),
        onWarning: (message) => attribution.onWarning(message),
      });
      if (!attribution.pods.stats().reachable) attribution.apiFailed('no answer to the first list');
    }
    return attribution;
  }

  /** Hooks for Collector.start: fill the kernel filter before the first sample, and read each new process's cgroup at once. */
  get collectorHooks(): { onLoaded: (mapInfo: (name: string) => MapInfo) => void; onNewProcess: (tgid: number) => void } {
    return { onLoaded: (mapInfo) => this.loaded(mapInfo), onNewProcess: (tgid) => this.observe(tgid) };
  }

  /**
   * Gives each sample its attribution labels and drops those the selection
   * does not keep (counted). Call once per drain.
   */
  apply(samples: ResolvedSample[]): ResolvedSample[] {
    this.drain++;
    if (!this.apiWasReachable && this.pods?.stats().reachable) {
      this.apiWasReachable = true;
      this.onWarning('Kubernetes API reachable again: pod labels are back');
    }
    const kept: ResolvedSample[] = [];
    for (const sample of samples) {
      const labels = this.labelsFor(sample.labels.pid);
      sample.labels.attribution = labels;
      if (this.selection && !this.selection.keeps({ ...labels, comm: sample.labels.processName ?? sample.labels.comm })) {
        this.counters.userFilteredSamples += sample.count;
        continue;
      }
      kept.push(sample);
    }
    for (const [tgid, entry] of this.processes) if (this.drain - entry.lastUsed > PROCESS_IDLE_DRAINS) this.processes.delete(tgid);
    return kept;
  }

  labelsFor(tgid: number): AttributionLabels {
    let entry = this.processes.get(tgid);
    if (!entry) entry = this.observe(tgid);
    entry.lastUsed = this.drain;
    if (entry.labels === undefined || entry.labelsVersion !== this.labelsVersion) {
      entry.labels = attributionLabels(entry.identity, this.pods);
      entry.labelsVersion = this.labelsVersion;
    }
    return entry.labels;
  }

  /**
   * Reads the kernel's counters one last time: call right before the
   * collector stops, whose BPF object (and the maps) goes with it. Samples
   * between this read and the detach (microseconds) are not in the count.
   */
  freezeKernelCounters(): void {
    this.frozenKernelFiltered = this.kernelFilter?.droppedSamples() ?? 0;
    clearInterval(this.refreshTimer);
    clearTimeout(this.refreshSoon);
    this.kernelFilter = undefined;
  }

  private frozenKernelFiltered: number | undefined;

  stats(): AttributionStats {
    return {
      ...this.counters,
      kernelFilteredSamples: this.frozenKernelFiltered ?? this.kernelFilter?.droppedSamples() ?? 0,
      kernelFilterCgroups: this.kernelFilterIds?.size ?? 0,
      kernelFilterActive: this.kernelFilterIds !== undefined,
      kubernetes: this.pods?.stats(),
    };
  }

  async stop(): Promise<void> {
    clearInterval(this.refreshTimer);
    clearTimeout(this.refreshSoon);
    await this.pods?.stop();
  }

  private observe(tgid: number): ProcessEntry {
    let identity: CgroupIdentity = {};
    try {
      identity = identifyProcess(readFileSync(`${this.procRoot}/${tgid}/cgroup`, 'utf8'));
    } catch {
      this.counters.cgroupUnreadable++;
    }
    try {
      readlinkSync(`${this.procRoot}/${tgid}/root`);
    } catch (error) {
      // EACCES/EPERM: no CAP_SYS_PTRACE over it; ENOENT: it is gone already (not this counter's business).
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') this.counters.procRootUnreadable++;
    }
    const entry: ProcessEntry = { identity, labelsVersion: -1, lastUsed: this.drain };
    this.processes.set(tgid, entry);
    return entry;
  }

  private podsChanged(): void {
    this.labelsVersion++;
    // Many events arrive together on a (re)list: walk the tree once after them.
    if (this.kernelFilter && this.refreshSoon === undefined) {
      this.refreshSoon = setTimeout(() => {
        this.refreshSoon = undefined;
        this.refreshKernelFilter();
      }, 50);
    }
  }

  private apiFailed(message: string): void {
    // Said once per outage, counted every time (PodWatchStats.errors).
    if (!this.apiWasReachable) return;
    this.apiWasReachable = false;
    this.onWarning(`Kubernetes API unreachable (${message}): samples keep their container id, pod labels resume when it answers`);
  }

  private kernelFilterIds: Set<CgroupId> | undefined;

  private loaded(mapInfo: (name: string) => MapInfo): void {
    if (!this.selection) return;
    this.hierarchy = findUnifiedHierarchy(this.procRoot);
    if (!this.hierarchy) {
      this.onWarning('no cgroup v2 hierarchy found: --include/--exclude are applied in user space only (every sample is still unwound)');
      return;
    }
    const blind = this.unifiedHidesContainers();
    if (blind !== undefined) {
      this.onWarning(`containers share their unified cgroup here (${blind}: a hybrid host with the cgroupfs driver): --include/--exclude are applied in user space only`);
      return;
    }
    this.kernelFilter = new KernelCgroupFilter(mapInfo);
    this.refreshKernelFilter();
    this.kernelFilter.setMode(this.selection.include.length > 0 ? 'allow' : 'deny');
    this.refreshTimer = setInterval(() => this.refreshKernelFilter(), this.cgroupRefreshMs);
    this.refreshTimer.unref();
  }

  /** Walks the cgroup tree and writes the ids the selection picks (allow mode) or drops (deny mode). */
  private refreshKernelFilter(): void {
    if (!this.kernelFilter || !this.hierarchy || !this.selection) return;
    const allow = this.selection.include.length > 0;
    const ids = new Set<CgroupId>();
    for (const cgroup of listCgroups(this.hierarchy.path)) {
      const verdict = this.selection.keepsCgroup(attributionLabels(identifyPath(cgroup.path), this.pods));
      if (allow ? verdict !== 'no' : verdict === 'no') ids.add(cgroup.id);
    }
    const result = this.kernelFilter.sync(ids);
    this.counters.kernelFilterOverflow += result.overflow;
    this.kernelFilterIds = ids;
  }

  /**
   * A process whose v1 cgroups name a container while its unified one does
   * not: the kernel cannot tell containers apart by cgroup id here.
   * Returns that unified path, or undefined when the host is fine.
   */
  private unifiedHidesContainers(): string | undefined {
    let pids: string[];
    try {
      pids = readdirSync(this.procRoot).filter((name) => /^\d+$/.test(name));
    } catch {
      return undefined;
    }
    for (const pid of pids) {
      let identity: CgroupIdentity;
      try {
        identity = identifyProcess(readFileSync(`${this.procRoot}/${pid}/cgroup`, 'utf8'));
      } catch {
        continue;
      }
      if (identity.containerId !== undefined && identity.unifiedPath !== undefined && identifyPath(identity.unifiedPath).containerId === undefined) {
        return identity.unifiedPath;
      }
    }
    return undefined;
  }
}
