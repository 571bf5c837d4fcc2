//! The fleet agent (`pyspy-bpf agent`): host-wide sampling cut into labelled windows
//! (`window`, with `labels` inferring each process's service), encoded per sink
//! (`delivery`, `otlp`) and shipped by one worker per sink (`sink`: `spool`, `http`), with an
//! on-disk `backlog`, Prometheus `metrics`, and `config` from a TOML file. `run` ties them up.

pub mod backlog;
pub mod config;
pub mod delivery;
pub mod http;
pub mod labels;
pub mod metrics;
pub mod otlp;
pub mod run;
pub mod sink;
pub mod spool;
pub mod window;
