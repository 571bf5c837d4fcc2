//! Choosing the sampler: `--mode auto|bpf|userspace`. `auto` uses BPF when the kernel and
//! privileges allow and the options make sense for it, and otherwise falls back to the
//! user-space sampler with one line saying why. Off Linux there is only the user-space
//! sampler: `auto` is user space, and what needs BPF is refused (`refuse_off_linux`).

#[cfg(target_os = "linux")]
use crate::bpf::BpfSampler;
#[cfg(target_os = "linux")]
use crate::sampler::bpf::{self as bpf_source, BpfSourceConfig};

/// `--event`: a perf event on Linux; off Linux only its name, which must be the default.
#[cfg(target_os = "linux")]
pub type EventArg = crate::bpf::PerfEventKind;
#[cfg(not(target_os = "linux"))]
pub type EventArg = String;

/// The perf event used when `--event` is not given.
pub const DEFAULT_EVENT: &str = "cpu-clock";

/// Whether `--event` was left at its default (off Linux nothing else is allowed).
#[cfg(not(target_os = "linux"))]
pub fn is_default_event(event: &EventArg) -> bool {
    event == DEFAULT_EVENT
}

/// On Linux every event is allowed, so none needs refusing: as good as the default.
#[cfg(target_os = "linux")]
pub fn is_default_event(_event: &EventArg) -> bool {
    true
}

/// Off Linux: fail with one line for the first option given (`true`) that needs Linux.
pub fn refuse_off_linux(options: &[(&str, bool)]) -> anyhow::Result<()> {
    refuse_unless_linux(cfg!(target_os = "linux"), options)
}

fn refuse_unless_linux(on_linux: bool, options: &[(&str, bool)]) -> anyhow::Result<()> {
    match options.iter().find(|(_, given)| *given) {
        Some((option, _)) if !on_linux => anyhow::bail!(
            "{option} needs Linux (the BPF sampler, or native unwinding); on {} only the user-space sampler runs",
            std::env::consts::OS
        ),
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    Auto,
    Bpf,
    Userspace,
}

/// What was chosen. The BPF sampler is already started (so its errors are known).
#[cfg(target_os = "linux")]
pub enum Chosen {
    Bpf(BpfSampler),
    Userspace,
}

/// Pick the sampler. `userspace_only` names an option that only the user-space sampler
/// implements (or is `None`); `all` is `--all`, which only BPF can do.
#[cfg(target_os = "linux")]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_only_options_are_refused_elsewhere_in_one_line() {
        let options = [("--all", false), ("--native", true), ("--event", true)];
        let e = refuse_unless_linux(false, &options)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--native needs Linux"), "{e}");
        assert!(!e.contains('\n'));
        assert!(refuse_unless_linux(true, &options).is_ok());
        assert!(refuse_unless_linux(false, &[("--all", false)]).is_ok());
    }
}
