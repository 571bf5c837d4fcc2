//! `--native-stack-size`: how many bytes of each thread's stack `--native` copies for the
//! unwinder. Parsed here (bytes, or a K/KiB/M/MiB suffix), then checked against the sampler
//! that will copy it: the BPF program holds at most `bpf::MAX_USER_STACK_COPY` per sample, the
//! user-space sampler copies from a paused thread and only needs a sane bound. (`--native` is
//! Linux-only: elsewhere only the parsing is compiled, so the command line reads the same.)

#[cfg(target_os = "linux")]
use anyhow::bail;

#[cfg(target_os = "linux")]
use crate::bpf::MAX_USER_STACK_COPY;
#[cfg(target_os = "linux")]
use crate::native::unwind::DEFAULT_STACK_BYTES;
#[cfg(target_os = "linux")]
use crate::sampler::bpf::DEFAULT_STACK_COPY;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// The smallest copy: one page. The BPF program copies whole pages anyway, and less than a
/// page does not hold the few frames nearest the leaf.
#[cfg(target_os = "linux")]
pub const MIN_STACK_BYTES: usize = 4 * 1024;
/// The largest copy in user space: eight times the usual 8 MiB stack limit. A copy ends where
/// the stack's mapping ends, so a larger bound would buy nothing but a larger buffer.
#[cfg(target_os = "linux")]
pub const MAX_USERSPACE_STACK_BYTES: usize = 64 * 1024 * 1024;

/// A size as given on the command line, not yet checked against a sampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackSize(pub u64);

/// Which sampler copies the stack.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copier {
    Bpf,
    Userspace,
}

/// `65536`, `64K`, `64KiB`, `1M`, `1MiB` (suffixes in any case; K and M are 1024 and 1024²).
pub fn parse(s: &str) -> Result<StackSize, String> {
    let bad = || format!("{s:?} is not a size in bytes (e.g. 65536, 64K, 64KiB, 1M, 1MiB)");
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(digits_end);
    if digits.is_empty() {
        return Err(bad());
    }
    let unit = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => KIB,
        "m" | "mib" => MIB,
        _ => return Err(bad()),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .map(StackSize)
        .ok_or_else(bad)
}

/// The bytes to copy: `size`, or the copier's default, if it is in the copier's range.
#[cfg(target_os = "linux")]
pub fn bytes_for(size: Option<StackSize>, copier: Copier) -> anyhow::Result<usize> {
    let (default, max, who) = match copier {
        Copier::Bpf => (DEFAULT_STACK_COPY, MAX_USER_STACK_COPY, "the BPF sampler"),
        Copier::Userspace => (
            DEFAULT_STACK_BYTES,
            MAX_USERSPACE_STACK_BYTES,
            "the user-space sampler",
        ),
    };
    let Some(StackSize(bytes)) = size else {
        return Ok(default);
    };
    if bytes < MIN_STACK_BYTES as u64 || bytes > max as u64 {
        bail!(
            "--native-stack-size {}: {who} copies {} to {} of stack per thread",
            show(bytes),
            show(MIN_STACK_BYTES as u64),
            show(max as u64),
        );
    }
    Ok(bytes as usize)
}

/// `60K`, `1M`, or a plain byte count when it is not a whole number of KiB.
#[cfg(target_os = "linux")]
fn show(bytes: u64) -> String {
    match bytes {
        b if b >= MIB && b % MIB == 0 => format!("{}M", b / MIB),
        b if b >= KIB && b % KIB == 0 => format!("{}K", b / KIB),
        b => format!("{b} bytes"),
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn parses_bytes_and_suffixes() {
        assert_eq!(parse("65536"), Ok(StackSize(65536)));
        assert_eq!(parse("16K"), Ok(StackSize(16 * 1024)));
        assert_eq!(parse("16kib"), Ok(StackSize(16 * 1024)));
        assert_eq!(parse("2M"), Ok(StackSize(2 << 20)));
        assert_eq!(parse("2MiB"), Ok(StackSize(2 << 20)));
        assert_eq!(parse(" 8k "), Ok(StackSize(8 * 1024)));
        assert_eq!(parse("0"), Ok(StackSize(0)));
    }

    #[test]
    fn rejects_what_is_not_a_size() {
        for s in [
            "",
            "K",
            "-1",
            "1.5K",
            "16 K",
            "16KB",
            "16G",
            "abc",
            "0x100",
            "99999999999999999999",
            "18446744073709551615M",
        ] {
            assert!(parse(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn defaults_and_ranges_follow_the_copier() {
        assert_eq!(bytes_for(None, Copier::Bpf).unwrap(), DEFAULT_STACK_COPY);
        assert_eq!(
            bytes_for(None, Copier::Userspace).unwrap(),
            DEFAULT_STACK_BYTES
        );
        let max_bpf = StackSize(MAX_USER_STACK_COPY as u64);
        assert_eq!(
            bytes_for(Some(max_bpf), Copier::Bpf).unwrap(),
            MAX_USER_STACK_COPY
        );
        let above_bpf = StackSize(MAX_USER_STACK_COPY as u64 + 4096);
        let e = bytes_for(Some(above_bpf), Copier::Bpf).unwrap_err();
        assert!(e.to_string().contains("BPF"), "{e}");
        assert!(bytes_for(Some(above_bpf), Copier::Userspace).is_ok());
        for copier in [Copier::Bpf, Copier::Userspace] {
            assert!(bytes_for(Some(StackSize(0)), copier).is_err());
            assert!(bytes_for(Some(StackSize(100)), copier).is_err());
            assert!(bytes_for(Some(StackSize(u64::MAX)), copier).is_err());
        }
        let big = StackSize(MAX_USERSPACE_STACK_BYTES as u64 + 1);
        assert!(bytes_for(Some(big), Copier::Userspace).is_err());
    }

    #[test]
    fn shows_sizes_in_the_units_they_were_given() {
        assert_eq!(show(60 * 1024), "60K");
        assert_eq!(show(64 << 20), "64M");
        assert_eq!(show(100), "100 bytes");
        assert_eq!(show(1536), "1536 bytes");
    }
}
