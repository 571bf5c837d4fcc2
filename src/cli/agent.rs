//! `pyspy-bpf agent`: the command line of the fleet agent (`crate::agent`).

use super::AgentArgs;
use crate::agent::config::Overrides;

pub fn run(args: AgentArgs) -> anyhow::Result<i32> {
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
