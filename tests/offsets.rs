//! The offsets table against the real thing:
//! (a) every provisioned series' row equals what tools/offsets/probe.c computes with the C
//!     compiler from that interpreter's own headers (and the `_Py_DebugOffsets` layouts in
//!     src/python/debug_offsets.rs equal the headers' struct);
//! (b) for 3.13+, each provisioned interpreter's live `_Py_DebugOffsets` (read from its own
//!     `_PyRuntime` through ctypes) parses and changes nothing in the row.
//! In CI (`CI` set) a missing interpreter or C compiler fails these tests instead of skipping.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use common::Interpreter;
use pyspy_bpf::model::PyVersion;
use pyspy_bpf::python::debug_offsets::{
    apply_debug_offsets, layout_offset, layout_size, parse_debug_offsets, DEBUG_OFFSETS_READ_LEN,
};
use pyspy_bpf::python::offsets::offsets_for;
use pyspy_bpf::python::{locals, objects};

fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// Skip (locally) or fail (in CI) a test whose prerequisites are missing.
fn missing(what: &str) {
    if in_ci() {
        panic!("{what} (CI must not skip these tests)");
    }
    eprintln!("skipping: {what}");
}

/// "3.14.10" -> 3.14.10; "3.15.0a2" -> 3.15.0.
fn parse_version(text: &str) -> PyVersion {
    let mut parts = text.split('.').map(|p| {
        let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
        digits
            .parse::<u8>()
            .unwrap_or_else(|_| panic!("bad version {text:?}"))
    });
    let major = parts
        .next()
        .unwrap_or_else(|| panic!("bad version {text:?}"));
    let minor = parts
        .next()
        .unwrap_or_else(|| panic!("bad version {text:?}"));
    PyVersion::new(major, minor, parts.next().unwrap_or(0))
}

/// One interpreter per series, with the probe.sh arguments that compile the probe against
/// its headers: a provisioned series by name (the flavours of a series share their
/// headers, listed in the provisioning index), else a pyenv build by its install prefix
/// (`--prefix`; pyenv's builds are the only check of the 3.6, 3.7, 3.8, 3.10 and 3.12 rows).
fn series_to_probe() -> Vec<(Interpreter, Vec<String>)> {
    let all = common::interpreters();
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for interp in all
        .iter()
        .filter(|i| i.flavour != "system" && i.flavour != "pyenv")
    {
        if !seen.contains(&interp.series) {
            seen.push(interp.series.clone());
            out.push((interp.clone(), vec![interp.series.clone()]));
        }
    }
    for interp in all.iter().filter(|i| i.flavour == "pyenv") {
        let prefix = interp.path.parent().and_then(|bin| bin.parent());
        if let (false, Some(prefix)) = (seen.contains(&interp.series), prefix) {
            seen.push(interp.series.clone());
            let prefix = prefix.display().to_string();
            out.push((interp.clone(), vec!["--prefix".into(), prefix]));
        }
    }
    out
}

fn probe_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/offsets/probe.sh")
}

fn have_compiler() -> bool {
    let cc = std::env::var("CC").unwrap_or_else(|_| "gcc".into());
    Command::new(cc)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Run the probe (`args` as for probe.sh): `name -> value` ("none" where the version lacks
/// the field).
fn probe(args: &[String]) -> BTreeMap<String, String> {
    let out = Command::new("bash")
        .arg(probe_script())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run probe.sh {args:?}: {e}"));
    assert!(
        out.status.success(),
        "probe.sh {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("probe output is UTF-8")
        .lines()
        .filter_map(|l| {
            l.split_once(' ')
                .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        })
        .collect()
}

fn number(text: &str) -> u64 {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    }
    .unwrap_or_else(|_| panic!("probe printed a non-number: {text:?}"))
}

#[test]
fn table_matches_the_real_headers() {
    let series = series_to_probe();
    if series.is_empty() {
        return missing("no provisioned interpreters (run tools/pythons/provision)");
    }
    if !have_compiler() {
        return missing("no C compiler to build tools/offsets/probe.c");
    }
    let mut problems = Vec::new();
    for (interp, probe_args) in &series {
        let version = parse_version(&interp.version);
        let row =
            offsets_for(version).unwrap_or_else(|| panic!("no offsets row for {}", interp.label()));
        let probed = probe(probe_args);
        let label = &interp.label();

        let hex = number(&probed["version_hex"]);
        assert_eq!(
            ((hex >> 24) as u8, (hex >> 16) as u8),
            version.minor_series(),
            "{label}: probe compiled against other headers"
        );

        // Every field of the row, against the compiler's offsetof/sizeof.
        let fields = row.fields();
        for (name, value) in &fields {
            let want = match probed.get(*name) {
                Some(v) if v == "none" => None,
                // In no header of this version (private to a .c file): the row must have a
                // value, which tests/thread_names.rs proves against the live interpreters.
                Some(v) if v == "private" => {
                    if value.is_none() {
                        problems.push(format!(
                            "{label}: {name} exists (privately) in this version, the table says None"
                        ));
                    }
                    continue;
                }
                Some(v) => Some(number(v)),
                None => {
                    problems.push(format!("{label}: probe does not print {name}"));
                    continue;
                }
            };
            if want != *value {
                problems.push(format!(
                    "{label}: {name} is {value:?} in the table, {want:?} in the headers"
                ));
            }
        }
        // And nothing the probe knows is missing from the row.
        for name in probed.keys() {
            let known =
                name == "version_hex" || name.starts_with("check_") || name.starts_with("debug");
            if !known && !fields.iter().any(|(f, _)| f == name) {
                problems.push(format!(
                    "{label}: probe prints {name}, which PyOffsets lacks"
                ));
            }
        }

        // The walker decodes PyASCIIObject.state with fixed bit positions.
        if version.major == 3 {
            for (check, want) in [
                ("check_unicode_kind_shift", 2),
                ("check_unicode_compact_bit", 5),
                ("check_unicode_ascii_bit", 6),
            ] {
                let got = probed.get(check).map(|v| number(v));
                if got != Some(want) {
                    problems.push(format!(
                        "{label}: {check} is {got:?}, the walker assumes {want}"
                    ));
                }
            }
        }

        // Constants src/python/objects.rs assumes, where the version has them; the first
        // version listed must print the check.
        let since = |v: (u8, u8)| version.minor_series() >= v;
        for (check, want, required) in [
            ("check_long_shift", u64::from(objects::LONG_SHIFT), true),
            ("check_digit_size", 4, true),
            (
                "check_tpflags_long_subclass",
                objects::TPFLAGS_LONG_SUBCLASS,
                true,
            ),
            (
                "check_tpflags_dict_subclass",
                objects::TPFLAGS_DICT_SUBCLASS,
                true,
            ),
            (
                "check_tpflags_unicode_subclass",
                objects::TPFLAGS_UNICODE_SUBCLASS,
                true,
            ),
            (
                "check_tpflags_bytes_subclass",
                objects::TPFLAGS_BYTES_SUBCLASS,
                true,
            ),
            (
                "check_tpflags_int_subclass",
                objects::TPFLAGS_INT_SUBCLASS,
                version.major == 2,
            ),
            (
                "check_tpflags_managed_dict",
                objects::TPFLAGS_MANAGED_DICT,
                since((3, 11)),
            ),
            (
                "check_tpflags_inline_values",
                objects::TPFLAGS_INLINE_VALUES,
                since((3, 13)),
            ),
            (
                "check_dict_keys_general",
                u64::from(objects::DICT_KEYS_GENERAL),
                since((3, 11)),
            ),
            (
                "check_dict_unicode_entry_key",
                objects::UNICODE_ENTRY_KEY,
                since((3, 11)),
            ),
            (
                "check_dict_unicode_entry_value",
                objects::UNICODE_ENTRY_VALUE,
                since((3, 11)),
            ),
            (
                "check_long_non_size_bits",
                u64::from(objects::LONG_NON_SIZE_BITS),
                since((3, 12)),
            ),
            (
                "check_long_sign_mask",
                objects::LONG_SIGN_MASK,
                since((3, 12)),
            ),
            (
                "check_tpflags_list_subclass",
                objects::TPFLAGS_LIST_SUBCLASS,
                true,
            ),
            (
                "check_tpflags_tuple_subclass",
                objects::TPFLAGS_TUPLE_SUBCLASS,
                true,
            ),
            (
                "check_co_fast_local",
                u64::from(locals::CO_FAST_LOCAL),
                since((3, 11)),
            ),
            (
                "check_co_fast_cell",
                u64::from(locals::CO_FAST_CELL),
                since((3, 11)),
            ),
            (
                "check_co_fast_free",
                u64::from(locals::CO_FAST_FREE),
                since((3, 11)),
            ),
            (
                "check_co_fast_hidden",
                u64::from(locals::CO_FAST_HIDDEN),
                since((3, 13)),
            ),
        ] {
            match probed.get(check).map(|v| number(v)) {
                Some(got) if got != want => problems.push(format!(
                    "{label}: {check} is {got}, src/python/objects.rs assumes {want}"
                )),
                None if required => problems.push(format!("{label}: probe does not print {check}")),
                _ => {}
            }
        }

        // Locals in 3.14+ are `_PyStackRef`s: masking the tag bits must turn their null into 0.
        if let Some(null) = probed.get("check_stackref_null_bits").map(|v| number(v)) {
            if null & !row.executable_tag_mask != 0 {
                problems.push(format!(
                    "{label}: PyStackRef_NULL is {null:#x}, not null once masked with {:#x}",
                    row.executable_tag_mask
                ));
            }
        } else if since((3, 14)) {
            problems.push(format!(
                "{label}: probe does not print check_stackref_null_bits"
            ));
        }

        // The `_Py_DebugOffsets` layout we parse with, against the header's struct.
        if version >= PyVersion::new(3, 13, 0) {
            let size = probed.get("debug_size").map(|v| number(v) as usize);
            if size != layout_size(version) {
                problems.push(format!(
                    "{label}: sizeof(_Py_DebugOffsets) is {size:?}, layout says {:?}",
                    layout_size(version)
                ));
            }
            for (name, value) in probed.iter().filter(|(k, _)| k.starts_with("debug.")) {
                let path = &name["debug.".len()..];
                let ours = match path.split_once('.') {
                    Some((section, field)) => layout_offset(version, section, field),
                    None if path == "version" => Some(8),
                    None if path == "free_threaded" => Some(16),
                    None => None,
                };
                if ours != Some(number(value) as usize) {
                    problems.push(format!("{label}: _Py_DebugOffsets.{path} is at {value} in the header, {ours:?} in our layout"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "offsets table disagrees with the headers:\n{}",
        problems.join("\n")
    );
}

/// Python that prints the first `len` bytes of its own `_PyRuntime`, hex-encoded. ctypes'
/// `pythonapi` is the process's global symbol scope, so this works for the static binary
/// (which exports its symbols) and for the libpython-linked one alike.
fn dump_runtime_script(len: usize) -> String {
    format!(
        "import ctypes, sys\n\
         rt = ctypes.c_char.in_dll(ctypes.pythonapi, '_PyRuntime')\n\
         sys.stdout.write(ctypes.string_at(ctypes.addressof(rt), {len}).hex())\n"
    )
}

fn unhex(text: &str) -> Vec<u8> {
    let pair = |p: &[u8]| {
        let p = std::str::from_utf8(p).ok().filter(|p| p.len() == 2);
        p.and_then(|p| u8::from_str_radix(p, 16).ok())
            .unwrap_or_else(|| panic!("not hex: {text:?}"))
    };
    text.trim().as_bytes().chunks(2).map(pair).collect()
}

#[test]
fn table_matches_live_debug_offsets() {
    let modern: Vec<Interpreter> = common::interpreters()
        .into_iter()
        .filter(|i| parse_version(&i.version) >= PyVersion::new(3, 13, 0))
        .collect();
    if modern.is_empty() {
        // Only a failure when nothing restricted the run to older series.
        if std::env::var_os("PYSPY_TEST_ONLY").is_none() {
            missing("no 3.13+ interpreter to read _Py_DebugOffsets from");
        }
        return;
    }
    let mut problems = Vec::new();
    for interp in &modern {
        let version = parse_version(&interp.version);
        let out = Command::new(&interp.path)
            .args(["-I", "-c", &dump_runtime_script(DEBUG_OFFSETS_READ_LEN)])
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", interp.label()));
        assert!(
            out.status.success(),
            "{} could not dump _PyRuntime:\n{}",
            interp.label(),
            String::from_utf8_lossy(&out.stderr)
        );
        let bytes = unhex(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(bytes.len(), DEBUG_OFFSETS_READ_LEN);

        let debug = parse_debug_offsets(&bytes, version)
            .unwrap_or_else(|e| panic!("{}: _Py_DebugOffsets: {e}", interp.label()));
        let hex = debug.version_hex;
        let live = PyVersion::new((hex >> 24) as u8, (hex >> 16) as u8, (hex >> 8) as u8);
        assert_eq!(
            live,
            version,
            "{}: _Py_DebugOffsets carries another version",
            interp.label()
        );

        let mut row =
            offsets_for(version).unwrap_or_else(|| panic!("no offsets row for {}", interp.label()));
        for (field, table, live) in apply_debug_offsets(&mut row, &debug) {
            problems.push(format!(
                "{}: {field} is {table} in the table, {live} in the live interpreter",
                interp.label()
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "offsets table disagrees with live interpreters:\n{}",
        problems.join("\n")
    );
}
