//! Choosing the sampler: `--mode auto|bpf|userspace`. `auto` uses BPF when the kernel and
//! privileges allow and the options make sense for it, and otherwise falls back to the
//! user-space sampler with one line saying why.

use crate::bpf::BpfSampler;
use crate::sampler::bpf::{self as bpf_source, BpfSourceConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    Auto,
    Bpf,
    Userspace,
}

/// What was chosen. The BPF sampler is already started (so its errors are known).
pub enum Chosen {
    Bpf(BpfSampler),
    Userspace,
}

/// Pick the sampler. `userspace_only` names an option that only the user-space sampler
/// implements (or is `None`); `all` is `--all`, which only BPF can do.
pub fn choose(
    mode: ModeArg,
    all: bool,
    userspace_only: Option<&str>,
    config: &BpfSourceConfig,
) -> anyhow::Result<Chosen> {
    match (mode, all, userspace_only) {
        (ModeArg::Userspace, true, _) => {
            anyhow::bail!("--all needs the BPF sampler; it cannot run with --mode userspace")
        }
        (ModeArg::Userspace, false, _) => Ok(Chosen::Userspace),
        (_, true, Some(option)) | (ModeArg::Bpf, _, Some(option)) => {
            anyhow::bail!("{option} is only available in user-space mode (without --all, with --mode auto or userspace)")
        }
        (ModeArg::Bpf, _, None) | (ModeArg::Auto, true, None) => {
            Ok(Chosen::Bpf(bpf_source::start(config)?))
        }
        (ModeArg::Auto, false, Some(option)) => {
            eprintln!("pyspy-bpf: using the user-space sampler ({option} needs it)");
            Ok(Chosen::Userspace)
        }
        (ModeArg::Auto, false, None) => match bpf_source::start(config) {
            Ok(sampler) => Ok(Chosen::Bpf(sampler)),
            Err(e) => {
                eprintln!("pyspy-bpf: using the user-space sampler: {e}");
                Ok(Chosen::Userspace)
            }
        },
    }
}
