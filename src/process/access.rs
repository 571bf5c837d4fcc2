//! Why the kernel refuses us a process: the facts behind a permission error (who we are and
//! which capabilities we hold, who owns the target, who traces it, Yama) turned into one
//! sentence with the advice that fits, so that root is never told to run as root.

/// `CAP_SYS_PTRACE`'s bit: what lets us read and pause processes we do not own.
const CAP_SYS_PTRACE: u32 = 19;

/// Capability names by bit (linux/capability.h).
const CAP_NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// `PF_KTHREAD` in `/proc/PID/stat`'s flags (field 9).
const PF_KTHREAD: u64 = 0x0020_0000;

/// The fields of `/proc/PID/status` (world-readable) that decide access.
#[derive(Debug, Default)]
struct Status {
    name: String,
    /// Real and effective uid.
    uid: (u32, u32),
    cap_prm: u64,
    cap_eff: u64,
    tracer: u32,
}

impl Status {
    fn read(path: &str) -> Option<Status> {
        let text = std::fs::read_to_string(path).ok()?;
        Some(Status::parse(&text))
    }

    fn parse(text: &str) -> Status {
        let mut s = Status::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            let hex = || u64::from_str_radix(value, 16).unwrap_or(0);
            match key {
                "Name" => s.name = value.to_string(),
                "Uid" => {
                    let mut ids = value.split_whitespace().map(|v| v.parse().unwrap_or(0));
                    s.uid = (ids.next().unwrap_or(0), ids.next().unwrap_or(0));
                }
                "CapPrm" => s.cap_prm = hex(),
                "CapEff" => s.cap_eff = hex(),
                "TracerPid" => s.tracer = value.parse().unwrap_or(0),
                _ => {}
            }
        }
        s
    }
}

/// The names of the capabilities set in `mask`.
fn cap_names(mask: u64) -> Vec<String> {
    (0..64)
        .filter(|bit| mask & (1u64 << bit) != 0)
        .map(|bit| match CAP_NAMES.get(bit) {
            Some(name) => name.to_string(),
            None => format!("capability {bit}"),
        })
        .collect()
}

/// A user name from /etc/passwd, else the number.
fn user_name(uid: u32) -> String {
    let name = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
            })
        });
    match name {
        Some(name) => format!("{name} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

fn yama_ptrace_scope() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Why reading process `pid` (its memory, `/proc/PID/exe`, `maps`) was refused.
pub fn why_denied(pid: u32) -> String {
    let me = Status::read("/proc/self/status").unwrap_or_default();
    let target = Status::read(&format!("/proc/{pid}/status"));
    explain(pid, &me, target.as_ref(), yama_ptrace_scope())
}

fn explain(pid: u32, me: &Status, target: Option<&Status>, yama: Option<u32>) -> String {
    let root = me.uid.1 == 0;
    let has_ptrace = me.cap_eff & (1 << CAP_SYS_PTRACE) != 0;
    let lacking = target
        .map(|t| cap_names(t.cap_prm & !me.cap_eff))
        .unwrap_or_default();
    let holds_more = match lacking.is_empty() {
        true => String::new(),
        false => format!("; it holds capabilities we do not ({})", lacking.join(", ")),
    };
    if yama == Some(3) {
        return "ptrace access is disabled on this host for everyone, root included \
                (kernel.yama.ptrace_scope = 3, which only a reboot resets)"
            .into();
    }
    if has_ptrace {
        return format!(
            "the kernel refused although we {} with CAP_SYS_PTRACE: a security module or \
             sandbox (SELinux, AppArmor, Landlock, a container's policy) forbids access to \
             process {pid}{holds_more}",
            if root { "run as root" } else { "run" }
        );
    }
    if root {
        return format!(
            "we run as root but without CAP_SYS_PTRACE (missing from this process's effective \
             capabilities, e.g. dropped by a container: `--cap-add SYS_PTRACE`), which reading \
             process {pid} needs{holds_more}"
        );
    }
    let why = match target {
        Some(t) if t.uid.0 != me.uid.1 || t.uid.1 != me.uid.1 => format!(
            "process {pid} belongs to {} and we run as {}",
            user_name(t.uid.1),
            user_name(me.uid.1)
        ),
        Some(_) if !lacking.is_empty() => format!(
            "process {pid} holds capabilities we do not ({})",
            lacking.join(", ")
        ),
        Some(_) if yama.is_some_and(|y| y >= 1) => format!(
            "kernel.yama.ptrace_scope = {} lets us read only our own descendants",
            yama.unwrap_or(1)
        ),
        _ => format!(
            "process {pid} is not dumpable (it changed credentials, or set PR_SET_DUMPABLE 0)"
        ),
    };
    format!("{why}; reading it needs CAP_SYS_PTRACE (run as root, or grant the capability)")
}

/// The process tracing `pid` (or one of its threads), other than us: pid and name.
pub fn tracer(pid: u32) -> Option<(u32, String)> {
    let me = std::process::id();
    let mut statuses = vec![format!("/proc/{pid}/status")];
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        statuses.extend(
            dir.filter_map(|e| e.ok())
                .map(|e| format!("{}/status", e.path().display())),
        );
    }
    let tracer = statuses
        .iter()
        .filter_map(|p| Status::read(p))
        .map(|s| s.tracer)
        .find(|&t| t != 0 && t != me)?;
    let name = Status::read(&format!("/proc/{tracer}/status"))
        .map(|s| s.name)
        .unwrap_or_else(|| "?".into());
    Some((tracer, name))
}

/// Why `pid` could not be paused (ptrace seize was refused): another tracer, else as
/// [`why_denied`].
pub fn why_no_ptrace(pid: u32) -> String {
    match tracer(pid) {
        Some((tracer, name)) => format!(
            "it is being traced by {tracer} ({name}), and a process has only one tracer: \
             --blocking and --native (which pause it with ptrace) cannot attach until that \
             tracer detaches; reading without pausing it still works (without --blocking and \
             --native, or record --native in BPF mode)"
        ),
        None => why_denied(pid),
    }
}

/// The name of `pid` if it is a kernel thread (`PF_KTHREAD`), which has no user memory.
pub fn kernel_thread(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, tail) = stat.rsplit_once(')')?;
    let flags: u64 = tail.split_whitespace().nth(6)?.parse().ok()?;
    let name = head.split_once('(')?.1.to_string();
    (flags & PF_KTHREAD != 0).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(uid: u32, cap_eff: u64, cap_prm: u64) -> Status {
        Status {
            name: "x".into(),
            uid: (uid, uid),
            cap_prm,
            cap_eff,
            tracer: 0,
        }
    }

    const ALL: u64 = (1 << 41) - 1;

    #[test]
    fn parses_status() {
        let s = Status::parse(
            "Name:\tstrace\nUid:\t1000\t0\t0\t0\nTracerPid:\t42\nCapPrm:\t000001ffffffffff\nCapEff:\t0000000000080000\n",
        );
        assert_eq!(s.name, "strace");
        assert_eq!(s.uid, (1000, 0));
        assert_eq!(s.tracer, 42);
        assert_eq!(s.cap_prm, ALL);
        assert_eq!(cap_names(s.cap_eff), ["CAP_SYS_PTRACE"]);
    }

    #[test]
    fn root_is_never_told_to_run_as_root() {
        // Root with CAP_SYS_PTRACE, refused anyway (pid 1 in a sandbox).
        let me = status(0, ALL & !(1 << 24), ALL & !(1 << 24));
        let text = explain(1, &me, Some(&status(0, ALL, ALL)), None);
        assert!(!text.contains("run as root,"), "{text}");
        assert!(text.contains("security module"), "{text}");
        assert!(text.contains("CAP_SYS_RESOURCE"), "{text}");
        // Root whose container dropped CAP_SYS_PTRACE.
        let me = status(0, ALL & !(1 << CAP_SYS_PTRACE), 0);
        let text = explain(7, &me, Some(&status(0, 0, 0)), None);
        assert!(text.contains("without CAP_SYS_PTRACE"), "{text}");
        assert!(!text.contains("run as root,"), "{text}");
        // Yama 3 stops everyone.
        let text = explain(7, &status(0, ALL, ALL), None, Some(3));
        assert!(text.contains("ptrace_scope = 3"), "{text}");
    }

    #[test]
    fn non_root_is_told_the_missing_capability() {
        let text = explain(7, &status(65534, 0, 0), Some(&status(0, 0, 0)), None);
        assert!(text.contains("belongs to"), "{text}");
        assert!(text.contains("CAP_SYS_PTRACE"), "{text}");
        let text = explain(7, &status(1000, 0, 0), Some(&status(1000, 0, 0)), Some(1));
        assert!(text.contains("ptrace_scope = 1"), "{text}");
    }

    #[test]
    fn finds_kernel_threads() {
        assert_eq!(kernel_thread(2).as_deref(), Some("kthreadd"));
        assert_eq!(kernel_thread(std::process::id()), None);
    }
}
