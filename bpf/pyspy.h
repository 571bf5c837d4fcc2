/* SPDX-License-Identifier: MIT */
/*
 * The ABI shared by the BPF programs and the Rust loader (src/bpf/). Rust never copies these
 * definitions: it sees them only through the types libbpf-cargo generates into the skeleton
 * from the object's BTF, so the layout is defined here and nowhere else.
 *
 * Include after vmlinux.h (for __u32 and friends). Keep this header free of functions.
 */
#ifndef PYSPY_H
#define PYSPY_H

/* Frames kept per stack. 127 is the kernel's default kernel.perf_event_max_stack, the most
 * bpf_get_stack returns unless that sysctl is raised. */
#define MAX_STACK_DEPTH 127

/* TASK_COMM_LEN in the kernel; comm is NUL-terminated within it. */
#define PYSPY_COMM_LEN 16

/* User-stack copy (--native): the copy mirrors whole pages of the thread's stack starting at
 * the page holding sp, at most this many (the first one only from sp up). Copied page by page:
 * a single large bpf_probe_read_user is all-or-nothing, and the main thread's stack often ends
 * a few KiB above sp. */
#define PYSPY_PAGE_SIZE 4096
#define MAX_USER_STACK_PAGES 16

/*
 * Named error counters: each indexes the per-CPU array map `errors`. User space sums the CPUs
 * and prints the non-zero ones by name; the names are generated from this enum's BTF at build
 * time (build.rs), so this enum is the one list. Append new counters before ERR_COUNT.
 */
enum pyspy_error {
	/* bpf_ringbuf_reserve failed: the ring buffer was full (user space too slow), the
	 * sample is lost. */
	ERR_RINGBUF_FULL = 0,
	/* bpf_get_current_comm failed; the record's comm is empty. */
	ERR_COMM_FAILED,
	/* bpf_get_stack for the kernel stack failed; the record has no kernel frames. */
	ERR_KSTACK_FAILED,
	/* bpf_get_stack(BPF_F_USER_STACK) failed; the record has no user frames. */
	ERR_USTACK_FAILED,
	/* copy_user_stack: the user registers of a user thread could not be read (no stack
	 * pointer); the record has no stack copy. */
	ERR_REGS_FAILED,
	/* copy_user_stack: not even the page holding the stack pointer could be read; the record
	 * has no stack copy. */
	ERR_USTACK_COPY_FAILED,
	ERR_COUNT,
};

/* Bits of sample.flags. A failure is a flag on the record (and a counter above); a full
 * stack buffer is data: the stack reached MAX_STACK_DEPTH and may be truncated. */
enum pyspy_sample_flag {
	SAMPLE_COMM_FAILED = 1 << 0,
	SAMPLE_KSTACK_FAILED = 1 << 1,
	SAMPLE_USTACK_FAILED = 1 << 2,
	/* Kernel stacks were switched off (kernel_stacks == false): kernel_len is 0 by choice. */
	SAMPLE_KSTACK_OFF = 1 << 3,
	SAMPLE_KSTACK_FULL = 1 << 4,
	SAMPLE_USTACK_FULL = 1 << 5,
	/* The record is a struct pyspy_native_sample: user registers and a stack copy follow. */
	SAMPLE_NATIVE = 1 << 6,
	SAMPLE_REGS_FAILED = 1 << 7,
	SAMPLE_USTACK_COPY_FAILED = 1 << 8,
};

/* One ring-buffer record: one perf event firing on one CPU. Stacks are copied in whole (no
 * stack-id map), leaf first, as instruction pointers; user space symbolizes them. */
struct pyspy_sample {
	__u32 tgid;     /* process id */
	__u32 tid;      /* thread id */
	__u32 cpu;
	__u32 flags;    /* enum pyspy_sample_flag bits */
	__u64 ktime_ns; /* bpf_ktime_get_ns: CLOCK_MONOTONIC */
	char comm[PYSPY_COMM_LEN];
	__u32 kernel_len; /* valid entries in kernel[] */
	__u32 user_len;   /* valid entries in user[] */
	__u64 kernel[MAX_STACK_DEPTH];
	__u64 user[MAX_STACK_DEPTH];
};

/* With copy_user_stack (--native), a record of a user thread is this: the sample, the thread's
 * user registers, and a copy of the top of its stack for unwinding in user space (.eh_frame).
 * stack[] mirrors the memory from the page holding sp (sp & ~(PYSPY_PAGE_SIZE - 1)) up: the
 * valid bytes are stack[sp % PYSPY_PAGE_SIZE .. stack_len]. The record is reserved with
 * user_stack_pages pages of stack[], not MAX_USER_STACK_PAGES. */
struct pyspy_native_sample {
	struct pyspy_sample sample;
	__u64 ip; /* user registers: instruction, stack and frame pointer */
	__u64 sp;
	__u64 bp;
	__u32 stack_len; /* end of the valid bytes of stack[]; 0: no copy */
	__u32 stack_pages; /* pages reserved for stack[] */
	__u8 stack[MAX_USER_STACK_PAGES * PYSPY_PAGE_SIZE];
};

#endif /* PYSPY_H */
