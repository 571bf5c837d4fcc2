//! Perf events that drive the BPF sampler: which event (`PerfEventKind`), the online CPUs, and
//! `perf_event_open(2)` for one CPU.

use std::fmt;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::str::FromStr;

use libbpf_rs::libbpf_sys;

/// The event whose overflow runs the BPF program on each CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PerfEventKind {
    /// The software `cpu-clock` event (an hrtimer): works everywhere, including VMs without a
    /// PMU. The default.
    #[default]
    CpuClock,
    /// The hardware `cycles` event: needs a PMU (often missing in VMs).
    Cycles,
    /// Any other event, as `perf_event_attr.type` and `.config`.
    Custom { type_: u32, config: u64 },
}

impl PerfEventKind {
    /// A clock event (an hrtimer; its period is in nanoseconds, and the kernel turns the
    /// frequency asked for into a fixed period): the ones whose period `jitter` varies.
    pub fn is_clock(&self) -> bool {
        let (type_, config) = self.type_config();
        type_ == libbpf_sys::PERF_TYPE_SOFTWARE
            && (config == u64::from(libbpf_sys::PERF_COUNT_SW_CPU_CLOCK)
                || config == u64::from(libbpf_sys::PERF_COUNT_SW_TASK_CLOCK))
    }

    /// `(perf_event_attr.type, perf_event_attr.config)`.
    pub fn type_config(&self) -> (u32, u64) {
        match *self {
            PerfEventKind::CpuClock => (
                libbpf_sys::PERF_TYPE_SOFTWARE,
                libbpf_sys::PERF_COUNT_SW_CPU_CLOCK.into(),
            ),
            PerfEventKind::Cycles => (
                libbpf_sys::PERF_TYPE_HARDWARE,
                libbpf_sys::PERF_COUNT_HW_CPU_CYCLES.into(),
            ),
            PerfEventKind::Custom { type_, config } => (type_, config),
        }
    }
}

impl fmt::Display for PerfEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PerfEventKind::CpuClock => f.write_str("cpu-clock"),
            PerfEventKind::Cycles => f.write_str("cycles"),
            PerfEventKind::Custom { type_, config } => write!(f, "{type_}:{config:#x}"),
        }
    }
}

/// `cpu-clock`, `cycles`, or `TYPE:CONFIG` (numbers, decimal or 0x-hex), as `Display` writes.
impl FromStr for PerfEventKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let number = |n: &str| match n.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => n.parse(),
        };
        match s {
            "cpu-clock" => Ok(PerfEventKind::CpuClock),
            "cycles" => Ok(PerfEventKind::Cycles),
            _ => {
                let bad = || {
                    format!("unknown perf event {s:?}: expected cpu-clock, cycles or TYPE:CONFIG")
                };
                let (type_, config) = s.split_once(':').ok_or_else(bad)?;
                let type_ = number(type_).ok().and_then(|t| u32::try_from(t).ok());
                match (type_, number(config)) {
                    (Some(type_), Ok(config)) => Ok(PerfEventKind::Custom { type_, config }),
                    _ => Err(bad()),
                }
            }
        }
    }
}

/// The online CPUs, from `/sys/devices/system/cpu/online`.
pub fn online_cpus() -> io::Result<Vec<u32>> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online")?;
    parse_cpu_list(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("cannot parse the online CPU list {text:?}"),
        )
    })
}

/// Parse a kernel CPU list such as `0-3,5,7-8`.
fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last): (u32, u32) = (first.parse().ok()?, last.parse().ok()?);
                if first > last || last - first > 1 << 16 {
                    return None;
                }
                cpus.extend(first..=last);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

/// Open `event` on `cpu` for every process, sampling `rate_hz` times a second (frequency mode),
/// disabled: attaching the BPF program enables it.
pub fn open_event(event: PerfEventKind, rate_hz: u64, cpu: u32) -> io::Result<OwnedFd> {
    let (type_, config) = event.type_config();
    // An all-zero perf_event_attr is the documented starting point (every field optional).
    let mut attr = libbpf_sys::perf_event_attr {
        type_,
        size: std::mem::size_of::<libbpf_sys::perf_event_attr>() as u32,
        config,
        ..Default::default()
    };
    attr.__bindgen_anon_1.sample_freq = rate_hz;
    attr.set_freq(1);
    attr.set_disabled(1);
    let cpu = i32::try_from(cpu).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    sys_perf_event_open(&attr, -1, cpu)
}

/// `PERF_EVENT_IOC_PERIOD`: `_IOW('$', 4, __u64)`.
const PERF_EVENT_IOC_PERIOD: libc::c_ulong = 0x4008_2404;

/// Sets the sampling period of the perf event `fd` (nanoseconds, for a clock event); the
/// kernel restarts its timer with it.
#[allow(unsafe_code)]
pub fn set_period(fd: std::os::fd::RawFd, period: u64) -> io::Result<()> {
    // SAFETY: PERF_EVENT_IOC_PERIOD reads one u64 through the pointer, which points at a live
    // local; an fd that is not a perf event fails with an error, touching nothing.
    let rc = unsafe { libc::ioctl(fd, PERF_EVENT_IOC_PERIOD as _, &period as *const u64) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[allow(unsafe_code)]
fn sys_perf_event_open(
    attr: &libbpf_sys::perf_event_attr,
    pid: libc::pid_t,
    cpu: libc::c_int,
) -> io::Result<OwnedFd> {
    let group_fd: libc::c_int = -1;
    let flags = libc::c_ulong::from(libbpf_sys::PERF_FLAG_FD_CLOEXEC);
    // SAFETY: `attr` is a valid, initialised perf_event_attr whose `size` is its own size; the
    // kernel only reads it. The other arguments are plain integers.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr as *const libbpf_sys::perf_event_attr,
            pid,
            cpu,
            group_fd,
            flags,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: the syscall succeeded, so `fd` is a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Now, on the clock the BPF program stamps samples with (`bpf_ktime_get_ns`:
/// CLOCK_MONOTONIC), so user space can tell how old a sample is.
#[allow(unsafe_code)]
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec owned by this frame; CLOCK_MONOTONIC always
    // exists on Linux, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0\n"), Some(vec![0]));
        assert_eq!(
            parse_cpu_list("0-3,5,7-8\n"),
            Some(vec![0, 1, 2, 3, 5, 7, 8])
        );
        assert_eq!(parse_cpu_list(""), Some(vec![]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn event_names_round_trip() {
        for event in [
            PerfEventKind::CpuClock,
            PerfEventKind::Cycles,
            PerfEventKind::Custom {
                type_: 1,
                config: 0x9,
            },
        ] {
            assert_eq!(event.to_string().parse::<PerfEventKind>(), Ok(event));
        }
        assert_eq!(
            "1:2".parse::<PerfEventKind>(),
            Ok(PerfEventKind::Custom {
                type_: 1,
                config: 2
            })
        );
        assert!("task-clock".parse::<PerfEventKind>().is_err());
        assert!("1:".parse::<PerfEventKind>().is_err());
    }

    #[test]
    fn cpu_clock_is_software() {
        assert_eq!(PerfEventKind::default(), PerfEventKind::CpuClock);
        assert_eq!(PerfEventKind::CpuClock.type_config(), (1, 0));
        assert_eq!(PerfEventKind::Cycles.type_config(), (0, 0));
    }
}
