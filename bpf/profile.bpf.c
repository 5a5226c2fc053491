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

// Two generations of counts. The program counts into the active one while
// user space drains the other, so a drain never loses samples taken during
// it. Sizes are set by user space before load.
//
// Stacks live in one map keyed by a 64-bit hash of their content, not in a
// BPF_MAP_TYPE_STACK_TRACE map: that one buckets by hash and drops a stack
// whose bucket is taken, so k distinct stacks in n buckets lose about k*k/2n
// of them (measured: 3.7% of samples on a busy 2-CPU host). The stacks do not
// flip with the counts: a stack still in use is stored once, not once per
// generation (its 1 KiB copy was ~12% of a table-walked sample's time). The
// map is an LRU hash, so it never fills up: an insert evicts the stack used
// least recently. User space reads a stack once and keeps it; a count whose
// stack was evicted before user space read it is counted there (stackEvicted).
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u64);
	__type(value, struct fp_stack);
	__uint(max_entries, 32768);
} stacks SEC(".maps");

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
// The table walk's registers and progress. It lives in the per-CPU scratch
// map, not on the stack: the verifier then knows nothing of its values, so it
// checks a bpf_loop step once instead of once per depth it could track.
struct unwind_walk {
	__u64 pc;
	__u64 sp;
	__u64 fp;
	__u32 tgid;
	__u32 depth;
	__u32 outcome; // an enum fp_stat once the walk has ended, else 0
	__u32 after_signal; // pc is an interrupted instruction, not a return address
	__u32 table_pending; // a frame used the frame-pointer rule because its file's table was not built yet
	__u32 found_rule; // this frame's rule id (| FP_RULE_CACHE_PENDING), kept here so the verifier merges the ways to it
	__u32 last_mapping; // the mapping the last searched frame was in (FP_MAX_PROCESS_MAPPINGS: none)
	__u32 window_valid; // window holds FP_STACK_WINDOW bytes of the user stack from window_base
	__u64 window_base;
	__u32 search_lo; // a binary search's bounds and result (see find_mapping)
	__u32 search_hi;
	__u32 search_rule;
	__u32 reserved;
	struct fp_unwind_rule rule; // this frame's rule (all zero: the frame-pointer rule)
};

// Stack bytes read per helper call by the table walker. A frame's reads
// (saved rbp, return address) are a helper call each otherwise, and each
// call pays the user-access barriers; a caller's frame is usually within a
// few hundred bytes above its callee's, so one read serves several frames.
#define FP_STACK_WINDOW 512

struct sample_scratch {
	struct fp_stack kernel;
	struct fp_stack user;
	struct unwind_walk walk;
	__u8 window[FP_STACK_WINDOW];
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

// ---- Unwind tables (--unwind dwarf), written by src/unwind/table-manager.ts.
// Sizes are set by user space before load; with tables off they stay at 1.

// Every loaded file's rows, each file in one contiguous range. An array map
// rounds each value up to 8 bytes, so a row locks 8 (user space sizes the
// map by that). Two rows per element would halve it, but picking the half
// made the verifier track every search step precisely (3x its work).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct fp_unwind_row);
	__uint(max_entries, 1);
	// User space writes tables straight into the map's memory (one kernel
	// update per row cost a cold start ~50 ms for ~450k rows).
	__uint(map_flags, BPF_F_MMAPABLE);
} unwind_rows SEC(".maps");

// Distinct rules of all files (a whole host has a few thousand).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct fp_unwind_rule);
	__uint(max_entries, 1);
} unwind_rules SEC(".maps");

// (file, 64 KiB page) -> that page's rows.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct fp_unwind_page_key);
	__type(value, struct fp_unwind_page);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} unwind_pages SEC(".maps");

// tgid -> its executable mappings. Not preallocated: a value is 8 KiB and
// most hosts run far fewer processes than the map may hold.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct fp_process_mappings);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} process_mappings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct fp_rule_cache_slot);
	__uint(max_entries, FP_RULE_CACHE_SLOTS);
} rule_cache SEC(".maps");

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

// ---- The table-driven user-stack walker.

// Callers are mostly in the same file as their callee (a program's own
// functions, libc calling libc): the last frame's mapping is tried first,
// which spares the binary search its ~log2(count) cold cache lines.
static __always_inline bool find_mapping(const struct fp_process_mappings *proc, __u64 pc, struct unwind_walk *walk)
{
	__u32 count = proc->count;
	if (count > FP_MAX_PROCESS_MAPPINGS)
		count = FP_MAX_PROCESS_MAPPINGS;
	__u32 hint = walk->last_mapping;
	if (hint < count && hint < FP_MAX_PROCESS_MAPPINGS) {
		const struct fp_exec_mapping *m = &proc->mappings[hint];
		if (pc >= m->start && pc < m->end)
			return true;
	}
	// The bounds live in the map value, not in registers (and are read back
	// with volatile loads, so the compiler keeps them there): the verifier
	// then knows nothing of them, and the ways through a step join into one
	// state instead of each being followed through the remaining steps.
	walk->search_lo = 0;
	walk->search_hi = count;
	for (int i = 0; i < FP_MAPPING_SEARCH_STEPS; i++) {
		__u32 lo = *(volatile __u32 *)&walk->search_lo;
		__u32 hi = *(volatile __u32 *)&walk->search_hi;
		if (lo >= hi)
			break;
		__u32 mid = (lo + hi) / 2;
		const struct fp_exec_mapping *m = &proc->mappings[mid & (FP_MAX_PROCESS_MAPPINGS - 1)];
		if (pc < m->start) {
			walk->search_hi = mid;
		} else if (pc >= m->end) {
			walk->search_lo = mid + 1;
		} else {
			walk->last_mapping = mid;
			return true;
		}
	}
	return false;
}

// The rule in force at an ELF address of a file: the last row at or below it
// in its page. 0 (no information) when the page or the row is missing.
static __always_inline __u32 find_rule(__u32 file_id, __u64 address, struct unwind_walk *walk)
{
	struct fp_unwind_page_key key = { .file_id = file_id, .page = address >> FP_UNWIND_PAGE_BITS };
	const struct fp_unwind_page *page = bpf_map_lookup_elem(&unwind_pages, &key);
	if (!page)
		return 0;
	__u32 low = address & ((1 << FP_UNWIND_PAGE_BITS) - 1);
	__u32 bucket = (low >> FP_UNWIND_BUCKET_BITS) & (FP_UNWIND_BUCKETS - 1);
	// The row in force at `low` is between the one in force at the bucket's
	// start and the one in force at the next bucket's start.
	__u32 lo = page->first_row + page->bucket_row[bucket];
	__u32 hi = page->first_row + (bucket + 1 < FP_UNWIND_BUCKETS ? (__u32)page->bucket_row[(bucket + 1) & (FP_UNWIND_BUCKETS - 1)] + 1 : page->row_count);
	if (hi > page->first_row + page->row_count)
		hi = page->first_row + page->row_count;
	// In the map value for the verifier's sake, as in find_mapping.
	walk->search_lo = lo;
	walk->search_hi = hi;
	walk->search_rule = 0;
	for (int i = 0; i < FP_UNWIND_ROW_SEARCH_STEPS; i++) {
		lo = *(volatile __u32 *)&walk->search_lo;
		hi = *(volatile __u32 *)&walk->search_hi;
		if (lo >= hi)
			break;
		__u32 mid = lo + (hi - lo) / 2;
		const struct fp_unwind_row *row = bpf_map_lookup_elem(&unwind_rows, &mid);
		if (!row)
			return 0;
		if (row->address_low <= low) {
			walk->search_rule = row->rule;
			walk->search_lo = mid + 1;
		} else {
			walk->search_hi = mid;
		}
	}
	return *(volatile __u32 *)&walk->search_rule;
}

static __always_inline bool read_user_u64(__u64 *out, __u64 address)
{
	return bpf_probe_read_user(out, sizeof(*out), (const void *)address) == 0;
}

// Tells user space once that a process runs code outside the mappings it
// knows (dlopen, new JIT regions): it re-reads them and clears the flag.
static __always_inline void report_stale_mappings(struct fp_process_mappings *proc, __u32 tgid)
{
	if (proc->stale_reported)
		return;
	struct fp_process_event *event = bpf_ringbuf_reserve(&process_events, sizeof(*event), 0);
	if (!event) {
		count_stat(FP_STAT_PROCESS_EVENT_LOST);
		return;
	}
	proc->stale_reported = 1;
	event->tgid = tgid;
	event->kind = FP_PROCESS_MAPPINGS_STALE;
	event->address = 0;
	bpf_get_current_comm(&event->comm, sizeof(event->comm));
	bpf_ringbuf_submit(event, 0);
}

// Asks user space for the table of a mapping's file, the first time a walk
// meets it (tables are built for the files walks reach). Marked as building
// in the process's entry, so this process asks once; an event lost to a full
// ring buffer is counted and asked again by the next walk that misses the
// rule cache there.
static __always_inline void request_table(struct fp_exec_mapping *mapping, __u32 tgid)
{
	struct fp_process_event *event = bpf_ringbuf_reserve(&process_events, sizeof(*event), 0);
	if (!event) {
		count_stat(FP_STAT_PROCESS_EVENT_LOST);
		return;
	}
	mapping->table_pending = FP_TABLE_BUILDING;
	event->tgid = tgid;
	event->kind = FP_PROCESS_TABLE_WANTED;
	event->address = mapping->start;
	bpf_get_current_comm(&event->comm, sizeof(event->comm));
	bpf_ringbuf_submit(event, 0);
}

static __always_inline long end_walk(struct unwind_walk *walk, __u32 outcome)
{
	walk->outcome = outcome;
	return 1;
}

// What every step of a walk needs, found once per sample: the verifier keeps
// the pointers' types through the caller's stack, so a frame costs no map
// lookups for them (two hash/array lookups per frame before).
struct walk_context {
	struct sample_scratch *scratch;
	struct fp_process_mappings *proc;
};

// Reads the two words at `address` of the user stack (a saved rbp and the
// return address above it, in every frame that keeps rbp), from the window
// when it holds them, else by reading a new window there. A window that would
// cross the stack's end fails as a whole: then only the two words are read.
static __always_inline bool read_stack_pair(struct sample_scratch *scratch, __u64 *low, __u64 *high, __u64 address)
{
	struct unwind_walk *walk = &scratch->walk;
	__u64 offset = address - walk->window_base;
	if (!walk->window_valid || address < walk->window_base || offset > FP_STACK_WINDOW - 16) {
		if (bpf_probe_read_user(scratch->window, FP_STACK_WINDOW, (const void *)address) != 0) {
			walk->window_valid = 0;
			__u64 pair[2];
			if (bpf_probe_read_user(pair, sizeof(pair), (const void *)address) != 0)
				return false;
			*low = pair[0];
			*high = pair[1];
			return true;
		}
		walk->window_base = address;
		walk->window_valid = 1;
		offset = 0;
	}
	offset &= FP_STACK_WINDOW - 1;
	if (offset > FP_STACK_WINDOW - 16)
		return false; // never: checked above (this bounds the reads for the verifier)
	*low = *(__u64 *)&scratch->window[offset];
	*high = *(__u64 *)&scratch->window[offset + 8];
	return true;
}

// One word of the user stack, through the window (see read_stack_pair). The
// word above it may be past the stack's end: then it is read alone.
static __always_inline bool read_stack_u64(struct sample_scratch *scratch, __u64 *out, __u64 address)
{
	struct unwind_walk *walk = &scratch->walk;
	__u64 offset = address - walk->window_base;
	if (walk->window_valid && address >= walk->window_base && offset <= FP_STACK_WINDOW - 8) {
		offset &= FP_STACK_WINDOW - 1;
		if (offset > FP_STACK_WINDOW - 8)
			return false;
		*out = *(__u64 *)&scratch->window[offset];
		return true;
	}
	__u64 high;
	if (read_stack_pair(scratch, out, &high, address))
		return true;
	return read_user_u64(out, address);
}

// One frame: records walk->pc, then finds the caller's pc, sp and fp.
static __attribute__((unused)) long unwind_step(__u64 index, void *data)
{
	struct walk_context *context = data;
	struct sample_scratch *scratch = context->scratch;
	struct fp_process_mappings *proc = context->proc;
	struct unwind_walk *walk = &scratch->walk;

	__u64 pc = walk->pc;
	__u32 depth = walk->depth;
	// A return address may be one past a call at a function's very end:
	// look up the call instruction instead.
	__u64 lookup = pc - (depth > 0 && !walk->after_signal ? 1 : 0);
	walk->after_signal = 0;
	__u32 version = proc->version;
	__u32 slot_index = (__u32)((lookup ^ (lookup >> 13) ^ ((__u64)version * 0x9e3779b1ULL)) & (FP_RULE_CACHE_SLOTS - 1));
	struct fp_rule_cache_slot *slot = bpf_map_lookup_elem(&rule_cache, &slot_index);
	if (!slot) // never: the index is masked to the map's size
		return end_walk(walk, FP_STAT_UNWIND_BAD_READ);
	if (slot->version == version && slot->address == lookup && version != 0) {
		walk->found_rule = slot->rule;
		*(__u64 *)&walk->rule = *(__u64 *)&slot->value;
	} else {
		if (!find_mapping(proc, pc, walk)) {
			report_stale_mappings(proc, walk->tgid);
			// A caller's pc outside all code is a bad unwind, never a frame.
			if (depth > 0)
				return end_walk(walk, FP_STAT_UNWIND_BAD_RETURN_ADDRESS);
			walk->found_rule = 0;
			*(__u64 *)&walk->rule = 0;
		} else {
			// The mapping found, by index read back from the map value: one
			// pointer for the verifier whichever way the search found it.
			struct fp_exec_mapping *mapping = &proc->mappings[*(volatile __u32 *)&walk->last_mapping & (FP_MAX_PROCESS_MAPPINGS - 1)];
			__u32 found = 0;
			if (mapping->file_id) {
				found = find_rule(mapping->file_id, lookup - mapping->bias, walk);
			} else if (mapping->table_pending) {
				found = FP_RULE_CACHE_PENDING;
				if (mapping->table_pending == FP_TABLE_DEFERRED)
					request_table(mapping, walk->tgid);
			}
			__u32 found_id = found & ~FP_RULE_CACHE_PENDING;
			const struct fp_unwind_rule *found_value = found_id ? bpf_map_lookup_elem(&unwind_rules, &found_id) : NULL;
			__u64 value = found_value ? *(const __u64 *)found_value : 0;
			walk->found_rule = found;
			*(__u64 *)&walk->rule = value;
			slot->address = lookup;
			slot->version = version;
			slot->rule = found;
			*(__u64 *)&slot->value = value;
		}
	}
	// Read back from the map value: the verifier knows nothing of it, so the
	// paths above join into one state instead of each walking the rest.
	__u32 found_rule = walk->found_rule;
	if (depth >= FP_MAX_STACK_DEPTH)
		return end_walk(walk, FP_STAT_UNWIND_DEPTH_LIMIT);
	scratch->user.addresses[depth] = pc;
	walk->depth = depth + 1;
	if (found_rule & FP_RULE_CACHE_PENDING)
		walk->table_pending = 1;

	__u64 sp = walk->sp;
	__u64 fp = walk->fp;
	__u64 cfa;
	__u64 ra;
	// The rule, read back from the map value as one word (see found_rule);
	// its fields as struct fp_unwind_rule lays them out on a little-endian target.
	__u64 rule_word = *(volatile __u64 *)&walk->rule;
	__u8 cfa_kind = rule_word & 0xff;
	__u8 fp_kind = (rule_word >> 8) & 0xff;
	__s16 fp_offset = (__s16)(rule_word >> 16);
	__s32 cfa_offset = (__s32)(rule_word >> 32);
	if (cfa_kind == FP_CFA_INVALID) {
		if (cfa_offset != 0)
			return end_walk(walk, FP_STAT_UNWIND_UNSUPPORTED);
		// No table here (JIT code, a file without .eh_frame, a gap): the
		// frame-pointer rule, which ends where the chain does.
		if (fp == 0)
			return end_walk(walk, FP_STAT_UNWIND_NO_TABLE);
		cfa = fp + 16;
		if (!read_stack_pair(scratch, &fp, &ra, cfa - 16))
			return end_walk(walk, FP_STAT_UNWIND_BAD_READ);
	} else {
		switch (cfa_kind) {
		case FP_CFA_END:
			return end_walk(walk, FP_STAT_UNWIND_COMPLETE);
		case FP_CFA_SIGNAL:
			// sp points at the ucontext the kernel pushed: the interrupted
			// rip, rsp and rbp are in its uc_mcontext (offsets of struct
			// sigcontext_64 after 40 bytes of flags, link and stack).
			if (!read_user_u64(&walk->pc, sp + 168) || !read_user_u64(&walk->sp, sp + 160) || !read_user_u64(&walk->fp, sp + 120))
				return end_walk(walk, FP_STAT_UNWIND_BAD_READ);
			walk->after_signal = 1;
			return 0;
		case FP_CFA_SP:
			cfa = sp + cfa_offset;
			break;
		case FP_CFA_FP:
			cfa = fp + cfa_offset;
			break;
		case FP_CFA_PLT:
			cfa = sp + 8 + ((pc & 15) >= (__u64)cfa_offset ? 8 : 0);
			break;
		case FP_CFA_DEREF_SP:
		case FP_CFA_DEREF_FP:
			if (!read_user_u64(&cfa, (cfa_kind == FP_CFA_DEREF_SP ? sp : fp) + cfa_offset))
				return end_walk(walk, FP_STAT_UNWIND_BAD_READ);
			break;
		default:
			return end_walk(walk, FP_STAT_UNWIND_UNSUPPORTED);
		}
		if (fp_kind == FP_FP_AT_CFA && fp_offset == -16) {
			// rbp saved right below the return address: the usual frame, one read.
			if (!read_stack_pair(scratch, &fp, &ra, cfa - 16))
				return end_walk(walk, FP_STAT_UNWIND_BAD_READ);
		} else {
			if (!read_stack_u64(scratch, &ra, cfa - 8))
				return end_walk(walk, FP_STAT_UNWIND_BAD_READ);
			switch (fp_kind) {
			case FP_FP_AT_CFA:
				if (!read_stack_u64(scratch, &fp, cfa + fp_offset))
					return end_walk(walk, FP_STAT_UNWIND_BAD_READ);
				break;
			case FP_FP_AT_FP:
				if (!read_user_u64(&fp, fp + fp_offset))
					return end_walk(walk, FP_STAT_UNWIND_BAD_READ);
				break;
			case FP_FP_UNKNOWN:
				fp = 0;
				break;
			default:
				break;
			}
		}
	}
	if (ra == 0)
		return end_walk(walk, FP_STAT_UNWIND_COMPLETE);
	// The caller's frame is above this one: anything else is a corrupt walk.
	if (cfa <= sp)
		return end_walk(walk, FP_STAT_UNWIND_BAD_RETURN_ADDRESS);
	walk->pc = ra;
	walk->sp = cfa;
	walk->fp = fp;
	return 0;
}

// The user stack through the unwind tables, into `stack`; returns its hash
// (0: none).
static __always_inline __attribute__((unused)) __u64 walk_user_tables(struct bpf_perf_event_data *ctx, __u32 tgid, struct sample_scratch *scratch, bool user_mode)
{
	struct fp_stack *stack = &scratch->user;
	struct unwind_walk *walk = &scratch->walk;
	// Not loaded yet (it appeared since the last load): only the leaf is
	// known to be code, so only the leaf is kept. A frame-pointer walk through
	// code built without them would report data as callers.
	struct fp_process_mappings *proc = bpf_map_lookup_elem(&process_mappings, &tgid);
	walk->tgid = tgid;
	walk->depth = 0;
	walk->outcome = 0;
	walk->after_signal = 0;
	walk->table_pending = 0;
	walk->last_mapping = FP_MAX_PROCESS_MAPPINGS;
	walk->window_valid = 0;
	if (user_mode) {
		walk->pc = ctx->regs.ip;
		walk->sp = ctx->regs.sp;
		walk->fp = ctx->regs.bp;
	} else {
		// In the kernel: the user registers saved at kernel entry.
		struct task_struct *task = bpf_get_current_task_btf();
		if (BPF_CORE_READ(task, flags) & 0x00200000 /* PF_KTHREAD */)
			return 0;
		struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
		walk->pc = BPF_CORE_READ(regs, ip);
		walk->sp = BPF_CORE_READ(regs, sp);
		walk->fp = BPF_CORE_READ(regs, bp);
	}
	if (walk->pc == 0)
		return 0;
	if (!proc) {
		count_stat(FP_STAT_UNWIND_NOT_LOADED);
		stack->addresses[0] = walk->pc;
		stack->addresses[1] = 0;
		return hash_stack(stack, 1);
	}
	struct walk_context context = { .scratch = scratch, .proc = proc };
	bpf_loop(FP_MAX_STACK_DEPTH + 1, unwind_step, &context, 0);
	count_stat(walk->outcome ? walk->outcome : FP_STAT_UNWIND_DEPTH_LIMIT);
	if (walk->table_pending)
		count_stat(FP_STAT_UNWIND_TABLE_PENDING);
	__u32 depth = walk->depth;
	// bpf_get_stack zeroes the tail; do the same so no older frames show.
	if (depth < FP_MAX_STACK_DEPTH)
		stack->addresses[depth] = 0;
	if (depth == 0)
		return 0;
	return hash_stack(stack, depth);
}

// Makes sure the stack with this hash is stored; returns the hash, or 0 when
// it could not be (counted: the sample is kept without that stack; an LRU map
// fails only when it finds no element to evict).
static __always_inline __u64 store_stack(__u64 hash, const struct fp_stack *stack)
{
	if (hash == 0)
		return 0;
	// Stored already (by another key, or in an earlier generation): a lookup
	// spares the bucket lock and the 1 KiB copy of an insert, and marks the
	// stack used so the LRU keeps it.
	if (bpf_map_lookup_elem(&stacks, &hash))
		return hash;
	long err = bpf_map_update_elem(&stacks, &hash, stack, BPF_NOEXIST);
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
	event->kind = FP_PROCESS_NEW;
	event->address = 0;
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

	void *counts = cfg->generation & 1 ? (void *)&counts_1 : (void *)&counts_0;
	struct sample_scratch *scratch = bpf_map_lookup_elem(&stack_scratch, &zero);
	if (!scratch)
		return 0;

	bool user_mode = interrupted_user_mode(ctx);
	if (!user_mode)
		key.kernel_stack_hash = walk_stack(ctx, &scratch->kernel, 0, FP_STAT_KERNEL_STACK_ERROR);
#ifdef FP_UNWIND_TABLES
	// profile-unwind.bpf.o (--unwind dwarf): the table walker. It is built
	// into its own object so that frame-pointer runs do not pay for its
	// verification (~4x the rest of the program's).
	if (cfg->unwind_tables)
		key.user_stack_hash = walk_user_tables(ctx, tgid, scratch, user_mode);
	else
#endif
		key.user_stack_hash = walk_stack(ctx, &scratch->user, BPF_F_USER_STACK, FP_STAT_USER_STACK_ERROR);

	// Most samples repeat a key already counted in this generation, whose
	// stacks were stored (or looked up) when it was first counted: then the
	// stack map need not be touched at all.
	__u64 *count = bpf_map_lookup_elem(counts, &key);
	if (count) {
		__sync_fetch_and_add(count, 1);
	} else {
		key.kernel_stack_hash = store_stack(key.kernel_stack_hash, &scratch->kernel);
		key.user_stack_hash = store_stack(key.user_stack_hash, &scratch->user);
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
	// Its old mappings describe the old program: walk with frame pointers until user space loads the new ones.
	bpf_map_delete_elem(&process_mappings, &tgid);
	__sync_fetch_and_add(&exec_count, 1);
	return 0;
}
