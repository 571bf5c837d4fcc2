//! Finding CPython's `PY_VERSION` literal in a binary's bytes, whatever the binary's format
//! (for interpreters older than 3.11, which have no `Py_Version`).

/// All `M.m.p` literals with M in 2..=3, followed by NUL or a short pre-release tag: first
/// those that start a string (after a NUL), then those that end one (after a `/`, `-` or
/// space). The linker merges a string into the tail of a longer one that ends the same way:
/// in pyenv's builds `PY_VERSION` ("3.10.13") is the end of the install prefix
/// ("/root/.pyenv/versions/3.10.13"), with no NUL before it.
pub fn scan_versions(bytes: &[u8]) -> Vec<(u8, u8, u8)> {
    let mut starts = Vec::new();
    let mut tails = Vec::new();
    let number = |at: usize| -> Option<(u8, usize)> {
        let digits = bytes
            .get(at..)?
            .iter()
            .take(3)
            .take_while(|c| c.is_ascii_digit())
            .count();
        let n = std::str::from_utf8(bytes.get(at..at + digits)?)
            .ok()?
            .parse()
            .ok()?;
        Some((n, at + digits))
    };
    for i in 0..bytes.len().saturating_sub(6) {
        let starts_string = bytes[i] == 0;
        if !(starts_string || matches!(bytes[i], b'/' | b'-' | b' '))
            || !matches!(bytes[i + 1], b'2' | b'3')
            || bytes[i + 2] != b'.'
        {
            continue;
        }
        let Some((minor, at)) = number(i + 3) else {
            continue;
        };
        if bytes.get(at) != Some(&b'.') {
            continue;
        }
        let Some((patch, end)) = number(at + 1) else {
            continue;
        };
        let version = (bytes[i + 1] - b'0', minor, patch);
        let ends_ok = match starts_string {
            true => matches!(bytes.get(end), Some(0 | b'a' | b'b' | b'r' | b'+')),
            // A tail must end its string: "versions/3.10.13/lib" is not one.
            false => bytes.get(end) == Some(&0),
        };
        let list = if starts_string {
            &mut starts
        } else {
            &mut tails
        };
        if ends_ok && !list.contains(&version) {
            list.push(version);
        }
    }
    tails.retain(|v| !starts.contains(v));
    starts.extend(tails);
    starts
}
