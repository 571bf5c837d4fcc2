//! Our own scheduling priority. Host-wide sampling reads each Python stack right after its
//! sample; on a saturated host a profiler with an ordinary share of the CPU falls behind and
//! every late sample is lost, so the BPF consumer asks for a larger share (needs root or
//! CAP_SYS_NICE; without them it keeps the default and says so in the log).

/// The nice value asked for: enough to win CPU time against dozens of busy processes, and
/// still below interactive and system daemons that use real-time or lower nice values.
pub const PROFILER_NICE: i32 = -10;

/// Set the calling thread's nice value (threads it creates afterwards inherit it).
#[allow(unsafe_code)]
pub fn set_own_nice(nice: i32) -> std::io::Result<()> {
    // SAFETY: setpriority takes plain integers; `who = 0` with PRIO_PROCESS is the calling
    // thread on Linux. No memory is passed.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
