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

#endif /* PYSPY_H */
