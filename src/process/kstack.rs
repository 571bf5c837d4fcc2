//! The kernel stack of a thread that is not running, from `/proc/PID/task/TID/stack` (root
//! only), and the system call it is blocked in, from `/proc/PID/task/TID/syscall`. Read before
//! the thread is paused: a ptrace stop replaces its wait with the stop's own frames. A file
//! that cannot be read (no permission, a kernel without it, a thread gone) gives no stack,
//! never an error.

/// Most frames kept from one stack (the kernel itself prints at most 64).
const MAX_FRAMES: usize = 128;

/// A sleeping thread's kernel stack.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelStack {
    /// Function names, leaf first (`hrtimer_nanosleep`, ..., `entry_SYSCALL_64_after_hwframe`).
    pub frames: Vec<String>,
    /// The system call number the thread was blocked in, when the kernel said.
    pub syscall: Option<u64>,
}

/// The kernel stack of thread `tid` of `pid`, `None` when it cannot be read or is empty
/// (always, off Linux: no other OS we support shows another process's kernel stack).
#[cfg(not(target_os = "linux"))]
pub fn read(_pid: u32, _tid: u32) -> Option<KernelStack> {
    None
}

/// The kernel stack of thread `tid` of `pid`, `None` when it cannot be read or is empty.
#[cfg(target_os = "linux")]
pub fn read(pid: u32, tid: u32) -> Option<KernelStack> {
    let dir = format!("/proc/{pid}/task/{tid}");
    let frames = parse_stack(&std::fs::read_to_string(format!("{dir}/stack")).ok()?);
    if frames.is_empty() {
        return None;
    }
    let syscall = std::fs::read_to_string(format!("{dir}/syscall"))
        .ok()
        .and_then(|s| parse_syscall(&s));
    Some(KernelStack { frames, syscall })
}

/// Function names, leaf first, from lines like `[<0>] do_nanosleep+0x6a/0x170 [module]`.
/// Lines that do not have that shape are skipped.
pub fn parse_stack(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(parse_line)
        .take(MAX_FRAMES)
        .map(str::to_string)
        .collect()
}

fn parse_line(line: &str) -> Option<&str> {
    let rest = line.trim_start().strip_prefix("[<")?;
    let (_, rest) = rest.split_once(">]")?;
    let symbol = rest.split_whitespace().next()?;
    let name = symbol.split('+').next()?;
    let is_symbol_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '$');
    (!name.is_empty() && name.chars().all(is_symbol_char)).then_some(name)
}

/// The system call number from `/proc/.../syscall`: `NR arg... sp pc` while blocked in a
/// system call; `-1 sp pc` when blocked outside one, `running` when running.
pub fn parse_syscall(text: &str) -> Option<u64> {
    let first = text.split_whitespace().next()?;
    first
        .parse::<i64>()
        .ok()
        .and_then(|n| u64::try_from(n).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_frames_leaf_first() {
        let text = "[<0>] hrtimer_nanosleep+0xb5/0x130\n\
                    [<0>] common_nsleep_timens+0x3d/0xa0\n\
                    [<0>] __x64_sys_clock_nanosleep+0xde/0x150\n\
                    [<0>] do_syscall_64+0x71/0x290\n\
                    [<0>] entry_SYSCALL_64_after_hwframe+0x76/0x7e\n";
        assert_eq!(
            parse_stack(text),
            [
                "hrtimer_nanosleep",
                "common_nsleep_timens",
                "__x64_sys_clock_nanosleep",
                "do_syscall_64",
                "entry_SYSCALL_64_after_hwframe"
            ]
        );
    }

    #[test]
    fn keeps_module_symbols_and_addresses_shown_to_root() {
        let text = "[<ffffffffc0a1b2c3>] nfs_wait_bit_killable+0x1d/0x90 [nfs]\n\
                    [<0>] ep_poll.constprop.0+0x2a/0x100\n";
        assert_eq!(
            parse_stack(text),
            ["nfs_wait_bit_killable", "ep_poll.constprop.0"]
        );
    }

    #[test]
    fn skips_garbage() {
        let text = "\n\
                    garbage\n\
                    [<0>]\n\
                    [<0] missing_bracket+0x1/0x2\n\
                    <0>] no_open+0x1/0x2\n\
                    [<0>] +0x1/0x2\n\
                    [<0>] bad;name+0x1/0x2\n\
                    [<0>] \u{fffd}\u{0}+0x1/0x2\n\
                    [<0>] schedule+0x27/0xa0\n";
        assert_eq!(parse_stack(text), ["schedule"]);
        assert!(parse_stack("").is_empty());
        let many = "[<0>] f+0x1/0x2\n".repeat(1000);
        assert_eq!(parse_stack(&many).len(), MAX_FRAMES);
    }

    #[test]
    fn parses_the_syscall_number() {
        assert_eq!(
            parse_syscall("230 0x1 0x1 0x7fff3dc81f30 0x0 0x0 0x0 0x7fff3dc81f18 0x7fefce2e4503\n"),
            Some(230)
        );
        assert_eq!(parse_syscall("-1 0x7fff3dc81f18 0x7fefce2e4503\n"), None);
        assert_eq!(parse_syscall("running\n"), None);
        assert_eq!(parse_syscall(""), None);
        assert_eq!(parse_syscall("0x17 1 2"), None);
    }

    #[test]
    fn reads_a_sleeping_thread_of_our_own() {
        let pid = std::process::id();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel::<u32>();
        let (wake_tx, wake_rx) = std::sync::mpsc::channel::<()>();
        let sleeper = std::thread::spawn(move || {
            // SAFETY: gettid has no arguments and cannot fail.
            #[allow(unsafe_code)]
            let tid = unsafe { libc::gettid() } as u32;
            let _ = tid_tx.send(tid);
            let _ = wake_rx.recv();
        });
        let tid = tid_rx.recv().expect("the sleeper's tid");
        // Wait (bounded) until it sleeps in futex(2), inside recv.
        let mut stack = None;
        for _ in 0..5000 {
            stack = read(pid, tid).filter(|s| s.syscall.is_some());
            if stack.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        drop(wake_tx);
        let _ = sleeper.join();
        // Unreadable without root: then there is simply no stack.
        // SAFETY: geteuid has no arguments and cannot fail.
        #[allow(unsafe_code)]
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            let stack = stack.expect("a kernel stack as root");
            assert!(
                stack.frames.iter().any(|f| f.contains("futex")),
                "{stack:?}"
            );
            assert_eq!(stack.syscall, Some(libc::SYS_futex as u64), "{stack:?}");
        }
    }
}
