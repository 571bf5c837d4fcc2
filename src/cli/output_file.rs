//! Where `record` writes its profile. The destination is claimed before anything starts, so
//! that a place that cannot be written fails the run at once (before a `-- cmd` is
//! started), not after the recording; the profile is then written into what was claimed,
//! never by opening a name again.
//!
//! A default name is built only from trusted parts: the target's name made safe
//! (`safe_fs::safe_name`: any process can set its `comm` to `../../x`), its pid, and a UTC
//! timestamp, numbered if taken; it is created new in the current directory, never
//! following a symlink and never over an earlier profile.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};

use super::TargetArgs;
use crate::output::Format;
use crate::process::proc;
use crate::safe_fs::{safe_name, Dir, NewFile};

/// Mode of a new profile, before the umask (as `File::create`).
const PROFILE_MODE: u32 = 0o666;

/// The claimed destination of the profile.
pub(super) struct Output {
    claimed: Claimed,
    /// Its path, for messages.
    shown: PathBuf,
}

enum Claimed {
    /// A new file under a default name in the current directory.
    New(NewFile),
    /// `-o PATH` naming a regular file or nothing yet: a new file beside it, renamed onto it
    /// once written (the old file stays whole until then).
    Replace { temp: NewFile, name: OsString },
    /// `-o PATH` naming a symlink, a device or a pipe (`/dev/stdout`): written through, as a
    /// shell redirection would.
    Through(File),
}

impl Output {
    /// Claim `explicit` (`-o`), else a new default name in the current directory.
    pub(super) fn claim(
        explicit: Option<&Path>,
        target: &TargetArgs,
        format: Format,
    ) -> anyhow::Result<Output> {
        match explicit {
            Some(path) => claim_explicit(path),
            None => {
                let stem = default_stem(target, SystemTime::now());
                let dir = Dir::current().context("cannot open the current directory")?;
                let file = dir
                    .create_unique(&stem, format.extension(), PROFILE_MODE)
                    .with_context(|| {
                        format!(
                            "cannot create the profile in {} (choose another place with -o)",
                            dir.path().display()
                        )
                    })?;
                let shown = file.path();
                Ok(Output {
                    claimed: Claimed::New(file),
                    shown,
                })
            }
        }
    }

    /// Claim a path the user named (`-o`, `--markdown FILE`): checked now that it can be
    /// written; written through a new file renamed onto it.
    pub(super) fn explicit(path: &Path) -> anyhow::Result<Output> {
        claim_explicit(path)
    }

    pub(super) fn path(&self) -> &Path {
        &self.shown
    }

    /// Write the profile with `write` into the claimed destination. A failure leaves no
    /// partial profile behind (a claimed new file is removed), except when renaming a
    /// written profile onto `-o PATH` fails: then the error says where it is.
    pub(super) fn write(
        self,
        write: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let shown = self.shown;
        let context = || format!("writing {}", shown.display());
        match self.claimed {
            Claimed::New(mut file) => {
                write(file.file()).with_context(context)?;
                file.keep();
            }
            Claimed::Replace { mut temp, name } => {
                write(temp.file()).with_context(context)?;
                if let Err(e) = temp.rename_onto(&name) {
                    temp.keep();
                    bail!(
                        "cannot put the profile in place ({e}); it was written to {}",
                        temp.path().display()
                    );
                }
            }
            Claimed::Through(mut file) => {
                // A regular file behind a symlink is replaced whole (it was not truncated
                // when claimed: a failed run leaves it as it was).
                if file.metadata().is_ok_and(|m| m.is_file()) {
                    file.set_len(0).with_context(context)?;
                }
                write(&mut file).with_context(context)?;
            }
        }
        Ok(())
    }
}

/// `-o PATH`: the user's choice, which may replace an existing file; checked now that it can
/// be written.
fn claim_explicit(path: &Path) -> anyhow::Result<Output> {
    let cannot = || format!("cannot write the profile to {}", path.display());
    let Some(name) = path.file_name() else {
        bail!("{}: not a file name", path.display());
    };
    let claimed = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => bail!("{}: is a directory", path.display()),
        Ok(meta) if !meta.is_file() => {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, PROFILE_MODE);
            let file = options.open(path).with_context(cannot)?;
            Claimed::Through(file)
        }
        Ok(_) => replace(path, name.to_os_string()).with_context(cannot)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            replace(path, name.to_os_string()).with_context(cannot)?
        }
        Err(e) => return Err(e).with_context(cannot),
    };
    Ok(Output {
        claimed,
        shown: path.to_path_buf(),
    })
}

/// A new temporary file in `path`'s directory, to be renamed onto `name`.
fn replace(path: &Path, name: OsString) -> anyhow::Result<Claimed> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let temp = Dir::open(dir)?.create_temp("pyspy-bpf", PROFILE_MODE)?;
    Ok(Claimed::Replace { temp, name })
}

/// The default name without its extension: `NAME-PID-TIME` for `--pid` (NAME from the
/// target's `comm`, made safe), `PROGRAM-TIME` for `-- PROGRAM ...` (not started yet, so no
/// pid), `pyspy-bpf-all-TIME` for `--all`; TIME is UTC, `20261202T162204Z`.
fn default_stem(target: &TargetArgs, now: SystemTime) -> String {
    let stamp = utc_stamp(now);
    if let Some(pid) = target.pid {
        let name = proc::comm(pid).ok().and_then(|comm| safe_name(&comm));
        let name = name.unwrap_or_else(|| "python".to_string());
        return format!("{name}-{pid}-{stamp}");
    }
    if let Some(program) = target.command.first() {
        let base = Path::new(program)
            .file_name()
            .map(|b| b.to_string_lossy().into_owned());
        let name = base.and_then(|b| safe_name(&b));
        let name = name.unwrap_or_else(|| "python".to_string());
        return format!("{name}-{stamp}");
    }
    format!("pyspy-bpf-all-{stamp}")
}

/// `now` in UTC as `YYYYMMDDTHHMMSSZ` (ISO 8601's basic format: no `:` in file names).
fn utc_stamp(now: SystemTime) -> String {
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The (year, month, day) of a count of days since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_dates() {
        let at = |secs| utc_stamp(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "19700101T000000Z");
        assert_eq!(at(951_782_400), "20000229T000000Z");
        assert_eq!(at(1_798_848_000), "20270102T000000Z");
        assert_eq!(at(4_102_444_799), "20991231T235959Z");
    }

    #[test]
    fn default_names_are_built_from_trusted_parts() {
        let now = UNIX_EPOCH + Duration::from_secs(951_782_400);
        let target = |pid, command: &[&str], all| TargetArgs {
            pid,
            all,
            command: command.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(
            default_stem(&target(None, &["../../bin/python3.12", "x.py"], false), now),
            "python3.12-20000229T000000Z"
        );
        assert_eq!(
            default_stem(&target(None, &["/"], false), now),
            "python-20000229T000000Z"
        );
        assert_eq!(
            default_stem(&target(None, &[], true), now),
            "pyspy-bpf-all-20000229T000000Z"
        );
        // Our own comm, as a target's would be read.
        let me = std::process::id();
        let comm = proc::comm(me).unwrap();
        let stem = default_stem(&target(Some(me), &[], false), now);
        assert_eq!(
            stem,
            format!("{}-{me}-20000229T000000Z", safe_name(&comm).unwrap())
        );
    }
}
