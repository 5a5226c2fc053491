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
	__u32 unwind_tables; // 1: walk user stacks with the .eh_frame tables (--unwind dwarf)
	__u32 reserved;
};

enum fp_process_event_kind {
	FP_PROCESS_NEW = 0, // first sample of the process (or first after an exec)
	FP_PROCESS_MAPPINGS_STALE = 1, // a pc outside its known code: it mapped more (dlopen, JIT)
	FP_PROCESS_TABLE_WANTED = 2, // a walk met a mapping whose table is deferred: build it (address: the mapping's start)
};

struct fp_process_event {
	__u32 tgid;
	char comm[FP_COMM_LEN];
	__u32 kind; // enum fp_process_event_kind
	__u64 address; // FP_PROCESS_TABLE_WANTED: the start of the mapping met; else 0
};

// ---- Unwind tables (src/unwind/). A file's rows live in one shared array,
// found through a (file, 64 KiB page) index; rules are deduplicated across
// all files. Written by src/unwind/table-manager.ts.
#define FP_UNWIND_PAGE_BITS 16
// A page is cut into buckets of 2 KiB, each knowing the first row it needs, so
// a row search covers one bucket's rows (a few cache lines) instead of the
// whole page's (node: ~700 rows over ~90 cache lines, 10 steps).
#define FP_UNWIND_BUCKET_BITS 11
#define FP_UNWIND_BUCKETS (1 << (FP_UNWIND_PAGE_BITS - FP_UNWIND_BUCKET_BITS))
#define FP_UNWIND_ROW_SEARCH_STEPS 12 // a bucket spans at most 2049 rows
#define FP_MAX_PROCESS_MAPPINGS 256 // executable mappings per process
#define FP_MAPPING_SEARCH_STEPS 9

// enum fp_cfa_kind and enum fp_fp_kind: src/unwind/rules.ts (CfaKind, FpKind).
enum fp_cfa_kind {
	FP_CFA_INVALID = 0,
	FP_CFA_SP = 1,
	FP_CFA_FP = 2,
	FP_CFA_PLT = 3,
	FP_CFA_DEREF_SP = 4,
	FP_CFA_DEREF_FP = 5,
	FP_CFA_SIGNAL = 6,
	FP_CFA_END = 7,
};

enum fp_fp_kind {
	FP_FP_UNCHANGED = 0,
	FP_FP_AT_CFA = 1,
	FP_FP_AT_FP = 2,
	FP_FP_UNKNOWN = 3,
};

struct fp_unwind_rule {
	__u8 cfa_kind;
	__u8 fp_kind;
	__s16 fp_offset;
	__s32 cfa_offset;
};

struct fp_unwind_row {
	__u16 address_low; // low 16 bits of the ELF address the row starts at
	__u16 rule; // index into unwind_rules
};

struct fp_unwind_page_key {
	__u32 file_id;
	__u32 page; // ELF address >> FP_UNWIND_PAGE_BITS
};

struct fp_unwind_page {
	__u32 first_row; // index into unwind_rows
	__u32 row_count;
	// Per bucket: the page's row (relative to first_row) in force at the
	// bucket's first byte (the last row at or below it; 0 if none).
	__u16 bucket_row[FP_UNWIND_BUCKETS];
};

// One executable mapping of a process. file_id 0: no table (JIT, vdso, a
// file without .eh_frame): the frame-pointer rule is used there.
struct fp_exec_mapping {
	__u64 start;
	__u64 end;
	__u64 bias; // runtime address - ELF address
	__u32 file_id;
	__u32 table_pending; // enum fp_table_pending: whether its file's table is still to come (frames use frame pointers meanwhile)
};

enum fp_table_pending {
	FP_TABLE_READY = 0, // built, or none to build (file_id says which)
	FP_TABLE_BUILDING = 1, // asked of the table worker
	// Not asked for yet: tables are built for the files walks reach, not for
	// every file a process maps. The first walk that meets it asks (one
	// FP_PROCESS_TABLE_WANTED event) and sets FP_TABLE_BUILDING in place.
	FP_TABLE_DEFERRED = 2,
};

struct fp_process_mappings {
	__u32 count; // sorted by start, non-overlapping
	__u32 stale_reported; // set once a stale-mappings event was sent
	// Different for every write of every process's entry (user space counts
	// them): a rule found for (version, address) stays right while it holds.
	__u32 version;
	__u32 reserved;
	struct fp_exec_mapping mappings[FP_MAX_PROCESS_MAPPINGS];
};

// The per-CPU cache of rules found: a direct-mapped slot per (version,
// address), so the return addresses a busy program keeps passing skip the
// mapping search, the page lookup and the row search.
#define FP_RULE_CACHE_SLOTS 4096 // a power of two

struct fp_rule_cache_slot {
	__u64 address; // the pc looked up (a return address minus 1)
	__u32 version; // fp_process_mappings.version when found; 0: empty
	__u32 rule; // 0: no table (frame-pointer rule); | FP_RULE_CACHE_PENDING: its table is being built
	// The rule itself (all zero for rule 0): a hit needs no unwind_rules
	// lookup, one cache line fewer per frame.
	struct fp_unwind_rule value;
};
#define FP_RULE_CACHE_PENDING 0x80000000u

enum fp_stat {
	FP_STAT_SAMPLES = 0,
	FP_STAT_IDLE,
	FP_STAT_FILTERED,
	FP_STAT_STACK_MAP_FULL,
	FP_STAT_USER_STACK_ERROR,
	FP_STAT_KERNEL_STACK_ERROR,
	FP_STAT_COUNTS_MAP_FULL,
	FP_STAT_PROCESS_EVENT_LOST,
	// How each table-walked user stack ended (--unwind dwarf).
	FP_STAT_UNWIND_COMPLETE, // reached the thread's root (undefined return address)
	FP_STAT_UNWIND_NO_TABLE, // stopped in a frame without a table (frame-pointer fallback ran out)
	FP_STAT_UNWIND_BAD_READ, // a read of the user stack failed
	FP_STAT_UNWIND_BAD_RETURN_ADDRESS, // a return address outside every executable mapping (not kept as a frame)
	FP_STAT_UNWIND_DEPTH_LIMIT, // FP_MAX_STACK_DEPTH frames and not done
	FP_STAT_UNWIND_UNSUPPORTED, // a row whose rule the walker cannot follow
	FP_STAT_UNWIND_NOT_LOADED, // process not loaded yet: only the leaf was kept
	// Not an outcome: walks that used the frame-pointer rule in a file whose table was still being built.
	FP_STAT_UNWIND_TABLE_PENDING,
	FP_STAT_COUNT,
};

#endif
