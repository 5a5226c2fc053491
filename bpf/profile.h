// SPDX-License-Identifier: (Apache-2.0 OR GPL-2.0)
// Layouts shared by the BPF program and src/sampler/bpf-layout.ts, which
// decodes them. Change both together.
#ifndef FLEETPROF_PROFILE_H
#define FLEETPROF_PROFILE_H

#define FP_MAX_STACK_DEPTH 127
#define FP_COMM_LEN 16
#define FP_MAX_TREE_DEPTH 16

// errno values, spelled out because vmlinux.h carries no macros.
#define EFAULT_FP 14
#define EEXIST_FP 17

// Stacks are keyed by a 64-bit hash of their addresses (0: no stack).
struct fp_sample_key {
	__u32 tgid;
	__u32 pid;
	__u64 user_stack_hash;
	__u64 kernel_stack_hash;
	char comm[FP_COMM_LEN];
};

// Addresses leaf first; bpf_get_stack zeroes the unused tail.
struct fp_stack {
	__u64 addresses[FP_MAX_STACK_DEPTH];
};

struct fp_config {
	__u32 generation;
	__u32 filter_tgid; // 0: the whole system
};

struct fp_process_event {
	__u32 tgid;
	char comm[FP_COMM_LEN];
};

enum fp_stat {
	FP_STAT_SAMPLES = 0,
	FP_STAT_IDLE,
	FP_STAT_FILTERED,
	FP_STAT_STACK_MAP_FULL,
	FP_STAT_USER_STACK_ERROR,
	FP_STAT_KERNEL_STACK_ERROR,
	FP_STAT_COUNTS_MAP_FULL,
	FP_STAT_PROCESS_EVENT_LOST,
	FP_STAT_COUNT,
};

#endif
