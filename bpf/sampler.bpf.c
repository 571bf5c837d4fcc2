/* SPDX-License-Identifier: MIT OR GPL-2.0-only */
/*
 * The sampler: a perf_event program run on every CPU at the sampling rate. It records who
 * was running (tgid, tid, comm), where (cpu) and when (ktime), and the raw kernel and user
 * stacks, into one ring-buffer record (struct pyspy_sample, bpf/pyspy.h). With
 * user_stack_pages set (--native) a user thread's record also carries its user registers and
 * a copy of the top of its stack (struct pyspy_native_sample), which user space unwinds with
 * .eh_frame. Nothing is resolved here. Loaded and attached by src/bpf/sampler.rs.
 *
 * Off-CPU (wall-clock mode, loaded only then): a sched_switch program records the same stacks
 * (and Python frames) of a thread of the profiled scope when it leaves the CPU, keeps them in
 * offcpu_inflight while it is away, and when it comes back after at least offcpu_min_ns sends
 * them as one record weighted by the time away (SAMPLE_OFFCPU). It lives in this object to
 * share the scope (settings, children), the Python maps and the walk with the sampler.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "pyspy.h"

/* Dual-licensed: bpf_get_stack is a GPL-only helper. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Settings, written by the loader between open and load (then read-only and folded into the
 * program by the verifier). */
const volatile __u32 target_tgid = 0;    /* only this process; 0 = every process */
/* With target_tgid: also its descendants (--subprocesses), found by their ancestry. */
const volatile bool follow_children = false;
const volatile bool skip_idle = true;    /* drop samples of the idle task (pid 0) */
const volatile bool kernel_stacks = true; /* record kernel stacks */
/* Pages of user stack copied per sample of a user thread (struct pyspy_native_sample): 0 = no
 * copy, else 2..MAX_USER_STACK_PAGES (the first page is copied from sp up only). */
const volatile __u32 user_stack_pages = 0;
/* Walk Python frames under bpf_loop (Linux 5.17+; user space probes for it, and tests turn it
 * off to cover the bounded loop older kernels run). */
const volatile bool use_bpf_loop = false;
/* Off-CPU (on_switch): stretches off the CPU shorter than this are not recorded. */
const volatile __u64 offcpu_min_ns = 1000000;
/* Off-CPU without a target (--all): only processes in py_layouts (Python processes user space
 * has attached to), so the host's other threads cost one map lookup per switch. */
const volatile bool offcpu_python_only = true;

/* x86-64 registers as the ptrace ABI lays them out (struct pt_regs in asm/ptrace.h; also the
 * start of struct bpf_perf_event_data). The layout is fixed, so they are read without CO-RE,
 * which would cost the loader a search of the kernel's BTF per struct. */
struct pyspy_x86_regs {
	__u64 r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di, orig_ax;
	__u64 ip, cs, flags, sp, ss;
};

/* task_struct.flags: a kernel thread (no user stack); a thread that is exiting (its last
 * switch out: it never comes back). */
#define PF_KTHREAD 0x00200000
#define PF_EXITING 0x00000004

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

/* Python processes whose frames are walked here: tgid -> the offsets of its CPython version.
 * Written by user space when it attaches to a process, removed when the process goes. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct pyspy_py_layout);
} py_layouts SEC(".maps");

/* (tgid << 32 | tid) -> address of the thread's PyThreadState, kept current by user space as
 * it sees threads come and go. An entry is only trusted when the thread state's thread_id is
 * the sampled task's fsbase (pthread_self()): a thread that ended and a thread state reused
 * by another thread are both caught, on every CPython version (see ARCHITECTURE.md). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} py_threads SEC(".maps");

/* follow_children: descendants of target_tgid seen so far (tgid -> 1), added by the program
 * itself when a sample's ancestry leads to the target, so later samples need one lookup.
 * User space removes processes that exited (a reused pid must not inherit membership). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, __u8);
} children SEC(".maps");

/* Off-CPU: threads of the scope that are off the CPU now (tid -> their record, taken when
 * they left: ktime_ns is when). An entry lives from a thread's switch out to its switch back
 * in. Preallocated at load; max_entries is set by the loader for the scope (a thread that
 * leaves while it is full is counted, ERR_OFFCPU_INFLIGHT_FULL). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pyspy_sample);
} offcpu_inflight SEC(".maps");

/* Off-CPU: where a leaving thread's record is built before it goes into offcpu_inflight (too
 * large for the BPF stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pyspy_sample);
} offcpu_scratch SEC(".maps");

/* Ancestors looked at to decide whether a process descends from target_tgid. */
#define MAX_ANCESTRY 16

/* Scratch space for one frame's and one code object's bytes (too large for the BPF stack next
 * to the rest). Each part has 8 bytes of slack past its masked offsets. */
struct py_frame_buf {
	__u8 bytes[PY_FRAME_READ + 8];
	__u8 code[PY_CODE_READ + 8];
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct py_frame_buf);
} py_scratch SEC(".maps");

/* Never read: they put struct pyspy_sample and the enums into the skeleton's generated types
 * (libbpf-cargo generates Rust types for what global variables reach). */
struct pyspy_sample _sample_type = {};
enum pyspy_error _error_type = 0;
enum pyspy_sample_flag _flag_type = 0;
enum pyspy_py_status _py_status_type = 0;
enum pyspy_frame_model _frame_model_type = 0;
enum pyspy_gil_model _gil_model_type = 0;
struct pyspy_py_layout _py_layout_type = {};
struct pyspy_native_sample *_native_sample_type = 0;

static __always_inline void count_error(enum pyspy_error err)
{
	__u32 key = err;
	__u64 *count = bpf_map_lookup_elem(&errors, &key);

	if (count)
		*count += 1;
}

/* A field of the frame bytes in buf: `off` comes from the layout (checked by user space, masked
 * here so the verifier sees it bounded). */
static __always_inline __u64 field_u64(struct py_frame_buf *buf, __u32 off)
{
	return *(__u64 *)&buf->bytes[off & (PY_FRAME_READ - 1)];
}

static __always_inline __u8 field_u8(struct py_frame_buf *buf, __u32 off)
{
	return buf->bytes[off & (PY_FRAME_READ - 1)];
}

/* A field of the code object bytes in buf (as field_u64). */
static __always_inline __u64 code_u64(struct py_frame_buf *buf, __u32 off)
{
	return *(__u64 *)&buf->code[off & (PY_CODE_READ - 1)];
}

static __always_inline __u64 code_id_mix(__u64 h, __u64 v)
{
	h = (h ^ v) * PY_CODE_ID_MUL;
	return h ^ (h >> 29);
}

/* The code object's fingerprint (struct pyspy_py_frame.code_id): a hash of the header fields
 * that tell it from another code object later at the same address. User space computes the
 * same hash from the header it cached (src/python/code.rs, CodeId), so a known code object
 * costs it no read. 0: not read (user space reads the header itself). */
static __always_inline __u64 code_id(struct pyspy_py_layout *layout, struct py_frame_buf *buf,
				     __u64 code)
{
	__u32 size = layout->code_read;
	__u64 h = PY_CODE_ID_SEED;

	if (code == 0 || size == 0 || size > PY_CODE_READ)
		return 0;
	if (bpf_probe_read_user(buf->code, size, (void *)code) != 0)
		return 0;
	h = code_id_mix(h, code_u64(buf, layout->code_type));
	h = code_id_mix(h, code_u64(buf, layout->code_name));
	h = code_id_mix(h, code_u64(buf, layout->code_filename));
	h = code_id_mix(h, code_u64(buf, layout->code_linetable));
	h = code_id_mix(h, (__u32)code_u64(buf, layout->code_firstlineno));
	return h ? h : 1;
}

/* The state of one Python walk, shared by its steps. */
struct py_walk {
	struct pyspy_sample *s;
	struct pyspy_py_layout *layout;
	struct py_frame_buf *buf;
	__u64 frame; /* the next frame to read; 0: the walk reached the root */
	__u32 size;  /* bytes of a frame to read */
	__u32 failed;
};

/* Frame i of the walk: recorded in s->py[i]. Returns 1 to stop (root reached, depth full or a
 * read failed), 0 to go on; the signature is bpf_loop's callback. */
static __always_inline long py_walk_step_inline(__u32 i, struct py_walk *w)
{
	struct pyspy_py_layout *layout = w->layout;
	struct py_frame_buf *buf = w->buf;
	struct pyspy_py_frame *f;
	__u64 frame = w->frame, code, instr;
	__u32 owner, size = w->size, idx;

	if (frame == 0 || i >= MAX_PY_DEPTH)
		return 1;
	if (size > PY_FRAME_READ)
		size = PY_FRAME_READ;
	if (bpf_probe_read_user(buf->bytes, size, (void *)frame) != 0) {
		w->failed = 1;
		return 1;
	}
	/* Masked as well as checked: the compiler would otherwise index with a copy of i the check
	 * did not bound (the verifier then refuses the access); the barrier keeps the mask. */
	idx = i;
	barrier_var(idx);
	f = &w->s->py[idx & (MAX_PY_DEPTH - 1)];
	code = field_u64(buf, layout->frame_code) & ~layout->code_tag_mask;
	if (layout->frame_model == PY_MODEL_FRAME_OBJECT) {
		/* f_lasti is an int; a frame that has not started has -1. */
		instr = (__s32)field_u64(buf, layout->frame_instr);
		if ((__s64)instr < 0)
			instr = 0;
		f->frame = frame | PY_FRAME_ENTRY;
	} else {
		instr = field_u64(buf, layout->frame_instr);
		owner = field_u8(buf, layout->frame_owner);
		if (owner == layout->owner_cstack || owner == layout->owner_interpreter) {
			f->frame = frame | PY_FRAME_SHIM;
			code = 0;
			instr = 0;
		} else if (layout->frame_is_entry != PY_NO_FIELD &&
			   field_u8(buf, layout->frame_is_entry) != 0) {
			f->frame = frame | PY_FRAME_ENTRY;
		} else {
			f->frame = frame;
		}
	}
	w->frame = field_u64(buf, layout->frame_previous);
	f->code = code;
	f->instr = instr;
	f->code_id = code_id(layout, buf, code);
	w->s->py_len = i + 1;
	return 0;
}

static long py_walk_step(__u32 i, void *w)
{
	return py_walk_step_inline(i, w);
}

/* Whether the thread whose thread state is tstate holds the GIL now, as flags on the sample
 * (SAMPLE_PY_GIL_READ, SAMPLE_PY_GIL_HELD); the same reads as src/python/threads.rs
 * gil_holders. Read at the sample: a later read would describe another instant, and the GIL
 * changes hands every few milliseconds. */
static __always_inline void read_gil(struct pyspy_py_layout *layout, __u64 tstate,
				     struct pyspy_sample *s)
{
	__u64 holder = 0, interp = 0, gil = 0;
	__s32 locked = 0;

	if (layout->gil_model == PY_GIL_CURRENT_TSTATE) {
		if (bpf_probe_read_user(&holder, sizeof(holder), (void *)layout->gil_current) != 0)
			goto failed;
	} else if (layout->gil_model == PY_GIL_PER_INTERPRETER) {
		if (bpf_probe_read_user(&interp, sizeof(interp),
					(void *)(tstate + layout->tstate_interp)) != 0 ||
		    interp == 0 ||
		    bpf_probe_read_user(&gil, sizeof(gil), (void *)(interp + layout->interp_gil)) != 0 ||
		    gil == 0 ||
		    bpf_probe_read_user(&locked, sizeof(locked),
					(void *)(gil + layout->gil_locked)) != 0 ||
		    bpf_probe_read_user(&holder, sizeof(holder),
					(void *)(gil + layout->gil_last_holder)) != 0)
			goto failed;
		/* last_holder stays set after the GIL is dropped: it counts only while locked. */
		if (locked == 0)
			holder = 0;
	} else {
		return;
	}
	s->flags |= SAMPLE_PY_GIL_READ;
	if (holder != 0 && holder == tstate)
		s->flags |= SAMPLE_PY_GIL_HELD;
	return;

failed:
	count_error(ERR_PY_GIL_READ_FAILED);
}

/* The Python frames of the sampled thread, leaf first, into s->py (see enum pyspy_py_status).
 * The walk mirrors src/python/walk.rs, which finishes it (py_next) or replaces it (failures).
 * With bpf_loop (Linux 5.17+) the verifier checks one step instead of MAX_PY_DEPTH unrolled
 * ones: loading the program costs ~30 ms less CPU, paid by every run. Older kernels take a
 * bounded loop (tests force it with use_bpf_loop off). */
static __always_inline void walk_python(struct task_struct *task, struct pyspy_sample *s)
{
	struct pyspy_py_layout *layout;
	struct py_walk w = {};
	__u64 key, *tstate_p, tstate, thread_id, frame;
	__u32 zero = 0, tgid = s->tgid, i;

	s->py_status = PY_NOT_WALKED;
	s->py_len = 0;
	s->py_next = 0;
	layout = bpf_map_lookup_elem(&py_layouts, &tgid);
	if (!layout)
		return;
	key = ((__u64)s->tgid << 32) | s->tid;
	tstate_p = bpf_map_lookup_elem(&py_threads, &key);
	if (!tstate_p) {
		s->py_status = PY_NO_THREAD;
		count_error(ERR_PY_NO_THREAD);
		return;
	}
	tstate = *tstate_p;
	if (bpf_probe_read_user(&thread_id, sizeof(thread_id),
				(void *)(tstate + layout->tstate_thread_id)) != 0)
		goto read_failed;
	if (thread_id != BPF_CORE_READ(task, thread.fsbase)) {
		s->py_status = PY_THREAD_MISMATCH;
		count_error(ERR_PY_THREAD_MISMATCH);
		return;
	}
	read_gil(layout, tstate, s);
	if (bpf_probe_read_user(&frame, sizeof(frame), (void *)(tstate + layout->tstate_frame)) != 0)
		goto read_failed;
	if (layout->frame_model == PY_MODEL_CFRAME && frame != 0 &&
	    bpf_probe_read_user(&frame, sizeof(frame),
				(void *)(frame + layout->cframe_current_frame)) != 0)
		goto read_failed;

	w.buf = bpf_map_lookup_elem(&py_scratch, &zero);
	if (!w.buf)
		goto read_failed;
	w.s = s;
	w.layout = layout;
	w.frame = frame;
	w.size = layout->frame_read;
	if (w.size == 0 || w.size > PY_FRAME_READ)
		w.size = PY_FRAME_READ;
	if (use_bpf_loop) {
		bpf_loop(MAX_PY_DEPTH, py_walk_step, &w, 0);
	} else {
		for (i = 0; i < MAX_PY_DEPTH; i++) {
			if (py_walk_step_inline(i, &w))
				break;
		}
	}
	if (w.failed)
		goto read_failed;
	if (w.frame == 0) {
		s->py_status = PY_WALKED;
	} else {
		s->py_status = PY_DEPTH;
		s->py_next = w.frame;
	}
	return;

read_failed:
	s->py_status = PY_READ_FAILED;
	count_error(ERR_PY_READ_FAILED);
}

/* Who, where, when and comm. */
static __always_inline void fill_header(struct pyspy_sample *s, struct task_struct *task,
					__u32 tgid, __u32 tid)
{
	s->tgid = tgid;
	s->tid = tid;
	s->cpu = bpf_get_smp_processor_id();
	s->flags = 0;
	s->ktime_ns = bpf_ktime_get_ns();
	s->process_start_ns = BPF_CORE_READ(task, group_leader, start_time);
	s->off_cpu_ns = 0;
	s->wait_addr = 0;
	s->kernel_len = 0;
	s->user_len = 0;

	if (bpf_get_current_comm(s->comm, sizeof(s->comm)) != 0) {
		s->comm[0] = 0;
		s->flags |= SAMPLE_COMM_FAILED;
		count_error(ERR_COMM_FAILED);
	}
}

/* The kernel and user call chains. */
static __always_inline void fill_stacks(void *ctx, struct pyspy_sample *s)
{
	long len;

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

/* Everything but the stack copy: who, where, when, comm, the kernel and user call chains and
 * the Python frames. */
static __always_inline void fill_sample(void *ctx, struct pyspy_sample *s,
					struct task_struct *task, __u32 tgid, __u32 tid)
{
	fill_header(s, task, tgid, tid);
	fill_stacks(ctx, s);
	walk_python(task, s);
}

/* follow_children: whether process tgid (task) is target_tgid's descendant. A known child is one
 * lookup; otherwise its ancestors are walked (bounded) and a hit is remembered. A process
 * reparented to init or a subreaper before its first sample is not followed. */
static __always_inline bool is_target_child(struct task_struct *task, __u32 tgid)
{
	struct task_struct *t = task;
	__u32 ancestor, i;
	__u8 one = 1;

	if (bpf_map_lookup_elem(&children, &tgid))
		return true;
	for (i = 0; i < MAX_ANCESTRY; i++) {
		t = BPF_CORE_READ(t, real_parent);
		if (!t)
			return false;
		ancestor = BPF_CORE_READ(t, tgid);
		if (ancestor <= 1)
			return false;
		if (ancestor == target_tgid || bpf_map_lookup_elem(&children, &ancestor)) {
			bpf_map_update_elem(&children, &tgid, &one, BPF_ANY);
			return true;
		}
	}
	return false;
}

/* Whether a thread of process tgid is in the profiled scope: the target (and with
 * follow_children its descendants), or every process. */
static __always_inline bool in_scope(struct task_struct *task, __u32 tgid)
{
	return target_tgid == 0 || tgid == target_tgid ||
	       (follow_children && tgid != 0 && is_target_child(task, tgid));
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
 * the pages from the one holding sp): a page that cannot be read is left zeroed (as
 * bpf_probe_read_user leaves it) and marked in missing_pages, and the copy ends after the
 * last page read. */
static __always_inline void sample_native(struct bpf_perf_event_data *ctx, struct task_struct *task,
					  __u32 tgid, __u32 tid)
{
	struct pyspy_native_sample *n;
	struct pyspy_x86_regs *sampled, *regs;
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
	fill_sample(ctx, &n->sample, task, tgid, tid);
	n->sample.flags |= SAMPLE_NATIVE;
	n->stack_len = 0;
	n->stack_pages = user_stack_pages;
	n->missing_pages = 0;

	sampled = (struct pyspy_x86_regs *)ctx;
	if ((sampled->cs & 3) == 3) {
		n->ip = sampled->ip;
		n->sp = sampled->sp;
		n->bp = sampled->bp;
	} else {
		regs = (struct pyspy_x86_regs *)bpf_task_pt_regs(task);
		n->ip = 0;
		n->sp = 0;
		n->bp = 0;
		bpf_probe_read_kernel(&n->ip, sizeof(n->ip), &regs->ip);
		bpf_probe_read_kernel(&n->sp, sizeof(n->sp), &regs->sp);
		bpf_probe_read_kernel(&n->bp, sizeof(n->bp), &regs->bp);
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
					(void *)(page + i * PYSPY_PAGE_SIZE)) != 0) {
			n->missing_pages |= 1U << i;
			continue;
		}
		n->stack_len = (i + 1) * PYSPY_PAGE_SIZE;
	}
	/* Only the missing pages below the end of the copy are holes in it. */
	n->missing_pages &= (1U << (n->stack_len / PYSPY_PAGE_SIZE)) - 1;
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
	task = bpf_get_current_task_btf();
	if (!in_scope(task, tgid))
		return 0;

	if (user_stack_pages != 0) {
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
	fill_sample(ctx, s, task, tgid, tid);
	bpf_ringbuf_submit(s, wakeup_flag());
	return 0;
}

/* futex(2) on x86-64: the system call a thread waiting for a lock or condition variable
 * sleeps in (a pthread mutex, condition variable or semaphore: CPython's GIL). */
#define PYSPY_NR_FUTEX 202

/* The futex word `task` (the current task, leaving the CPU) sleeps on, or 0 when it is not in
 * futex(2): a task in a system call keeps the call's number in orig_ax and its first argument
 * (the futex address) in di of its saved user registers. */
static __always_inline __u64 futex_wait_addr(struct task_struct *task)
{
	struct pyspy_x86_regs *regs = (struct pyspy_x86_regs *)bpf_task_pt_regs(task);
	__u64 nr = 0, addr = 0;

	if (bpf_probe_read_kernel(&nr, sizeof(nr), &regs->orig_ax) != 0 || nr != PYSPY_NR_FUTEX)
		return 0;
	if (bpf_probe_read_kernel(&addr, sizeof(addr), &regs->di) != 0)
		return 0;
	return addr;
}

/* Off-CPU: prev (the current task) leaves the CPU. A user thread of the scope (with --all, of
 * a Python process) has its record taken now, as the sampler takes one, and kept until it
 * comes back. */
static __always_inline void offcpu_leave(void *ctx, struct task_struct *prev)
{
	struct pyspy_sample *s;
	__u32 tgid = prev->tgid, tid = prev->pid, zero = 0;

	if (tid == 0 || (prev->flags & (PF_KTHREAD | PF_EXITING)))
		return;
	if (target_tgid == 0 && offcpu_python_only && !bpf_map_lookup_elem(&py_layouts, &tgid))
		return;
	if (!in_scope(prev, tgid))
		return;
	s = bpf_map_lookup_elem(&offcpu_scratch, &zero);
	if (!s)
		return;
	fill_header(s, prev, tgid, tid);
	s->wait_addr = futex_wait_addr(prev);
	walk_python(prev, s);
	/* The Python frames are the stack user space shows for a thread whose walk found some
	 * (without --native, and an off-CPU record has no stack copy for --native to unwind): its
	 * kernel and frame-pointer user stacks would not be read. Unwinding them was most of what
	 * a switch cost (bench/offcpu_cost.sh), so they are taken only for the other threads. */
	if ((s->py_status == PY_WALKED || s->py_status == PY_DEPTH) && s->py_len > 0)
		s->flags |= SAMPLE_KSTACK_OFF;
	else
		fill_stacks(ctx, s);
	s->flags |= SAMPLE_OFFCPU;
	if (bpf_map_update_elem(&offcpu_inflight, &tid, s, BPF_ANY) != 0)
		count_error(ERR_OFFCPU_INFLIGHT_FULL);
}

/* Off-CPU: next comes back to a CPU. If it left while in scope, at least offcpu_min_ns ago,
 * its record goes to user space with the time it was away. */
static __always_inline void offcpu_return(struct task_struct *next, __u64 now)
{
	struct pyspy_sample *kept;
	__u32 tid = next->pid;

	if (tid == 0)
		return;
	/* One process (--pid without --subprocesses): the host's other threads cost no lookup. */
	if (target_tgid != 0 && !follow_children && next->tgid != target_tgid)
		return;
	kept = bpf_map_lookup_elem(&offcpu_inflight, &tid);
	if (!kept)
		return;
	if (now > kept->ktime_ns && now - kept->ktime_ns >= offcpu_min_ns) {
		/* The entry is this thread's alone until it is deleted below: the record is written
		 * in place and copied to the ring buffer once. */
		kept->off_cpu_ns = now - kept->ktime_ns;
		if (bpf_ringbuf_output(&samples, kept, sizeof(*kept), wakeup_flag()) != 0)
			count_error(ERR_RINGBUF_FULL);
	}
	bpf_map_delete_elem(&offcpu_inflight, &tid);
}

/* Runs in the context of prev, with the runqueue locked: prev's stacks and memory are the
 * current task's. */
SEC("tp_btf/sched_switch")
int BPF_PROG(on_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	offcpu_leave(ctx, prev);
	offcpu_return(next, bpf_ktime_get_ns());
	return 0;
}
