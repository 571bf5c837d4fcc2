//! How a comparison is shown: a terminal table, a Markdown pull-request comment, JSON, and a
//! differential flame graph of HEAD.

use std::fmt::Write as _;
use std::io::{self, Write};

use super::{Comparison, Row, Verdict};
use crate::escape::printable;
use crate::frames::{present, FrameOptions};
use crate::output::collapsed;
use crate::profile::Profile;

fn pct(share: f64) -> String {
    format!("{:.2}%", share * 100.0)
}

fn change(row: &Row, total: bool) -> String {
    let (b, h) = row.gated(total);
    let points = (h - b) * 100.0;
    let r = row.relative;
    let relative = if r.is_finite() {
        format!(" ({:+.1}%)", r * 100.0)
    } else {
        " (new)".to_string()
    };
    format!("{points:+.2} pp{relative}")
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Regressed => "REGRESSED",
        Verdict::Improved => "improved",
        Verdict::Unchanged => "unchanged",
    }
}

fn headline(c: &Comparison) -> String {
    format!(
        "{} regressed, {} improved, {} unchanged",
        c.count(Verdict::Regressed),
        c.count(Verdict::Improved),
        c.count(Verdict::Unchanged)
    )
}

fn counts(n: &[u64], period_ns: Option<f64>) -> String {
    let total: u64 = n.iter().sum();
    let what = match period_ns {
        // A wall profile's time, counted in sampling periods.
        Some(ns) => format!("{:.1} s of wall time", total as f64 * ns / 1e9),
        None => format!("{total} samples"),
    };
    match n.len() {
        1 => what,
        k => format!("{what} in {k} runs"),
    }
}

/// The conclusion in one line, and what decides the exit status.
pub fn summary(c: &Comparison) -> String {
    let mut s = format!(
        "{} (base: {}, head: {}; {} shares)",
        headline(c),
        counts(&c.base_samples, c.period_ns),
        counts(&c.head_samples, c.period_ns),
        if c.total { "total" } else { "self" }
    );
    if let Some((mdc, share)) = c.detectable {
        let _ = write!(
            s,
            "\nsmallest change these samples could show: {:.2} percentage points (for a function at {:.1}%)",
            mdc * 100.0,
            share * 100.0
        );
    }
    if let Some(why) = &c.inconclusive {
        let _ = write!(s, "\ninconclusive: {why}");
    }
    s
}

/// The terminal table: every changed function and the `limit` largest unchanged ones.
pub fn table(c: &Comparison, limit: usize, out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "{:<60} {:>9} {:>9} {:>20} {:>10} {:>10}",
        "function", "base", "head", "change", "q", "verdict"
    )?;
    let mut unchanged = 0;
    for row in &c.rows {
        if row.verdict == Verdict::Unchanged {
            unchanged += 1;
            if unchanged > limit {
                continue;
            }
        }
        let (b, h) = row.gated(c.total);
        let mut name = printable(&row.function.label()).into_owned();
        if name.chars().count() > 60 {
            name = name.chars().take(57).collect::<String>() + "...";
        }
        writeln!(
            out,
            "{:<60} {:>9} {:>9} {:>20} {:>10} {:>10}",
            name,
            pct(b),
            pct(h),
            change(row, c.total),
            format!("{:.2e}", row.q),
            verdict_word(row.verdict)
        )?;
    }
    if unchanged > limit {
        writeln!(
            out,
            "({} more unchanged functions not shown)",
            unchanged - limit
        )?;
    }
    writeln!(out)?;
    writeln!(out, "{}", summary(c))
}

/// A Markdown comment for a pull request.
pub fn markdown(c: &Comparison) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "### pyspy-bpf diff: {}\n", headline(c));
    let _ = writeln!(
        s,
        "Base: {}. Head: {}. Compared: {} shares per function.\n",
        counts(&c.base_samples, c.period_ns),
        counts(&c.head_samples, c.period_ns),
        if c.total { "total (inclusive)" } else { "self" }
    );
    if let Some(why) = &c.inconclusive {
        let _ = writeln!(s, "**Inconclusive:** {why}\n");
    }
    let significant: Vec<&Row> = c
        .rows
        .iter()
        .filter(|r| r.verdict != Verdict::Unchanged)
        .collect();
    if significant.is_empty() {
        let _ = writeln!(s, "No function changed significantly.");
    } else {
        let _ = writeln!(s, "| function | base | head | change | q | verdict |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---|");
        for row in significant {
            let (b, h) = row.gated(c.total);
            let _ = writeln!(
                s,
                "| `{}` | {} | {} | {} | {:.2e} | {} |",
                row.function.label().replace('|', "\\|").replace('`', "'"),
                pct(b),
                pct(h),
                change(row, c.total),
                row.q,
                verdict_word(row.verdict)
            );
        }
    }
    if let Some((mdc, share)) = c.detectable {
        let _ = writeln!(
            s,
            "\nSmallest change these samples could show: {:.2} percentage points (for a function at {:.1}%).",
            mdc * 100.0,
            share * 100.0
        );
    }
    s
}

/// The comparison as JSON.
pub fn json(c: &Comparison) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = c
        .rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "function": r.function.name,
                "file": r.function.file,
                "line": r.function.line,
                "kind": r.function.kind.name(),
                "base_self": r.base_self,
                "head_self": r.head_self,
                "base_total": r.base_total,
                "head_total": r.head_total,
                "p": r.p,
                "q": r.q,
                "relative_change": if r.relative.is_finite() { Some(r.relative) } else { None },
                "verdict": r.verdict,
            })
        })
        .collect();
    serde_json::json!({
        "regressed": c.count(Verdict::Regressed),
        "improved": c.count(Verdict::Improved),
        "unchanged": c.count(Verdict::Unchanged),
        "metric": if c.total { "total" } else { "self" },
        "base_samples": c.base_samples,
        "head_samples": c.head_samples,
        "detectable_change": c.detectable.map(|(d, _)| d),
        "detectable_at_share": c.detectable.map(|(_, s)| s),
        "dispersion": c.dispersion.phi,
        "bulk_ratio": c.scale,
        "inconclusive": c.inconclusive,
        "exit_code": c.exit_code(),
        "functions": rows,
    })
}

/// A differential flame graph of HEAD: frames that grew red, frames that shrank blue (inferno's
/// differential folding, counts normalised to the same total).
pub fn flamegraph(
    base: &Profile,
    head: &Profile,
    view: FrameOptions,
    out: &mut dyn Write,
) -> io::Result<()> {
    let folded = |p: &Profile| collapsed::lines(&present(p, view)).join("\n");
    let (before, after) = (folded(base), folded(head));
    let mut diff = Vec::new();
    let opts = inferno::differential::Options {
        normalize: true,
        ..Default::default()
    };
    inferno::differential::from_readers(opts, before.as_bytes(), after.as_bytes(), &mut diff)?;
    let diff = String::from_utf8_lossy(&diff);
    let mut fg = inferno::flamegraph::Options::default();
    fg.title = "pyspy-bpf diff: head against base (red grew, blue shrank)".to_string();
    fg.direction = inferno::flamegraph::Direction::Inverted;
    fg.count_name = "samples".to_string();
    fg.min_width = 0.1;
    if diff.trim().is_empty() {
        return writeln!(
            out,
            "<?xml version=\"1.0\" standalone=\"no\"?><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"60\"><text x=\"10\" y=\"30\">No samples to compare.</text></svg>"
        );
    }
    inferno::flamegraph::from_lines(&mut fg, diff.lines(), out)
}
