//! Ending a run on a signal: SIGINT (Ctrl-C), SIGTERM (`kill`, `timeout`, service managers)
//! and SIGHUP (a closed terminal or ssh session) all set one flag, so every verb stops the
//! same way: `record` writes what it collected, `top` restores the terminal, a paused target
//! is resumed and a program we started is killed and reaped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;

/// Install the handler (once per process) and return the flag it sets.
pub fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let set = stop.clone();
    // The `termination` feature of ctrlc adds SIGTERM and SIGHUP to SIGINT.
    ctrlc::set_handler(move || set.store(true, Ordering::Relaxed))
        .context("cannot install the handler for SIGINT, SIGTERM and SIGHUP")?;
    Ok(stop)
}
