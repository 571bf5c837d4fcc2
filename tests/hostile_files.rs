//! Files the profiler writes on its own account, against hostile targets and directories: a
//! target whose name (`comm`) is a path, symlinks planted by an unprivileged user at the
//! names root would write (the default profile name, the kernel symbol cache and its
//! temporary file), a cache directory others may write, and `-o` places that cannot be
//! written (an error before anything starts, a `-- cmd` never started).
//!
//! Most of these need root (the profiler runs as root on other people's hosts; the attacks
//! are planted as `nobody` with setpriv), so outside CI they are skipped when not root.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use common::*;

const NOBODY: u32 = 65534;
const PRECIOUS: &str = "root's secret, not to be touched\n";

/// Whether a test that plants files as `nobody` and profiles as root can run: as root; in
/// CI, which runs as root, not being root fails the test.
fn can_run_as_root(test: &str) -> bool {
    root_test_can_run(test, "needs root (the attacks are planted as nobody)")
}

/// A Python 3 interpreter (the attacks do not depend on the version).
fn python3() -> Interpreter {
    let all = interpreters();
    all.iter()
        .find(|i| !i.is_py2())
        .or(all.first())
        .cloned()
        .expect("no interpreter provisioned")
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// A root-owned 0600 file holding `PRECIOUS`: what an attacker wants root to overwrite.
fn plant_victim(dir: &Path) -> PathBuf {
    let victim = dir.join("root-secret");
    std::fs::write(&victim, PRECIOUS).unwrap();
    set_mode(&victim, 0o600);
    victim
}

fn victim_untouched(victim: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(victim)?;
    ensure!(
        meta.is_file() && meta.uid() == 0 && meta.mode() & 0o777 == 0o600,
        "{}: no longer a root-owned 0600 file: {meta:?}",
        victim.display()
    );
    let bytes = std::fs::read(victim)?;
    ensure!(
        bytes == PRECIOUS.as_bytes(),
        "{} was overwritten: {} bytes, starting {:?}",
        victim.display(),
        bytes.len(),
        String::from_utf8_lossy(&bytes[..bytes.len().min(60)])
    );
    Ok(())
}

/// Run `sh -c SCRIPT sh ARGS...` as `nobody` in `dir`: the attacker planting files.
fn as_nobody_sh(dir: &Path, script: &str, args: &[&str]) -> Result<()> {
    let status = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .args(["sh", "-c", script, "sh"])
        .args(args)
        .current_dir(dir)
        .status()
        .context("setpriv")?;
    ensure!(status.success(), "as nobody: {script}: {status}");
    Ok(())
}

/// Every path under `dir` (relative), except `skip` and what is under it.
fn tree(dir: &Path, skip: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path == skip {
                continue;
            }
            found.insert(path.strip_prefix(dir).unwrap().to_path_buf());
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(path);
            }
        }
    }
    found
}

fn entries(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// `date -u` stamps (`YYYYMMDDTHHMMSSZ`) of the seconds from `from` for `count` seconds.
fn utc_stamps(from: u64, count: u64) -> Vec<String> {
    let mut date = Command::new("date")
        .args(["-u", "-f", "-", "+%Y%m%dT%H%M%SZ"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("date");
    let input: String = (from..from + count).map(|t| format!("@{t}\n")).collect();
    date.stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = date.wait_with_output().expect("date");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A file name made only of safe characters: letters, digits, `.`, `_`, `+`, `-`, not
/// starting with `.` or `-`.
fn is_safe_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_+".contains(&b))
}

/// `record --pid` without `-o` of a target named `../../x`, `/tmp/evil/y`, or a name with
/// control characters and a leading dot, from a shared working directory where `nobody`
/// planted symlinks (to a root-owned 0600 file) and earlier profiles at the default names
/// of the coming seconds: the profile lands in the working directory under a new, safe name
/// (numbered past what was planted), nothing is written anywhere else, no symlink is
/// followed, no earlier profile replaced, and a second run gets a name of its own.
#[test]
fn hostile_process_names_do_not_choose_where_the_profile_goes() {
    let test = "hostile_process_names_do_not_choose_where_the_profile_goes";
    if !can_run_as_root(test) {
        return;
    }
    let interp = python3();
    let spin = format!("spin (comm_name.py:{})", line_of("comm_name.py", "spin"));
    let root = TempDir::new("names");
    let victim = plant_victim(root.path());
    // `../../x` from the working directory is `root/a`.
    let work = root.join("a/b/work");
    std::fs::create_dir_all(&work).unwrap();
    // Shared: anyone may write it (not sticky, so the kernel's protected_symlinks does not
    // save us: the profiler must not follow the links itself).
    set_mode(&work, 0o777);
    let evil = Path::new("/tmp/evil");
    let made_evil = std::fs::create_dir(evil).is_ok();
    let evil_before = entries(evil);
    let cases: [(&[u8], &str); 3] = [
        (b"../../x", "x"),
        (b"/tmp/evil/y", "tmp_evil_y"),
        (b"\x1b[1m\n.\tz\x07", "1m_._z_"),
    ];
    let mut failures = Vec::new();
    for (i, (comm, safe)) in cases.iter().enumerate() {
        let result = (|| -> Result<()> {
            let child = interp.start("comm_name.py", &[&hex(comm)])?;
            child.wait_ready()?;
            let pid = child.pid();
            let seen = std::fs::read(format!("/proc/{pid}/comm"))?;
            ensure!(
                seen == [*comm, &b"\n"[..]].concat(),
                "the target did not take the name {comm:?}: {seen:?}"
            );
            // The default names of the next seconds, taken by nobody: a symlink to root's
            // file at the plain name, an "earlier profile" at the first numbered one.
            let stems: Vec<String> = utc_stamps(now_secs().saturating_sub(2), 40)
                .iter()
                .map(|stamp| format!("{safe}-{pid}-{stamp}"))
                .collect();
            let mut args = vec![victim.to_str().unwrap()];
            args.extend(stems.iter().map(String::as_str));
            as_nobody_sh(
                &work,
                r#"v=$1; shift
                   for n in "$@"; do
                       ln -s "$v" "$n.txt" && echo "an earlier profile" > "$n-1.txt" || exit 1
                   done"#,
                &args,
            )?;
            let before = entries(&work);
            let pid_s = pid.to_string();
            let out = run(
                pyspy_bpf()
                    .args(["record", "-d", "2", "-f", "raw", "--pid", &pid_s])
                    .current_dir(&work),
                RUN_TIMEOUT,
            )?
            .ok()?;
            let new: Vec<String> = entries(&work).difference(&before).cloned().collect();
            ensure!(
                new.len() == 1,
                "expected one new file in the working directory, found {new:?}:\n{}",
                out.describe()
            );
            let name = &new[0];
            ensure!(
                is_safe_file_name(name),
                "unsafe profile name {name:?}:\n{}",
                out.describe()
            );
            ensure!(
                stems.iter().any(|s| *name == format!("{s}-2.txt")),
                "{name:?} is not `{safe}-{pid}-TIME-2.txt` (past the planted names):\n{}",
                out.describe()
            );
            let profile = work.join(name);
            ensure!(
                out.stderr.contains(&format!("wrote {}", profile.display())),
                "stderr does not name {}:\n{}",
                profile.display(),
                out.describe()
            );
            let meta = std::fs::symlink_metadata(&profile)?;
            ensure!(meta.is_file() && meta.uid() == 0, "{name}: {meta:?}");
            let stacks = read_raw(&profile)?;
            ensure!(
                stacks.iter().any(|s| s.leaf() == Some(spin.as_str())),
                "no stack ends in {spin}: {}",
                summary(&stacks)
            );
            for stem in &stems {
                let link = work.join(format!("{stem}.txt"));
                ensure!(
                    std::fs::symlink_metadata(&link)?.file_type().is_symlink(),
                    "{} is no longer the planted symlink",
                    link.display()
                );
                let earlier = std::fs::read_to_string(work.join(format!("{stem}-1.txt")))?;
                ensure!(
                    earlier == "an earlier profile\n",
                    "{stem}-1.txt: {earlier:?}"
                );
            }
            victim_untouched(&victim)?;
            if i == 0 {
                // A second run: a new file, the first profile as it was.
                let first = std::fs::read(&profile)?;
                let before = entries(&work);
                run(
                    pyspy_bpf()
                        .args(["record", "-d", "1", "-f", "raw", "--pid", &pid_s])
                        .current_dir(&work),
                    RUN_TIMEOUT,
                )?
                .ok()?;
                let new: Vec<String> = entries(&work).difference(&before).cloned().collect();
                ensure!(
                    new.len() == 1 && new[0].starts_with(&format!("{safe}-{pid}-")),
                    "the second run did not add one profile of its own: {new:?}"
                );
                ensure!(
                    std::fs::read(&profile)? == first,
                    "the second run changed the first profile"
                );
            }
            Ok(())
        })();
        if let Err(e) = result {
            failures.push(format!("comm {comm:?}: {e:#}"));
        }
    }
    // Nothing anywhere but the working directory.
    let outside = tree(root.path(), &work);
    let expected: BTreeSet<PathBuf> = ["root-secret", "a", "a/b"]
        .iter()
        .map(PathBuf::from)
        .collect();
    let evil_after = entries(evil);
    if made_evil {
        let _ = std::fs::remove_dir(evil);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert_eq!(
        outside, expected,
        "files written outside the working directory"
    );
    assert_eq!(evil_after, evil_before, "files written in /tmp/evil");
}

/// The kernel symbol cache (`$XDG_CACHE_HOME` or `$HOME/.cache`, `pyspy-bpf/kallsyms-BOOT`)
/// under a HOME, or an XDG_CACHE_HOME, that `nobody` owns, where nobody planted symlinks to
/// a root-owned 0600 file at the cache's name and at its temporary file's
/// (`.kallsyms-PID.tmp`, PID the profiler's); and in a cache directory anyone may write. The
/// cache is not used (one warning says why), root's file is untouched, and the run still
/// names kernel frames. A private HOME, the control, gets the cache, 0600.
#[test]
fn kernel_symbol_cache_only_in_a_directory_of_our_own() {
    let test = "kernel_symbol_cache_only_in_a_directory_of_our_own";
    if !bpf_test_can_run(test) {
        return;
    }
    let interp = python3();
    let dir = TempDir::new("ksyms");
    set_mode(dir.path(), 0o755);
    let victim = plant_victim(dir.path());
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let cache_name = format!("kallsyms-{}", boot_id.trim());
    let child = interp.start("native_read_zero.py", &[]).unwrap();
    child.wait_ready().unwrap();
    let pid = child.pid().to_string();
    let out = dir.join("out.txt");
    let out_s = out.display().to_string();

    // Record with this HOME / XDG_CACHE_HOME; `plant_tmp_in`: as nobody, plant a symlink to
    // the victim at `.kallsyms-PID.tmp` there, PID the profiler's (the shell's, which then
    // execs the profiler).
    let record =
        |home: &Path, xdg: Option<&Path>, plant_tmp_in: Option<&Path>| -> Result<Outcome> {
            let plant = plant_tmp_in
                .map(|d| d.display().to_string())
                .unwrap_or_default();
            let mut cmd = Command::new("sh");
            cmd.args([
                "-c",
                r#"if [ -n "$PLANT" ]; then
                   setpriv --reuid=nobody --regid=nogroup --clear-groups \
                       ln -s "$VICTIM" "$PLANT/.kallsyms-$$.tmp" || exit 99
               fi
               exec "$@""#,
                "sh",
                env!("CARGO_BIN_EXE_pyspy-bpf"),
            ]);
            cmd.args([
                "record",
                "--mode",
                "bpf",
                "--native",
                "--native-all",
                "-d",
                "2",
                "-f",
                "raw",
                "-o",
                &out_s,
                "--pid",
                &pid,
            ]);
            cmd.env("PLANT", plant)
                .env("VICTIM", &victim)
                .env("HOME", home)
                .env("RUST_LOG", "warn")
                .env_remove("XDG_CACHE_HOME");
            if let Some(xdg) = xdg {
                cmd.env("XDG_CACHE_HOME", xdg);
            }
            let outcome = run(&mut cmd, RUN_TIMEOUT)?.ok()?;
            let stacks = read_raw(&out)?;
            let named = |f: &str| f.ends_with("_[k]") && !f.starts_with("0x");
            ensure!(
                stacks.iter().any(|s| s.frames.iter().any(|f| named(f))),
                "no named kernel frame: {}\n{}",
                summary(&stacks),
                outcome.describe()
            );
            Ok(outcome)
        };
    let warned = |o: &Outcome, why: &str| -> Result<()> {
        let line = o
            .stderr
            .lines()
            .find(|l| l.contains("kernel symbol cache") && l.contains("not used"))
            .with_context(|| format!("no warning that the cache is not used:\n{}", o.describe()))?;
        ensure!(
            line.contains(why),
            "the warning does not say {why:?}: {line}"
        );
        Ok(())
    };

    // The control: a private HOME gets the cache, ours, 0600, without a warning.
    let home = dir.join("good-home");
    std::fs::create_dir(&home).unwrap();
    set_mode(&home, 0o700);
    let o = record(&home, None, None).unwrap();
    assert!(!o.stderr.contains("symbol cache"), "{}", o.describe());
    let cache = home.join(".cache/pyspy-bpf").join(&cache_name);
    let meta = std::fs::symlink_metadata(&cache)
        .unwrap_or_else(|e| panic!("no cache at {}: {e}\n{}", cache.display(), o.describe()));
    assert!(meta.is_file() && meta.uid() == 0 && meta.mode() & 0o777 == 0o600);

    let mut failures = Vec::new();
    // HOME, then XDG_CACHE_HOME, owned by nobody, with symlinks planted by nobody.
    for xdg in [false, true] {
        let result = (|| -> Result<()> {
            let theirs = dir.join(if xdg { "nobody-xdg" } else { "nobody-home" });
            std::fs::create_dir(&theirs)?;
            std::os::unix::fs::chown(&theirs, Some(NOBODY), Some(NOBODY))?;
            let cache_dir = theirs.join(if xdg { "pyspy-bpf" } else { ".cache/pyspy-bpf" });
            as_nobody_sh(
                &theirs,
                r#"mkdir -p "$1" && ln -s "$2" "$1/$3""#,
                &[
                    cache_dir.to_str().unwrap(),
                    victim.to_str().unwrap(),
                    &cache_name,
                ],
            )?;
            let o = match xdg {
                false => record(&theirs, None, Some(&cache_dir))?,
                true => record(&home, Some(&theirs), Some(&cache_dir))?,
            };
            victim_untouched(&victim)?;
            warned(&o, "uid 65534")?;
            for entry in entries(&cache_dir) {
                let path = cache_dir.join(&entry);
                ensure!(
                    std::fs::symlink_metadata(&path)?.file_type().is_symlink()
                        && (entry == cache_name || entry.starts_with(".kallsyms-")),
                    "{} is not one of the planted symlinks",
                    path.display()
                );
            }
            ensure!(
                entries(&cache_dir).len() == 2,
                "{}: {:?}",
                cache_dir.display(),
                entries(&cache_dir)
            );
            Ok(())
        })();
        if let Err(e) = result {
            failures.push(format!("XDG_CACHE_HOME={xdg}: {e:#}"));
        }
    }
    // A cache directory anyone may write, in a HOME of ours: not used.
    let result = (|| -> Result<()> {
        let open_home = dir.join("open-home");
        let open = open_home.join(".cache/pyspy-bpf");
        std::fs::create_dir_all(&open)?;
        set_mode(&open_home, 0o700);
        set_mode(&open, 0o777);
        let o = record(&open_home, None, None)?;
        warned(&o, "mode 777")?;
        ensure!(entries(&open).is_empty(), "{:?}", entries(&open));
        Ok(())
    })();
    if let Err(e) = result {
        failures.push(format!("0777 cache directory: {e:#}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// `-o` where nothing can be written (a missing directory, a file as directory, a
/// directory as file, /proc), and, as `nobody`, a directory of root's, with `-o` or by
/// default in the current directory: a clear error and a non-zero exit before anything
/// starts — the `-- cmd`, which would create a marker file, never runs.
#[test]
fn unwritable_output_fails_before_the_program_starts() {
    let test = "unwritable_output_fails_before_the_program_starts";
    if !can_run_as_root(test) {
        return;
    }
    let dir = TempDir::new("unwritable");
    set_mode(dir.path(), 0o755);
    // Writable by nobody too, so that a started command could leave its marker.
    let markers = dir.join("markers");
    std::fs::create_dir(&markers).unwrap();
    set_mode(&markers, 0o777);
    let a_file = dir.join("a-file");
    std::fs::write(&a_file, "").unwrap();
    let roots = dir.join("roots");
    std::fs::create_dir(&roots).unwrap();
    set_mode(&roots, 0o755);
    let bin = dir.join("pyspy-bpf");
    std::fs::copy(env!("CARGO_BIN_EXE_pyspy-bpf"), &bin).unwrap();
    set_mode(&bin, 0o755);

    let check =
        |label: &str, mut cmd: Command, output: Option<&str>, words: &[&str]| -> Result<()> {
            let marker = markers.join(label);
            let marker_s = marker.display().to_string();
            let mut args = vec!["record", "-f", "raw", "-d", "1"];
            if let Some(output) = output {
                args.extend(["-o", output]);
            }
            args.extend(["--", "sh", "-c", "touch \"$0\"; sleep 30", &marker_s]);
            cmd.args(&args);
            let o = run(&mut cmd, RUN_TIMEOUT)?.no_panic()?;
            ensure!(!o.status.success(), "expected a failure:\n{}", o.describe());
            let line = o
                .error_line()
                .with_context(|| format!("no `Error:` line:\n{}", o.describe()))?;
            for w in words {
                ensure!(
                    line.contains(w),
                    "the error does not name {w:?}:\n{}",
                    o.describe()
                );
            }
            ensure!(
                !marker.exists(),
                "the command was started:\n{}",
                o.describe()
            );
            ensure!(
                !o.stderr.contains("sampling"),
                "sampling started:\n{}",
                o.describe()
            );
            Ok(())
        };
    let as_root = || {
        let mut cmd = Command::new(&bin);
        cmd.current_dir(dir.path());
        cmd
    };
    let as_nobody = |cwd: &Path| {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(&bin)
            .current_dir(cwd);
        cmd
    };
    let missing = dir.join("missing/x.txt").display().to_string();
    let under_file = a_file.join("x.txt").display().to_string();
    let at_dir = roots.display().to_string();
    let in_roots = roots.join("x.txt").display().to_string();
    let cases: Vec<(&str, Command, Option<&str>, Vec<&str>)> = vec![
        (
            "missing-dir",
            as_root(),
            Some(&missing),
            vec![missing.as_str(), "No such file"],
        ),
        (
            "under-a-file",
            as_root(),
            Some(&under_file),
            vec![under_file.as_str(), "Not a directory"],
        ),
        (
            "a-directory",
            as_root(),
            Some(&at_dir),
            vec![at_dir.as_str(), "is a directory"],
        ),
        (
            "proc",
            as_root(),
            Some("/proc/pyspy-bpf-test.txt"),
            vec!["/proc/pyspy-bpf-test.txt"],
        ),
        (
            "nobody-o",
            as_nobody(&markers),
            Some(&in_roots),
            vec![in_roots.as_str(), "Permission denied"],
        ),
        (
            "nobody-default",
            as_nobody(&roots),
            None,
            vec!["-o", "Permission denied"],
        ),
    ];
    let mut failures = Vec::new();
    for (label, cmd, output, words) in cases {
        if let Err(e) = check(label, cmd, output, &words) {
            failures.push(format!("{label}: {e:#}"));
        }
    }
    assert!(entries(&roots).is_empty(), "{:?}", entries(&roots));
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// `-o PATH` is the user's choice: an existing file is replaced (through a new file renamed
/// onto it: nothing left beside it), a symlink and `/dev/stdout` are written through.
#[test]
fn explicit_output_is_written_as_asked() {
    let interp = python3();
    let spin = format!("spin (comm_name.py:{})", line_of("comm_name.py", "spin"));
    let dir = TempDir::new("explicit");
    let child = interp.start("comm_name.py", &[&hex(b"explicit")]).unwrap();
    child.wait_ready().unwrap();
    let pid = child.pid().to_string();
    let record = |output: &str| -> Result<Outcome> {
        run(
            pyspy_bpf()
                .args([
                    "record", "-d", "2", "-f", "raw", "-o", output, "--pid", &pid,
                ])
                .current_dir(dir.path()),
            RUN_TIMEOUT,
        )?
        .ok()
    };
    let has_spin = |text: &str| -> Result<()> {
        let stacks = parse_raw(text)?;
        if !stacks.iter().any(|s| s.leaf() == Some(spin.as_str())) {
            bail!("no stack ends in {spin}: {}", summary(&stacks));
        }
        Ok(())
    };
    // An existing file, given relative to the working directory.
    let existing = dir.join("existing.txt");
    std::fs::write(&existing, "old contents\n").unwrap();
    record("existing.txt").unwrap();
    has_spin(&std::fs::read_to_string(&existing).unwrap()).unwrap();
    assert_eq!(
        entries(dir.path()),
        BTreeSet::from(["existing.txt".to_string()]),
        "a temporary file was left behind"
    );
    // A symlink to a file: the file gets the profile, the link stays.
    let real = dir.join("real.txt");
    std::fs::write(
        &real,
        "old contents, longer than nothing at all\n".repeat(100),
    )
    .unwrap();
    let link = dir.join("link.txt");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    record(link.to_str().unwrap()).unwrap();
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    let text = std::fs::read_to_string(&real).unwrap();
    assert!(!text.contains("old contents"), "not replaced whole: {text}");
    has_spin(&text).unwrap();
    // A pipe, through /dev/stdout.
    let o = record("/dev/stdout").unwrap();
    has_spin(&o.stdout).unwrap();
}
