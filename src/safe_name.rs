//! Names from untrusted sources made safe for file names (`safe_fs` re-exports them).

/// The longest name `safe_name` returns.
pub const MAX_SAFE_NAME: usize = 32;

/// A name from an untrusted source (a process's `comm`, a command, a service name) made
/// safe to use as part of a file name: ASCII letters, digits, `.`, `_`, `+` and `-` only
/// (anything else, `/` and control characters included, becomes `_`), starting with a letter
/// or digit (never `.`, so never hidden, `.` or `..`, and never `-`, which looks like an
/// option), at most `MAX_SAFE_NAME` bytes. `None` when nothing of it is left.
pub fn safe_name(raw: &str) -> Option<String> {
    let mapped: String = raw
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '+' | '-' => c,
            _ => '_',
        })
        .collect();
    let name: String = mapped
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .chars()
        .take(MAX_SAFE_NAME)
        .collect();
    (!name.is_empty()).then_some(name)
}
