// SPDX-License-Identifier: (Apache-2.0 OR GPL-2.0)
// fleetprof's sampler: runs on every cpu-clock tick of every CPU, records the
// kernel and user stacks of whatever was running and counts them in the kernel
// so that only unique (process, thread, stacks) keys and their counts cross to
// user space. Plain and small on purpose (after libbpf-tools' profile.bpf.c);
// all decoding and symbolization happens in TypeScript.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "profile.h"
#include "cgroup_filter.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// Two generations of (stacks, counts). The program writes into the active one
// while user space drains the other, so a drain never loses samples taken
// during it. Sizes are set by user space before load.
//
// Stacks live in a plain hash map keyed by a 64-bit hash of their content,
// not in a BPF_MAP_TYPE_STACK_TRACE map: that one buckets by hash and drops a
// stack whose bucket is taken, so k distinct stacks in n buckets lose about
// k*k/2n of them (measured: 3.7% of samples on a busy 2-CPU host). Here a
// stack is lost only when the map is full, and that is counted.
struct stack_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, struct fp_stack);
	__uint(max_entries, 16384);
};
struct stack_map stacks_0 SEC(".maps");
struct stack_map stacks_1 SEC(".maps");

struct count_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct fp_sample_key);
	__type(value, __u64);
	__uint(max_entries, 16384);
};
struct count_map counts_0 SEC(".maps");
struct count_map counts_1 SEC(".maps");

// One entry: the active generation and the process filter.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct fp_config);
	__uint(max_entries, 1);
} fp_config_map SEC(".maps");

// Per-CPU scratch space for the two stacks of a sample (too big for the
// 512-byte BPF stack): both are held until the count shows whether they are new.
struct sample_scratch {
	struct fp_stack kernel;
	struct fp_stack user;
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct sample_scratch);
	__uint(max_entries, 1);
} stack_scratch SEC(".maps");

// The process this CPU announced last, and the exec count then: most samples
// of a busy CPU are of the same process, and this spares them the LRU lookup.
struct last_announced {
	__u32 tgid;
	__u32 exec_count;
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct last_announced);
	__uint(max_entries, 1);
} last_announced SEC(".maps");

// Bumped by every exec: a CPU's last_announced entry is trusted only while
// no process has exec'd since (the exec'd one must be announced again).
__u32 exec_count = 0;

// Per-CPU counters (enum fp_stat) so counting a drop never contends.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, FP_STAT_COUNT);
} stats SEC(".maps");

// Processes already announced to user space. LRU so it never fills up; an
// evicted process is just announced again.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u32);
	__type(value, __u8);
	__uint(max_entries, 32768);
} known_tgids SEC(".maps");

// Processes that belong to the --pid tree (filled lazily by walking parents).
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u32);
	__type(value, __u8);
	__uint(max_entries, 8192);
} tree_tgids SEC(".maps");

// New-process announcements: user space snapshots /proc/PID/maps the moment a
// process is first sampled, so it can still symbolize it after it exits.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} process_events SEC(".maps");

static __always_inline void count_stat(__u32 index)
{
	__u64 *value = bpf_map_lookup_elem(&stats, &index);
	if (value)
		*value += 1;
}

// FNV-1a-style mixing over the addresses; 0 is kept for "no stack".
static __always_inline __u64 hash_stack(const struct fp_stack *stack, __u32 depth)
{
	__u64 hash = 0xcbf29ce484222325ULL ^ depth;
	for (__u32 i = 0; i < FP_MAX_STACK_DEPTH; i++) {
		if (i >= depth)
			break;
		hash ^= stack->addresses[i];
		hash *= 0x100000001b3ULL;
		hash ^= hash >> 29;
	}
	return hash ? hash : 1;
}

// Walks one stack into `stack` and returns its hash, or 0 when there is
// none: a user-mode tick has no kernel stack and a kernel thread no user
// stack (bpf_get_stack returns 0 or -EFAULT), which is not a loss. A failed
// read is, and is counted.
static __always_inline __u64 walk_stack(void *ctx, struct fp_stack *stack, __u64 flags, __u32 error_stat)
{
	long size = bpf_get_stack(ctx, stack->addresses, sizeof(stack->addresses), flags);
	if (size <= 0) {
		if (size < 0 && size != -EFAULT_FP)
			count_stat(error_stat);
		return 0;
	}
	return hash_stack(stack, size / sizeof(__u64));
}

// Makes sure the stack with this hash is stored; returns the hash, or 0 when
// the map is full (counted: the sample is kept without that stack).
static __always_inline __u64 store_stack(void *stacks, __u64 hash, const struct fp_stack *stack)
{
	if (hash == 0)
		return 0;
	// Another key may hold this stack already: a lookup spares the bucket
	// lock and the 1 KiB copy of an insert.
	if (bpf_map_lookup_elem(stacks, &hash))
		return hash;
	long err = bpf_map_update_elem(stacks, &hash, stack, BPF_NOEXIST);
	if (err != 0 && err != -EEXIST_FP) {
		count_stat(FP_STAT_STACK_MAP_FULL);
		return 0;
	}
	return hash;
}

// Whether the tick interrupted user code: then there is no kernel stack, and
// asking for one would still cost a callchain setup and a 1 KiB zero-fill.
static __always_inline bool interrupted_user_mode(struct bpf_perf_event_data *ctx)
{
#if defined(__TARGET_ARCH_x86)
	// The privilege level of the interrupted code. The context allows only
	// whole-word reads of the registers, and newer kernels put a 16-bit cs in
	// a union with a 64-bit word: read the word.
	__u64 cs = *(volatile __u64 *)&ctx->regs.cs;
	return (cs & 3) == 3;
#else
	return false; // not known here: ask for both stacks
#endif
}

static __always_inline bool in_target_tree(__u32 tgid, __u32 target)
{
	if (tgid == target || bpf_map_lookup_elem(&tree_tgids, &tgid))
		return true;
	struct task_struct *task = bpf_get_current_task_btf();
	for (int depth = 0; depth < FP_MAX_TREE_DEPTH; depth++) {
		task = BPF_CORE_READ(task, real_parent);
		if (!task)
			return false;
		__u32 ancestor = BPF_CORE_READ(task, tgid);
		if (ancestor == target) {
			__u8 one = 1;
			bpf_map_update_elem(&tree_tgids, &tgid, &one, BPF_ANY);
			return true;
		}
		if (ancestor <= 1)
			return false;
	}
	return false;
}

static __always_inline bool announce_process(__u32 tgid, const char *comm)
{
	// Look up first: an LRU insert takes a node from the free list even when
	// the key exists.
	if (bpf_map_lookup_elem(&known_tgids, &tgid))
		return true;
	__u8 one = 1;
	if (bpf_map_update_elem(&known_tgids, &tgid, &one, BPF_NOEXIST) != 0)
		return true; // another CPU announced it meanwhile
	struct fp_process_event *event = bpf_ringbuf_reserve(&process_events, sizeof(*event), 0);
	if (!event) {
		count_stat(FP_STAT_PROCESS_EVENT_LOST);
		// Forget it so the next sample of this process tries again.
		bpf_map_delete_elem(&known_tgids, &tgid);
		return false;
	}
	event->tgid = tgid;
	__builtin_memcpy(event->comm, comm, FP_COMM_LEN);
	bpf_ringbuf_submit(event, 0);
	return true;
}

static __always_inline void announce_once(__u32 tgid, const char *comm)
{
	__u32 zero = 0;
	struct last_announced *last = bpf_map_lookup_elem(&last_announced, &zero);
	__u32 execs = exec_count;
	if (last && last->tgid == tgid && last->exec_count == execs)
		return;
	if (!announce_process(tgid, comm) || !last)
		return;
	last->tgid = tgid;
	last->exec_count = execs;
}

SEC("perf_event")
int sample_stack(struct bpf_perf_event_data *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	__u32 pid = (__u32)id;
	__u32 zero = 0;

	count_stat(FP_STAT_SAMPLES);
	if (pid == 0) { // the idle task: no CPU was used by anyone
		count_stat(FP_STAT_IDLE);
		return 0;
	}
	// --include/--exclude (cgroup_filter.h): first, so an excluded workload is not unwound.
	if (cgroup_filtered()) {
		count_stat(FP_STAT_FILTERED);
		return 0;
	}

	struct fp_config *cfg = bpf_map_lookup_elem(&fp_config_map, &zero);
	if (!cfg)
		return 0;
	if (cfg->filter_tgid != 0 && !in_target_tree(tgid, cfg->filter_tgid)) {
		count_stat(FP_STAT_FILTERED);
		return 0;
	}

	struct fp_sample_key key = {};
	key.tgid = tgid;
	key.pid = pid;
	bpf_get_current_comm(&key.comm, sizeof(key.comm));

	void *stacks = cfg->generation & 1 ? (void *)&stacks_1 : (void *)&stacks_0;
	void *counts = cfg->generation & 1 ? (void *)&counts_1 : (void *)&counts_0;
	struct sample_scratch *scratch = bpf_map_lookup_elem(&stack_scratch, &zero);
	if (!scratch)
		return 0;

	if (!interrupted_user_mode(ctx))
		key.kernel_stack_hash = walk_stack(ctx, &scratch->kernel, 0, FP_STAT_KERNEL_STACK_ERROR);
	key.user_stack_hash = walk_stack(ctx, &scratch->user, BPF_F_USER_STACK, FP_STAT_USER_STACK_ERROR);

	// Most samples repeat a key already counted in this generation, and a
	// counted key's stacks are stored (both maps flip together): then the
	// stack maps need not be touched at all.
	__u64 *count = bpf_map_lookup_elem(counts, &key);
	if (count) {
		__sync_fetch_and_add(count, 1);
	} else {
		key.kernel_stack_hash = store_stack(stacks, key.kernel_stack_hash, &scratch->kernel);
		key.user_stack_hash = store_stack(stacks, key.user_stack_hash, &scratch->user);
		__u64 one = 1;
		// BPF_NOEXIST: another CPU may have inserted the same key meanwhile.
		if (bpf_map_update_elem(counts, &key, &one, BPF_NOEXIST) != 0) {
			count = bpf_map_lookup_elem(counts, &key);
			if (count)
				__sync_fetch_and_add(count, 1);
			else
				count_stat(FP_STAT_COUNTS_MAP_FULL);
		}
	}

	if (tgid != 0)
		announce_once(tgid, key.comm);
	return 0;
}

// After an exec the address space is new: announce the process again at its
// next sample so user space takes a fresh snapshot of its mappings.
SEC("tp_btf/sched_process_exec")
int BPF_PROG(process_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 tgid = BPF_CORE_READ(task, tgid);
	// Forget first, then bump: a sample in between still sees the old count
	// and is simply announced at the next one.
	bpf_map_delete_elem(&known_tgids, &tgid);
	__sync_fetch_and_add(&exec_count, 1);
	return 0;
}
