//! The BPF sampler's user-space half: owns the generated skeleton of `bpf/sampler.bpf.c`, loads
//! it, attaches it to one perf event per online CPU, and turns its ring-buffer records into
//! [`RawSample`](crate::model::RawSample)s.
//!
//! ```no_run
//! use pyspy_bpf::bpf::{BpfConfig, BpfSampler};
//! let mut sampler = BpfSampler::start(&BpfConfig::default())?;
//! let mut samples = sampler.spawn_reader(8 << 20)?; // bytes of samples queued at most
//! for sample in samples.iter().take(100) {
//!     println!("{} {} {} user frames", sample.pid, sample.comm, sample.user.len());
//! }
//! for (name, count) in sampler.stop()? {
//!     if count > 0 {
//!         eprintln!("{name}: {count}");
//!     }
//! }
//! # Ok::<(), pyspy_bpf::bpf::BpfError>(())
//! ```
//!
//! # Design
//! - **Ring buffer, not perf buffer.** One `BPF_MAP_TYPE_RINGBUF` shared by all CPUs: records
//!   arrive in (nearly) time order, memory is one pool sized once (`BpfConfig::ringbuf_bytes`,
//!   set between open and load), and a failed `bpf_ringbuf_reserve` is an exact "lost sample"
//!   count (`ringbuf_full`) instead of per-CPU lost-event callbacks.
//! - **Stacks are copied into the record** with `bpf_get_stack` rather than stored in a
//!   `STACK_TRACE` map by id: a stack-id map is a hash table that fills up and silently reuses
//!   (or fails to insert) buckets, and an id read later may already describe another stack. The
//!   record holds what was on the stack at that instant, so it never goes stale (principle 1 of
//!   STYLE.md). The cost is a fixed 2 KiB record (2 x 127 frames).
//! - **Layout defined once.** `bpf/pyspy.h` defines `struct pyspy_sample`, its flag bits and
//!   `enum pyspy_error`; Rust reads records through the skeleton's generated `types` (never a
//!   hand-copied struct), and build.rs generates the counter names from the enum's BTF.
//! - **Counters.** Each BPF failure sets a flag on the record (when there is one) and
//!   increments one slot of the per-CPU array `errors`: `ringbuf_full` (no room: the sample is
//!   lost), `comm_failed`, `kstack_failed`, `ustack_failed`. User space adds `queue_full`
//!   (the consumer's bounded channel was full, the sample was dropped) and `bad_record` (a
//!   record too short to decode). [`BpfSampler::counters`] sums the CPUs.
//! - **Settings** are `const volatile` globals written between open and load: `target_tgid`
//!   (0 = every process), `skip_idle` (drop the idle task, pid 0) and `kernel_stacks`.
//! - **Build.** build.rs compiles the C with clang when there is one, else uses the committed,
//!   byte-reproducible `bpf/sampler.bpf.o`; `bpf/sampler.bpf.o.inputs` records its sources'
//!   hashes so a stale object is noticed (a build warning, and a test).
//!
//! Needs root, or `CAP_BPF` and `CAP_PERFMON`, and a kernel with BTF
//! (`/sys/kernel/btf/vmlinux`).

mod jitter;
mod perf;
mod python;
mod sampler;

pub use perf::{monotonic_ns, online_cpus, PerfEventKind};
pub use python::{BpfFrameModel, BpfGil, CodeFields, PyLayout, PY_CODE_READ, PY_FRAME_READ};
pub use sampler::{
    ringbuf_bytes_for, BpfConfig, BpfSampler, OffCpuConfig, Samples, COUNTER_NAMES,
    MAX_OFFCPU_THREADS, MAX_PYTHON_THREADS, MAX_USER_STACK_COPY,
};

use std::io;

/// Where the BPF loader expects the kernel's BTF.
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Why the BPF sampler could not start (or stop cleanly).
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error(
        "{step}: permission denied: the BPF sampler needs root, or CAP_BPF and CAP_PERFMON \
         (e.g. `sudo setcap cap_bpf,cap_perfmon+ep BINARY`)"
    )]
    Permission { step: String },
    #[error(
        "{step}: the kernel's BPF verifier refused the program (`RUST_LOG=debug` prints its \
         log; please report it with `uname -r`); the user-space sampler works without BPF"
    )]
    Rejected { step: String },
    #[error(
        "the kernel has no BTF ({KERNEL_BTF} is missing): the BPF sampler needs a kernel built \
         with CONFIG_DEBUG_INFO_BTF=y; the user-space sampler works without it"
    )]
    NoBtf,
    #[error(
        "{step}: this kernel does not support BPF (bpf(2) is not available: CONFIG_BPF_SYSCALL); \
         the user-space sampler works without it"
    )]
    NoBpf { step: String },
    #[error(
        "perf event {event} is not available on this machine ({source}); hardware events need a \
         PMU, which VMs often lack: use cpu-clock"
    )]
    EventUnavailable {
        event: perf::PerfEventKind,
        #[source]
        source: io::Error,
    },
    #[error("invalid BPF sampler setting: {0}")]
    Config(String),
    #[error("{step}: {source}")]
    Libbpf {
        step: String,
        #[source]
        source: libbpf_rs::Error,
    },
    #[error("{step}: {source}")]
    Io {
        step: String,
        #[source]
        source: io::Error,
    },
}

impl BpfError {
    /// Classify a failed libbpf call made during `step`.
    pub(crate) fn libbpf(step: impl Into<String>, source: libbpf_rs::Error) -> BpfError {
        let step = step.into();
        match source.kind() {
            libbpf_rs::ErrorKind::PermissionDenied => BpfError::Permission { step },
            libbpf_rs::ErrorKind::Unsupported => BpfError::NoBpf { step },
            _ => BpfError::Libbpf { step, source },
        }
    }

    /// Classify a failed load of the BPF program: as root, "permission denied" is the
    /// verifier's refusal, not a missing privilege.
    pub(crate) fn load(source: libbpf_rs::Error) -> BpfError {
        let step = "loading the BPF program";
        #[allow(unsafe_code)]
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        match source.kind() {
            libbpf_rs::ErrorKind::PermissionDenied if root => {
                BpfError::Rejected { step: step.into() }
            }
            _ => BpfError::libbpf(step, source),
        }
    }

    /// Classify a failed system call made during `step`.
    pub(crate) fn os(step: impl Into<String>, source: io::Error) -> BpfError {
        let step = step.into();
        match source.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => BpfError::Permission { step },
            Some(libc::ENOSYS) => BpfError::NoBpf { step },
            _ => BpfError::Io { step, source },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_errors_name_the_capabilities() {
        for errno in [libc::EPERM, libc::EACCES] {
            let err = BpfError::os("opening a perf event", io::Error::from_raw_os_error(errno));
            let text = err.to_string();
            assert!(matches!(err, BpfError::Permission { .. }), "{text}");
            assert!(
                text.contains("CAP_BPF") && text.contains("CAP_PERFMON"),
                "{text}"
            );
            assert!(text.contains("root"), "{text}");
            assert!(text.starts_with("opening a perf event: "), "{text}");
        }
        let libbpf = libbpf_rs::Error::from(io::Error::from_raw_os_error(libc::EPERM));
        let text = BpfError::libbpf("loading the BPF program", libbpf).to_string();
        assert!(
            text.contains("CAP_BPF") && text.contains("CAP_PERFMON"),
            "{text}"
        );
    }

    #[test]
    fn a_refused_load_as_root_names_the_verifier_not_privileges() {
        let denied = || libbpf_rs::Error::from(io::Error::from_raw_os_error(libc::EACCES));
        let text = BpfError::load(denied()).to_string();
        #[allow(unsafe_code)]
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert!(
                text.contains("verifier") && !text.contains("CAP_BPF"),
                "{text}"
            );
        } else {
            assert!(text.contains("CAP_BPF"), "{text}");
        }
        let other = BpfError::load(libbpf_rs::Error::from(io::Error::from_raw_os_error(
            libc::E2BIG,
        )));
        assert!(matches!(other, BpfError::Libbpf { .. }), "{other}");
    }

    #[test]
    fn other_errors_keep_their_cause() {
        let err = BpfError::os("x", io::Error::from_raw_os_error(libc::ENOSYS));
        assert!(matches!(err, BpfError::NoBpf { .. }));
        let err = BpfError::os("x", io::Error::from_raw_os_error(libc::EBUSY));
        assert!(matches!(err, BpfError::Io { .. }));
        assert!(BpfError::NoBtf.to_string().contains(KERNEL_BTF));
    }
}
