//! Threads of every interpreter are read, subinterpreters included: a thread running code in
//! a subinterpreter (created through the private `_xxsubinterpreters` / `_interpreters`
//! modules that 3.8+ ship) shows that code's frames. 2.7, 3.6 and 3.7 have no Python-level
//! way to make a subinterpreter, so it is not run there (said on stderr).

mod common;

use anyhow::ensure;
use common::*;

const SCRIPT: &str = r#"
import threading
try:
    import _interpreters as subs
except ImportError:
    import _xxsubinterpreters as subs
interp = subs.create()
code = "import os\ndef sub_busy():\n    os.write(1, b'ready\\n')\n    while True: pass\nsub_busy()\n"
t = threading.Thread(target=subs.run_string, args=(interp, code), name="sub-runner")
t.daemon = True
t.start()
t.join()
"#;

#[test]
fn subinterpreter_threads_are_dumped() {
    let dir = TempDir::new("subinterp");
    let script = dir.join("subinterp.py");
    std::fs::write(&script, SCRIPT).unwrap();
    for_each_interpreter("subinterpreter_threads_are_dumped", |interp| {
        if interp.major_minor() < (3, 8) {
            eprintln!(
                "SKIPPED on {}: no _xxsubinterpreters before 3.8",
                interp.label()
            );
            return Ok(());
        }
        let target = interp.start(&script, &[])?;
        target.wait_ready()?;
        let out = pyspy(&["dump", "--pid", &target.pid().to_string(), "--json"])?.ok()?;
        let json: serde_json::Value = serde_json::from_str(&out.stdout)?;
        let stacks: Vec<Vec<(String, u64)>> = json
            .as_array()
            .map(|threads| {
                threads
                    .iter()
                    .map(|t| {
                        t["frames"]
                            .as_array()
                            .map(|fs| {
                                fs.iter()
                                    .map(|f| {
                                        (
                                            f["name"].as_str().unwrap_or("").to_string(),
                                            f["line"].as_u64().unwrap_or(0),
                                        )
                                    })
                                    .collect()
                            })
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .unwrap_or_default();
        // `ready` is written from line 3: the dump may find the thread still there, just back
        // from the write, or already spinning on line 4 (a quicker attach sees line 3 more).
        let expected = |line| vec![("sub_busy".to_string(), line), ("<module>".to_string(), 5)];
        ensure!(
            stacks
                .iter()
                .any(|s| *s == expected(3) || *s == expected(4)),
            "no thread shows the subinterpreter's stack {:?} (or at line 3); got {stacks:?}",
            expected(4)
        );
        Ok(())
    });
}
