/* SPDX-License-Identifier: MIT OR GPL-2.0-only */
/*
 * The sampler: a perf_event program run on every CPU at the sampling rate. It records who
 * was running (tgid, tid, comm), where (cpu) and when (ktime), and the raw kernel and user
 * stacks, into one ring-buffer record (struct pyspy_sample, bpf/pyspy.h). Nothing is resolved
 * here. Loaded and attached by src/bpf/sampler.rs.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "pyspy.h"

/* Dual-licensed: bpf_get_stack is a GPL-only helper. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Settings, written by the loader between open and load (then read-only and folded into the
 * program by the verifier). */
const volatile __u32 target_tgid = 0;    /* only this process; 0 = every process */
const volatile bool skip_idle = true;    /* drop samples of the idle task (pid 0) */
const volatile bool kernel_stacks = true; /* record kernel stacks */

/* Samples to user space. max_entries (bytes, a power-of-two multiple of the page size) is
 * set by the loader before load; this is only the default. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 * 1024 * 1024);
} samples SEC(".maps");

/* Error counters, indexed by enum pyspy_error; per CPU, so increments need no atomics. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ERR_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} errors SEC(".maps");

/* Never read: they put struct pyspy_sample and the enums into the skeleton's generated types
 * (libbpf-cargo generates Rust types for what global variables reach). */
struct pyspy_sample _sample_type = {};
enum pyspy_error _error_type = 0;
enum pyspy_sample_flag _flag_type = 0;

static __always_inline void count_error(enum pyspy_error err)
{
	__u32 key = err;
	__u64 *count = bpf_map_lookup_elem(&errors, &key);

	if (count)
		*count += 1;
}

SEC("perf_event")
int on_sample(struct bpf_perf_event_data *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	__u32 tid = (__u32)pid_tgid;
	struct pyspy_sample *s;
	long len;

	if (tid == 0 && skip_idle)
		return 0;
	if (target_tgid != 0 && tgid != target_tgid)
		return 0;

	s = bpf_ringbuf_reserve(&samples, sizeof(*s), 0);
	if (!s) {
		count_error(ERR_RINGBUF_FULL);
		return 0;
	}

	s->tgid = tgid;
	s->tid = tid;
	s->cpu = bpf_get_smp_processor_id();
	s->flags = 0;
	s->ktime_ns = bpf_ktime_get_ns();
	s->kernel_len = 0;
	s->user_len = 0;

	if (bpf_get_current_comm(s->comm, sizeof(s->comm)) != 0) {
		s->comm[0] = 0;
		s->flags |= SAMPLE_COMM_FAILED;
		count_error(ERR_COMM_FAILED);
	}

	if (kernel_stacks) {
		len = bpf_get_stack(ctx, s->kernel, sizeof(s->kernel), 0);
		if (len < 0) {
			s->flags |= SAMPLE_KSTACK_FAILED;
			count_error(ERR_KSTACK_FAILED);
		} else {
			s->kernel_len = len / sizeof(s->kernel[0]);
			if (s->kernel_len >= MAX_STACK_DEPTH)
				s->flags |= SAMPLE_KSTACK_FULL;
		}
	} else {
		s->flags |= SAMPLE_KSTACK_OFF;
	}

	len = bpf_get_stack(ctx, s->user, sizeof(s->user), BPF_F_USER_STACK);
	if (len < 0) {
		s->flags |= SAMPLE_USTACK_FAILED;
		count_error(ERR_USTACK_FAILED);
	} else {
		s->user_len = len / sizeof(s->user[0]);
		if (s->user_len >= MAX_STACK_DEPTH)
			s->flags |= SAMPLE_USTACK_FULL;
	}

	bpf_ringbuf_submit(s, 0);
	return 0;
}
