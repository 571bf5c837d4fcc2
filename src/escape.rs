//! Making text from a target safe to print on a terminal: function, file, thread and process
//! names are chosen by whoever wrote (or attacks) the profiled program, and a raw escape
//! sequence in one could rewrite the screen, retitle the window or hide lines from the person
//! running a root profiler. Every place where such text reaches a terminal (dump's text,
//! top's views, messages and errors) goes through [`printable`]; JSON and the file formats
//! escape by their own rules.

use std::borrow::Cow;

/// `s` with every character that is not printable written as an escape: `\n`, `\r`, `\t`,
/// `\x1b` for other C0 controls and DEL, `\u{85}` for C1 controls and for the Unicode
/// format characters that reorder or hide text (bidi overrides and isolates, zero-width
/// joiners, the BOM). Printable text, non-ASCII letters included, is unchanged (and not
/// copied).
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && needs_escape(c) => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}' // zero-width space/joiners, LRM, RLM
            | '\u{202a}'..='\u{202e}' // bidi embeddings and overrides
            | '\u{2066}'..='\u{2069}' // bidi isolates
            | '\u{feff}' // BOM, zero-width no-break space
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_keeps_text() {
        assert!(matches!(printable("run (app.py:3)"), Cow::Borrowed(_)));
        assert_eq!(printable("héllo wörld ∑ 名前"), "héllo wörld ∑ 名前");
        assert_eq!(
            printable("evil\x1b[31m\r\n\x07\t\x7f"),
            "evil\\x1b[31m\\r\\n\\x07\\t\\x7f"
        );
        assert_eq!(printable("a\u{9b}b\u{202e}c"), "a\\u{9b}b\\u{202e}c");
        assert_eq!(printable(""), "");
    }
}
