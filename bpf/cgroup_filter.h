// SPDX-License-Identifier: (Apache-2.0 OR GPL-2.0)
// --include / --exclude, decided in the kernel: user space turns label
// selectors into the set of cgroup ids (unified hierarchy) they pick, and a
// sample of any other cgroup is dropped before anything else is done for it.
// An excluded workload costs one array read and one hash lookup per tick, no
// unwinding. Self-contained on purpose: profile.bpf.c calls
// cgroup_filtered() once and counts the result; src/attribution/kernel-filter.ts
// writes these maps (keep the layouts in step).
#ifndef FLEETPROF_CGROUP_FILTER_H
#define FLEETPROF_CGROUP_FILTER_H

enum fp_cgroup_filter_mode {
	FP_CGROUP_FILTER_OFF = 0,
	FP_CGROUP_FILTER_ALLOW = 1, // only cgroups in the map are sampled
	FP_CGROUP_FILTER_DENY = 2,  // cgroups in the map are not sampled
};

struct fp_cgroup_filter_config {
	__u32 mode;
};

// One entry: the mode. An array read is inlined by the verifier, so an agent
// without a filter pays a few instructions.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct fp_cgroup_filter_config);
	__uint(max_entries, 1);
} cgroup_filter_config SEC(".maps");

// cgroup id -> 1 (the mode's set) or 0 (was in it; user space cannot delete
// through the addon, and cgroup ids are never reused, so a 0 is as good as
// absent). Sized by user space before load.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, __u8);
	__uint(max_entries, 16384);
} cgroup_filter SEC(".maps");

// Per-CPU count of samples this filter dropped.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} cgroup_filter_dropped SEC(".maps");

// Whether the current task's cgroup is filtered out (and counts it if so).
static __always_inline bool cgroup_filtered(void)
{
	__u32 zero = 0;
	struct fp_cgroup_filter_config *config = bpf_map_lookup_elem(&cgroup_filter_config, &zero);
	if (!config || config->mode == FP_CGROUP_FILTER_OFF)
		return false;
	__u64 cgroup_id = bpf_get_current_cgroup_id();
	__u8 *listed = bpf_map_lookup_elem(&cgroup_filter, &cgroup_id);
	bool in_set = listed && *listed;
	bool filtered = config->mode == FP_CGROUP_FILTER_ALLOW ? !in_set : in_set;
	if (filtered) {
		__u64 *dropped = bpf_map_lookup_elem(&cgroup_filter_dropped, &zero);
		if (dropped)
			*dropped += 1;
	}
	return filtered;
}

#endif
