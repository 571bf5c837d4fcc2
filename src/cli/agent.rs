//! `pyspy-bpf agent`: the command line of the fleet agent (`crate::agent`). The agent samples
//! with BPF, so off Linux it parses its command line as everywhere and then says it needs Linux.

use super::AgentArgs;
#[cfg(target_os = "linux")]
pub use crate::agent::config::GroupBy;

/// `--group-by` off Linux: the same values, so the command line reads the same everywhere.
#[cfg(not(target_os = "linux"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupBy {
    Process,
    Service,
}

#[cfg(not(target_os = "linux"))]
pub fn run(_args: AgentArgs) -> anyhow::Result<i32> {
    anyhow::bail!("the agent needs Linux (the BPF sampler)")
}

#[cfg(target_os = "linux")]
pub fn run(args: AgentArgs) -> anyhow::Result<i32> {
    use crate::agent::config::Overrides;
    let overrides = Overrides {
        rate: args.rate,
        interval: args.interval,
        event: args.event,
        native: args.native,
        all_processes: args.all_processes,
        group_by: args.group_by,
        labels: args.label,
        state_dir: args.state_dir,
        metrics_addr: args.metrics_addr,
        spool: args.spool,
        pyroscope: args.pyroscope,
        otlp: args.otlp,
    };
    crate::agent::run::run(args.config.as_deref(), overrides)
}
