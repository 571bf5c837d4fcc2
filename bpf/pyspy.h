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
 * a single large bpf_probe_read_user is all-or-nothing, the main thread's stack often ends
 * a few KiB above sp, and a page in the middle can be absent (never touched, inside a large
 * frame) while the pages above it, where the callers' return addresses are, are not. */
#define PYSPY_PAGE_SIZE 4096
#define MAX_USER_STACK_PAGES 16

/* Python frames walked in BPF per sample (struct pyspy_sample.py). A deeper stack records the
 * address of the next frame (py_next) and user space walks the rest: the root side of a deep
 * stack is the part that changes least. */
#define MAX_PY_DEPTH 64
/* Bytes of one frame (PyFrameObject / _PyInterpreterFrame) read at once: every field the walk
 * needs lies below this (user space checks before it enables the walk for a process). */
#define PY_FRAME_READ 128
/* Bytes of a code object read to fingerprint it (pyspy_py_frame.code_id): every header field
 * the fingerprint hashes lies below this (a power of two: offsets are masked by it). */
#define PY_CODE_READ 256
/* The fingerprint's hash (bpf/sampler.bpf.c code_id; src/python/code.rs mirrors it). */
#define PY_CODE_ID_SEED 0x70797370795f6964ULL
#define PY_CODE_ID_MUL 0x9e3779b97f4a7c15ULL
/* Low bits of pyspy_py_frame.frame (frames are pointer-aligned, so these are free). */
#define PY_FRAME_SHIM 1  /* an eval-loop entry shim (3.12+): no code, only its address */
#define PY_FRAME_ENTRY 2 /* 3.11: is_entry was set (the root-most frame of one eval call) */
#define PY_FRAME_FLAGS 7
/* pyspy_py_layout: an absent field (e.g. is_entry before 3.11 or after 3.11). */
#define PY_NO_FIELD 0xffffffff

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
	/* Python walk: the sampled thread of a Python process is not in py_threads (a thread
	 * user space has not seen yet); user space reads its stack instead. */
	ERR_PY_NO_THREAD,
	/* Python walk: the thread state py_threads names belongs to another thread now (its
	 * thread_id is not the task's fsbase): user space reads the stack instead. */
	ERR_PY_THREAD_MISMATCH,
	/* Python walk: reading the thread state or a frame failed (paged out, freed under us);
	 * the frames read before are kept and user space reads the stack instead. */
	ERR_PY_READ_FAILED,
	/* Python walk: the thread's GIL state could not be read (the sample has no
	 * SAMPLE_PY_GIL_READ); user space reads it instead. */
	ERR_PY_GIL_READ_FAILED,
	/* Off-CPU: a thread of the profiled scope left the CPU while offcpu_inflight was full
	 * (more threads off CPU at once than it holds); its time away is not recorded. */
	ERR_OFFCPU_INFLIGHT_FULL,
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
	/* The Python walk read whether the sampled thread held the GIL at the sample
	 * (pyspy_py_layout.gil_model); SAMPLE_PY_GIL_HELD says it did. */
	SAMPLE_PY_GIL_READ = 1 << 9,
	SAMPLE_PY_GIL_HELD = 1 << 10,
	/* An off-CPU record (on_switch): the thread's stacks when it left the CPU (ktime_ns),
	 * off_cpu_ns how long it was away. Without it, a perf-event sample of a running thread. */
	SAMPLE_OFFCPU = 1 << 11,
	/* With SAMPLE_OFFCPU, set by user space only: an offcpu_inflight entry it wrote for a thread
	 * that was off the CPU when the recording started (it read that thread's stacks itself);
	 * the record has no stacks. */
	SAMPLE_OFFCPU_SEEDED = 1 << 12,
};

/* struct pyspy_sample.py_status: what the Python walk did. */
enum pyspy_py_status {
	/* The process has no py_layouts entry (not Python, or not attached yet). */
	PY_NOT_WALKED = 0,
	/* py[0..py_len] is the whole frame chain (possibly empty: no Python code running). */
	PY_WALKED,
	/* MAX_PY_DEPTH frames recorded; py_next is the address of the next one. */
	PY_DEPTH,
	PY_NO_THREAD,
	PY_THREAD_MISMATCH,
	PY_READ_FAILED,
};

/* How to walk one Python process's frames: the offsets of its CPython version, written by user
 * space (src/sampler/bpf_layout.rs) into py_layouts when it attaches to the process. */
enum pyspy_frame_model {
	/* <= 3.10: tstate->frame, PyFrameObject linked by f_back, int f_lasti. */
	PY_MODEL_FRAME_OBJECT = 0,
	/* 3.11, 3.12: tstate->cframe->current_frame, _PyInterpreterFrame linked by previous. */
	PY_MODEL_CFRAME = 1,
	/* 3.13+: tstate->current_frame. */
	PY_MODEL_CURRENT_FRAME = 2,
};

/* Where a Python process keeps which thread holds its GIL (src/python/threads.rs GilLocation
 * mirrors it: both read the same fields). */
enum pyspy_gil_model {
	/* Not known for this process: the sample has no SAMPLE_PY_GIL_READ. */
	PY_GIL_NONE = 0,
	/* 2.7, 3.6: the _PyThreadState_Current variable; 3.7-3.11: _PyRuntime.gilstate.
	 * tstate_current. It holds the thread state holding the GIL (NULL while none does). */
	PY_GIL_CURRENT_TSTATE = 1,
	/* 3.12+: tstate->interp->ceval.gil points to the interpreter's struct _gil_runtime_state,
	 * whose last_holder holds it while locked is set. */
	PY_GIL_PER_INTERPRETER = 2,
};

struct pyspy_py_layout {
	__u32 frame_model;	    /* enum pyspy_frame_model */
	__u32 tstate_frame;	    /* offset of frame / cframe / current_frame in the thread state */
	__u32 tstate_thread_id;	    /* offset of thread_id (pthread_self(), = the task's fsbase) */
	__u32 cframe_current_frame; /* PY_MODEL_CFRAME: offset in _PyCFrame */
	__u32 frame_read;	    /* bytes of a frame to read, at most PY_FRAME_READ */
	__u32 frame_previous;	    /* f_back / previous */
	__u32 frame_code;	    /* f_code / f_executable */
	__u32 frame_instr;	    /* f_lasti (int) / prev_instr / instr_ptr (pointer) */
	__u32 frame_owner;	    /* owner (one byte), PY_NO_FIELD before 3.11 */
	__u32 frame_is_entry;	    /* is_entry (one byte, 3.11 only), else PY_NO_FIELD */
	__u32 owner_cstack;	    /* owner values of shim frames; PY_NO_FIELD: none */
	__u32 owner_interpreter;
	__u64 code_tag_mask;	    /* bits of f_executable that are tags, not address (3.14+) */
	/* The code object fields the fingerprint hashes (pyspy_py_frame.code_id), read as 8 bytes
	 * each (firstlineno: its low 4). code_read: bytes to read, 0 = no fingerprints. */
	__u32 code_read;
	__u32 code_type;	/* ob_type */
	__u32 code_name;	/* co_qualname where the version has it, else co_name */
	__u32 code_filename;
	__u32 code_linetable;	/* co_linetable / co_lnotab */
	__u32 code_firstlineno;
	/* The GIL (enum pyspy_gil_model). */
	__u32 gil_model;
	__u32 tstate_interp;	/* PY_GIL_PER_INTERPRETER: offset of interp in the thread state */
	__u32 interp_gil;	/* offset of ceval.gil (a pointer) in PyInterpreterState */
	__u32 gil_locked;	/* offset of locked (an int) in struct _gil_runtime_state */
	__u32 gil_last_holder;	/* offset of last_holder in struct _gil_runtime_state */
	__u32 gil_reserved;	/* 0 (keeps gil_current 8-aligned without hidden padding) */
	__u64 gil_current;	/* PY_GIL_CURRENT_TSTATE: the variable's address */
};

/* One frame the BPF walk recorded. */
struct pyspy_py_frame {
	__u64 frame; /* the frame's address | PY_FRAME_SHIM / PY_FRAME_ENTRY */
	__u64 code;  /* the code object (tag bits cleared); 0 for a shim */
	__u64 instr; /* f_lasti (<= 3.10) or the instruction pointer (3.11+) */
	__u64 code_id; /* fingerprint of the code object's header; 0: not read */
};

/* One ring-buffer record: one perf event firing on one CPU, or (SAMPLE_OFFCPU) one stretch a
 * thread spent off the CPU. Stacks are copied in whole (no
 * stack-id map), leaf first, as instruction pointers; user space symbolizes them. */
struct pyspy_sample {
	__u32 tgid;     /* process id */
	__u32 tid;      /* thread id */
	__u32 cpu;
	__u32 flags;    /* enum pyspy_sample_flag bits */
	__u64 ktime_ns; /* bpf_ktime_get_ns: CLOCK_MONOTONIC */
	/* The process's start (its thread group leader's start_time, ns since boot): tells a
	 * process from an earlier one that had the same pid, at every sample. */
	__u64 process_start_ns;
	/* SAMPLE_OFFCPU: nanoseconds the thread was off the CPU; 0 for an on-CPU sample. */
	__u64 off_cpu_ns;
	/* SAMPLE_OFFCPU: the futex word the thread went to sleep on (the first argument of the
	 * futex(2) call it was in), 0 when it left the CPU outside futex(2). User space tells a
	 * wait for the GIL by it: the GIL's condition variables and mutexes (its semaphore on
	 * 2.7) lie at addresses it knows. */
	__u64 wait_addr;
	char comm[PYSPY_COMM_LEN];
	__u32 kernel_len; /* valid entries in kernel[] */
	__u32 user_len;   /* valid entries in user[] */
	__u64 kernel[MAX_STACK_DEPTH];
	__u64 user[MAX_STACK_DEPTH];
	/* The Python frames of the thread at the same instant, leaf first (processes in
	 * py_layouts only). */
	__u32 py_status; /* enum pyspy_py_status */
	__u32 py_len;	 /* valid entries in py[] */
	__u64 py_next;	 /* PY_DEPTH: the next frame's address */
	struct pyspy_py_frame py[MAX_PY_DEPTH];
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
	/* Bit i: page i of stack[] (below stack_len) could not be read and is zero in the copy.
	 * A page of a frame that was never written is not mapped yet and a BPF program cannot
	 * fault it in: msgpack's Cython unpackb keeps 40 KiB of parser state on the stack and
	 * touches its first entries only. */
	__u32 missing_pages;
	__u8 stack[MAX_USER_STACK_PAGES * PYSPY_PAGE_SIZE];
};

#endif /* PYSPY_H */
