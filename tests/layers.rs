//! The layer line of ARCHITECTURE.md holds: every `crate::` path in every source file names a
//! module to the left of its own (or one of the helpers any layer may use), so the document
//! says how the code is built, not how it once was.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Modules outside the line that any layer may use, and what each of them may use.
const HELPERS: &[(&str, &[&str])] = &[
    ("escape", &[]),
    ("byte_lru", &[]),
    ("safe_name", &[]),
    ("safe_fs", &["safe_name"]),
    ("safe_fs_portable", &["safe_name"]),
];
/// The crate root and the binary: they may use anything.
const ROOTS: &[&str] = &["lib", "main"];

/// Rank of each module in the line (`a <- b, c <- d`: a 0, b and c 1, d 2).
fn layers() -> HashMap<String, usize> {
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let line = doc
        .lines()
        .skip_while(|l| *l != "## Layers")
        .find(|l| l.starts_with('`') && l.contains(" <- "))
        .expect("a layer line under ## Layers");
    let mut ranks = HashMap::new();
    for (rank, layer) in line.trim_matches('`').split(" <- ").enumerate() {
        for module in layer.split(',') {
            ranks.insert(module.trim().to_string(), rank);
        }
    }
    ranks
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a `crate::` path names (`crate::sampler::source::Sample` -> `sampler`).
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let line = text[..at].matches('\n').count() + 1;
        found.push((line, name));
    }
    found
}

#[test]
fn every_module_uses_only_modules_to_its_left() {
    let ranks = layers();
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut unplaced = Vec::new();
    let mut upward = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        let first = rel.components().next().expect("a component");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if ROOTS.contains(&module.as_str()) {
            continue;
        }
        let helper = HELPERS.iter().find(|(name, _)| *name == module);
        if helper.is_none() && !ranks.contains_key(&module) {
            unplaced.push(module.clone());
            continue;
        }
        let text = std::fs::read_to_string(file).expect("source");
        for (line, used) in crate_paths(&text) {
            if used == module || used.is_empty() {
                continue;
            }
            let allowed = match helper {
                Some((_, may_use)) => may_use.contains(&used.as_str()),
                None => {
                    HELPERS.iter().any(|(name, _)| *name == used)
                        || ranks.get(&used).is_some_and(|r| *r < ranks[&module])
                }
            };
            if !allowed {
                upward.push(format!("{}:{line}: {module} uses {used}", rel.display()));
            }
        }
    }
    unplaced.sort();
    unplaced.dedup();
    assert!(
        unplaced.is_empty(),
        "modules on neither the layer line nor the helper list: {unplaced:?}"
    );
    assert!(
        upward.is_empty(),
        "uses against ARCHITECTURE.md's layer line:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_check_sees_a_use_against_the_line() {
    // The scanner finds each path's module and its line.
    let text = "use crate::model::Addr;\nfn f() { crate::cli::run() }\n";
    assert_eq!(
        crate_paths(text),
        vec![(1, "model".to_string()), (2, "cli".to_string())]
    );
    // And the line ranks `cli` above `sampler`: a sampler using cli would be reported.
    let ranks = layers();
    assert!(ranks["sampler"] < ranks["cli"] && ranks["model"] == 0);
}

/// The module table names every source file (by its file name, in its directory's row or
/// its own), so that a new module is placed when it is added.
#[test]
fn the_module_table_names_every_source_file() {
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let table: String = doc
        .lines()
        .skip_while(|l| *l != "## Layers")
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .filter(|l| l.starts_with('|'))
        .collect::<Vec<_>>()
        .join("\n");
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut missing: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let name = f.file_name()?.to_string_lossy().into_owned();
            // `mod.rs` is its directory's row.
            let named = match name.as_str() {
                "mod.rs" => {
                    let dir = f.parent()?.file_name()?.to_string_lossy().into_owned();
                    table.contains(&format!("{dir}/"))
                }
                _ => table.contains(&format!("`{name}`")) || table.contains(&format!("/{name}`")),
            };
            (!named).then(|| f.strip_prefix(root()).unwrap_or(f).display().to_string())
        })
        .collect();
    missing.sort();
    assert!(
        missing.is_empty(),
        "source files the module table of ARCHITECTURE.md does not name: {missing:?}"
    );
}
