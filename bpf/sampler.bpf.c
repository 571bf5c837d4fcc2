/* SPDX-License-Identifier: MIT OR GPL-2.0-only */
/*
 * The sampler: a perf_event program run on every CPU at the sampling rate. It records who
 * was running (tgid, tid, comm), where (cpu) and when (ktime), and the raw kernel and user
 * stacks, into one ring-buffer record (struct pyspy_sample, bpf/pyspy.h). With
 * user_stack_pages set (--native) a user thread's record also carries its user registers and
 * a copy of the top of its stack (struct pyspy_native_sample), which user space unwinds with
 * .eh_frame. Nothing is resolved here. Loaded and attached by src/bpf/sampler.rs.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "pyspy.h"

/* Dual-licensed: bpf_get_stack is a GPL-only helper. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Settings, written by the loader between open and load (then read-only and folded into the
 * program by the verifier). */
const volatile __u32 target_tgid = 0;    /* only this process; 0 = every process */
const volatile bool skip_idle = true;    /* drop samples of the idle task (pid 0) */
const volatile bool kernel_stacks = true; /* record kernel stacks */
/* Pages of user stack copied per sample of a user thread (struct pyspy_native_sample): 0 = no
 * copy, else 2..MAX_USER_STACK_PAGES (the first page is copied from sp up only). */
const volatile __u32 user_stack_pages = 0;

/* task_struct.flags: a kernel thread (no user stack). */
#define PF_KTHREAD 0x00200000

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
struct pyspy_native_sample *_native_sample_type = 0;

static __always_inline void count_error(enum pyspy_error err)
{
	__u32 key = err;
	__u64 *count = bpf_map_lookup_elem(&errors, &key);

	if (count)
		*count += 1;
}

/* Everything but the stack copy: who, where, when, comm and the kernel and user call chains. */
static __always_inline void fill_sample(struct bpf_perf_event_data *ctx, struct pyspy_sample *s,
					__u32 tgid, __u32 tid)
{
	long len;

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
}

/* Waking the reader for every record costs it a context switch per sample, times the number
 * of CPUs. It polls every few milliseconds anyway, so records are submitted without a
 * wakeup unless they pile up. */
#define WAKEUP_BYTES (256 * 1024)
static __always_inline __u64 wakeup_flag(void)
{
	return bpf_ringbuf_query(&samples, BPF_RB_AVAIL_DATA) >= WAKEUP_BYTES ? BPF_RB_FORCE_WAKEUP
									     : BPF_RB_NO_WAKEUP;
}

/* A user thread's sample with its user registers and the top of its stack. The registers are
 * the sample's when it interrupted user mode, else (in a system call or fault) the ones saved
 * on entry to the kernel. The stack is copied page by page into the record (stack[] mirrors
 * the pages from the one holding sp): the copy ends at the first page that cannot be read. */
static __always_inline void sample_native(struct bpf_perf_event_data *ctx, struct task_struct *task,
					  __u32 tgid, __u32 tid)
{
	struct pyspy_native_sample *n;
	struct pt_regs *regs;
	__u64 page, first;
	__u32 i;

	n = bpf_ringbuf_reserve(&samples,
				offsetof(struct pyspy_native_sample, stack) +
					user_stack_pages * PYSPY_PAGE_SIZE,
				0);
	if (!n) {
		count_error(ERR_RINGBUF_FULL);
		return;
	}
	fill_sample(ctx, &n->sample, tgid, tid);
	n->sample.flags |= SAMPLE_NATIVE;
	n->stack_len = 0;
	n->stack_pages = user_stack_pages;

	if ((ctx->regs.csx & 3) == 3) {
		n->ip = ctx->regs.ip;
		n->sp = ctx->regs.sp;
		n->bp = ctx->regs.bp;
	} else {
		regs = (struct pt_regs *)bpf_task_pt_regs(task);
		n->ip = BPF_CORE_READ(regs, ip);
		n->sp = BPF_CORE_READ(regs, sp);
		n->bp = BPF_CORE_READ(regs, bp);
	}
	if (n->sp == 0) {
		n->sample.flags |= SAMPLE_REGS_FAILED;
		count_error(ERR_REGS_FAILED);
		bpf_ringbuf_submit(n, wakeup_flag());
		return;
	}

	page = n->sp & ~(__u64)(PYSPY_PAGE_SIZE - 1);
	first = n->sp & (PYSPY_PAGE_SIZE - 1);
	if (bpf_probe_read_user(&n->stack[first], PYSPY_PAGE_SIZE - first, (void *)n->sp) != 0) {
		n->sample.flags |= SAMPLE_USTACK_COPY_FAILED;
		count_error(ERR_USTACK_COPY_FAILED);
		bpf_ringbuf_submit(n, wakeup_flag());
		return;
	}
	n->stack_len = PYSPY_PAGE_SIZE;
	for (i = 1; i < MAX_USER_STACK_PAGES; i++) {
		if (i >= user_stack_pages)
			break;
		if (bpf_probe_read_user(&n->stack[i * PYSPY_PAGE_SIZE], PYSPY_PAGE_SIZE,
					(void *)(page + i * PYSPY_PAGE_SIZE)) != 0)
			break;
		n->stack_len = (i + 1) * PYSPY_PAGE_SIZE;
	}
	bpf_ringbuf_submit(n, wakeup_flag());
}

SEC("perf_event")
int on_sample(struct bpf_perf_event_data *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	__u32 tid = (__u32)pid_tgid;
	struct task_struct *task;
	struct pyspy_sample *s;

	if (tid == 0 && skip_idle)
		return 0;
	if (target_tgid != 0 && tgid != target_tgid)
		return 0;

	if (user_stack_pages != 0) {
		task = bpf_get_current_task_btf();
		if (!(task->flags & PF_KTHREAD)) {
			sample_native(ctx, task, tgid, tid);
			return 0;
		}
	}

	s = bpf_ringbuf_reserve(&samples, sizeof(*s), 0);
	if (!s) {
		count_error(ERR_RINGBUF_FULL);
		return 0;
	}
	fill_sample(ctx, s, tgid, tid);
	bpf_ringbuf_submit(s, wakeup_flag());
	return 0;
}
