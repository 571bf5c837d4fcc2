//! `dump --locals`: the local variables of a function with known values, read on every
//! provisioned interpreter (names from the code object, values from the frame, reprs bounded).

mod common;

use anyhow::{anyhow, bail, ensure, Context, Result};
use common::{for_each_interpreter, pyspy, Interpreter};
use serde_json::Value;

const SCRIPT: &str = "locals.py";

/// (name, repr, type) at `-l`, as each interpreter shows them.
fn expected(interp: &Interpreter) -> Vec<(&'static str, String, &'static str)> {
    let py2 = interp.is_py2();
    let s = |text: &str| text.to_string();
    vec![
        ("arg", s("'argument'"), "str"),
        ("answer", s("42"), "int"),
        ("negative", s("-7"), "int"),
        // A `long` on 2.7 (2**100 does not fit a C long).
        (
            "big",
            s("1267650600228229401496703205376"),
            if py2 { "long" } else { "int" },
        ),
        (
            "huge",
            s("1046183829131435717501889961181681365981... (170 digits)"),
            if py2 { "long" } else { "int" },
        ),
        ("text", s("'hello'"), "str"),
        (
            "uni",
            format!("{}'héllo wörld 計算 𠀋'", if py2 { "u" } else { "" }),
            if py2 { "unicode" } else { "str" },
        ),
        (
            "long_text",
            // 2.7's `str` is bytes, and counted so.
            format!(
                "'{}'... (1000 {})",
                "x".repeat(64),
                if py2 { "bytes" } else { "chars" }
            ),
            "str",
        ),
        ("items", s("[...] (3 items)"), "list"),
        ("mapping", s("{...} (2 items)"), "dict"),
        ("pair", s("(...) (2 items)"), "tuple"),
        ("nothing", s("None"), "NoneType"),
        ("flag", s("True"), "bool"),
        ("real", s("3.5"), "float"),
        // 2.7's b"" is its `str`.
        (
            "raw",
            s(if py2 { "'raw'" } else { "b'raw'" }),
            if py2 { "str" } else { "bytes" },
        ),
        // A cell variable: shown by its contents.
        ("captured", s("'in a cell'"), "str"),
    ]
}

/// The `holder` frame of the dump's JSON.
fn holder_frame(dump: &Value) -> Result<&Value> {
    let threads = dump.as_array().context("no threads")?;
    threads
        .iter()
        .flat_map(|t| t["frames"].as_array().into_iter().flatten())
        .find(|f| f["name"] == "holder")
        .ok_or_else(|| anyhow!("no holder frame in {dump:#}"))
}

fn check(interp: &Interpreter) -> Result<()> {
    let running = interp.start(SCRIPT, &[])?;
    running.wait_ready()?;
    let pid = running.pid().to_string();

    // JSON: every expected local with its repr and type.
    let out = pyspy(&["dump", "--pid", &pid, "--locals", "--json"])?.ok()?;
    let dump: Value = serde_json::from_str(&out.stdout).context("dump --json output")?;
    let frame = holder_frame(&dump)?;
    let locals = frame["locals"]
        .as_array()
        .ok_or_else(|| anyhow!("holder has no locals: {frame:#}"))?;
    let mut problems = Vec::new();
    for (name, repr, type_name) in expected(interp) {
        match locals.iter().find(|l| l["name"] == name) {
            None => problems.push(format!("{name}: missing")),
            Some(l) if l["repr"] != repr.as_str() || l["type"] != type_name => {
                problems.push(format!(
                    "{name}: got {} ({}), want {repr} ({type_name})",
                    l["repr"], l["type"]
                ))
            }
            Some(_) => {}
        }
    }
    // `inner` is a function local too; the module frame has no fast locals.
    ensure!(
        locals
            .iter()
            .any(|l| l["name"] == "inner" && l["type"] == "function"),
        "no `inner` function local in {locals:?}"
    );
    if !problems.is_empty() {
        bail!("wrong locals:\n{}\nall: {locals:#?}", problems.join("\n"));
    }

    // -ll: the first items of small containers, whole.
    let out = pyspy(&["dump", "--pid", &pid, "-ll", "--json"])?.ok()?;
    let dump: Value = serde_json::from_str(&out.stdout).context("dump -ll --json output")?;
    let locals = holder_frame(&dump)?["locals"].clone();
    let repr_of = |name: &str| {
        locals
            .as_array()
            .and_then(|ls| ls.iter().find(|l| l["name"] == name))
            .map(|l| l["repr"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    ensure!(
        repr_of("items") == "[1, 'two', 3.5]",
        "-ll items: {locals:#}"
    );
    ensure!(repr_of("pair") == "(1, 2)", "-ll pair: {locals:#}");
    let mapping = repr_of("mapping");
    ensure!(
        mapping == "{'a': 1, 'b': 2}" || mapping == "{'b': 2, 'a': 1}",
        "-ll mapping: {mapping}"
    );

    // Text: indented `name = repr` lines under the frame.
    let out = pyspy(&["dump", "--pid", &pid, "--locals"])?.ok()?;
    for line in [
        "        answer = 42",
        "        text = 'hello'",
        "        flag = True",
    ] {
        ensure!(
            out.stdout.lines().any(|l| l == line),
            "text output lacks {line:?}:\n{}",
            out.stdout
        );
    }
    // Without --locals, no locals (`null`, as py-spy writes it).
    let out = pyspy(&["dump", "--pid", &pid, "--json"])?.ok()?;
    let dump: Value = serde_json::from_str(&out.stdout).context("dump --json output")?;
    let frame = holder_frame(&dump)?;
    ensure!(
        frame["locals"].is_null(),
        "locals without --locals: {frame:#}"
    );
    Ok(())
}

#[test]
fn dump_locals_on_every_interpreter() {
    for_each_interpreter("dump_locals", check);
}
