//! What a sample says of its process beyond its pid and name: its command line and the
//! container it runs in. Read once, when a sampler first meets the process (a short-lived
//! process is gone by the time a profile is written), and bounded: the target chose both.

use super::cgroup;
#[cfg(target_os = "linux")]
use std::io::Read;

/// Bytes of command line kept per process (arguments past it are dropped, the one it cuts
/// through is cut): a shell's `-c` script or a generated argument list can be megabytes, and
/// a registry of every process on a host keeps one per process.
pub const MAX_COMMAND_LINE: usize = 4096;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessDetails {
    /// Its arguments, the program first (empty: a kernel thread, or it could not be read).
    pub cmdline: Vec<String>,
    /// The id of the container it runs in (`cgroup::container_id`), when it runs in one.
    pub container_id: Option<String>,
}

/// Nothing known: a process gone before it was read.
pub static UNKNOWN: ProcessDetails = ProcessDetails {
    cmdline: Vec::new(),
    container_id: None,
};

impl ProcessDetails {
    /// Read them for a live process; what cannot be read is left empty (the process exited,
    /// or is a kernel thread): a sample without them is better than none.
    pub fn read(pid: u32) -> ProcessDetails {
        ProcessDetails {
            cmdline: read_cmdline(pid),
            container_id: cgroup::container_id(&cgroup::read(pid)),
        }
    }
}

/// At most `MAX_COMMAND_LINE` bytes of the command line, as arguments.
#[cfg(target_os = "linux")]
fn read_cmdline(pid: u32) -> Vec<String> {
    let mut raw = Vec::new();
    let read = std::fs::File::open(format!("/proc/{pid}/cmdline"))
        .and_then(|file| file.take(MAX_COMMAND_LINE as u64).read_to_end(&mut raw));
    match read {
        Ok(_) => split_args(&raw),
        Err(_) => Vec::new(),
    }
}

/// Off Linux the OS hands the arguments over whole; they are cut to the same bound.
#[cfg(not(target_os = "linux"))]
fn read_cmdline(pid: u32) -> Vec<String> {
    let args = super::proc::cmdline(pid).unwrap_or_default();
    let joined: Vec<u8> = args.join("\0").into_bytes();
    split_args(&joined[..joined.len().min(MAX_COMMAND_LINE)])
}

/// NUL-separated arguments (empty ones dropped, as `proc::cmdline` does) of at most
/// `MAX_COMMAND_LINE` bytes; bytes that are not UTF-8 become U+FFFD.
fn split_args(raw: &[u8]) -> Vec<String> {
    raw[..raw.len().min(MAX_COMMAND_LINE)]
        .split(|&b| b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_split_and_bounded() {
        assert_eq!(split_args(b"python3\0-m\0app\0"), ["python3", "-m", "app"]);
        assert_eq!(split_args(b"a\0\0b\xff"), ["a", "b\u{fffd}"]);
        let huge = vec![b'x'; 10 * MAX_COMMAND_LINE];
        let cut = split_args(&huge);
        assert_eq!(cut.len(), 1);
        assert_eq!(cut[0].len(), MAX_COMMAND_LINE);
    }

    #[test]
    fn a_live_process_has_its_command_line_and_a_gone_one_nothing() {
        let mine = ProcessDetails::read(std::process::id());
        let expected: Vec<String> = std::env::args().collect();
        assert!(!mine.cmdline.is_empty());
        assert_eq!(mine.cmdline[0], expected[0]);
        assert_eq!(
            ProcessDetails::read(u32::MAX - 1),
            ProcessDetails::default()
        );
    }
}
