// SPDX-License-Identifier: (Apache-2.0 OR GPL-2.0)
// Benchmark reference, not shipped: on each cpu-clock tick it does only what
// every in-kernel-walking profiler must (skip idle, walk the kernel stack and
// the frame-pointer user stack with bpf_get_stack) and nothing else. Its run
// time per sample is the kernel's share of the cost; fleetprof's own logic is
// the difference between the two programs, measured in the same run.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "profile.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct fp_stack);
	__uint(max_entries, 1);
} walk_scratch SEC(".maps");

SEC("perf_event")
int walk_only(struct bpf_perf_event_data *ctx)
{
	__u32 zero = 0;
	if ((__u32)bpf_get_current_pid_tgid() == 0)
		return 0;
	struct fp_stack *scratch = bpf_map_lookup_elem(&walk_scratch, &zero);
	if (!scratch)
		return 0;
	bpf_get_stack(ctx, scratch->addresses, sizeof(scratch->addresses), 0);
	bpf_get_stack(ctx, scratch->addresses, sizeof(scratch->addresses), BPF_F_USER_STACK);
	return 0;
}
