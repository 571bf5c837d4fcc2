//! Interactive SVG flame graphs, drawn by inferno from the collapsed lines.
//!
//! Like py-spy: icicle layout (root at the top), counts named "samples", and inferno's
//! `python` palette for Python frames (red for application code, yellow for the standard
//! library, aqua for `site-packages`). On top of that, frames are coloured by kind through a
//! preset palette map: kernel frames orange (inferno strips their `_[k]` suffix from the
//! text it shows), native frames blue, truncation markers grey. Colours are hashed from the
//! name, so a function has the same colour in every graph.
//!
//! An empty profile is not an error: the result is a small valid SVG saying that no samples
//! were collected (inferno itself would return an error with an error SVG).

use std::io::{self, Write};

use inferno::flamegraph::color::{Color, MultiPalette, Palette, PaletteMap};
use inferno::flamegraph::{self as inferno_fg, Direction, Options};

use super::collapsed;
use crate::profile::{FrameKind, Profile, ProfileMeta, SampleKind};

const DEFAULT_TITLE: &str = "pyspy-bpf";

/// Writes `profile` as an SVG flame graph.
pub fn write(profile: &Profile, meta: &ProfileMeta, out: &mut dyn Write) -> io::Result<()> {
    let title = if meta.title.is_empty() {
        DEFAULT_TITLE
    } else {
        meta.title.as_str()
    };
    if profile.is_empty() {
        return write_empty(title, out);
    }
    let mut colors = kind_colors(profile);
    let mut opts = Options::default();
    opts.title = title.to_string();
    opts.subtitle = Some(subtitle(profile, meta));
    opts.colors = Palette::Multi(MultiPalette::Python);
    opts.direction = Direction::Inverted;
    opts.count_name = meta.shown_unit().to_string();
    opts.min_width = 0.1;
    // Colour by name hash so the same function gets the same colour in every graph.
    opts.hash = true;
    opts.palette_map = Some(&mut colors);
    // Lines from `collapsed::lines` are already sorted frame by frame.
    opts.no_sort = true;
    let lines = collapsed::lines(profile);
    inferno_fg::from_lines(&mut opts, lines.iter().map(String::as_str), out)
}

/// Preset colours for the frames the python palette would not tell apart, keyed by the
/// collapsed label (what inferno looks up).
fn kind_colors(profile: &Profile) -> PaletteMap {
    let mut map = PaletteMap::default();
    for (frame, label) in profile.frames().iter().zip(collapsed::labels(profile)) {
        let v = name_hash(&label);
        let color = match frame.kind {
            // inferno's "orange" and "blue" spectra, and a grey.
            FrameKind::Kernel => shade(190, 65, 90, 65, 0, 0, v),
            FrameKind::Native => shade(80, 60, 80, 60, 205, 50, v),
            FrameKind::Truncated => shade(160, 30, 160, 30, 160, 30, v),
            // Waiting (for the GIL): a red that stands out from the running code above it.
            FrameKind::Wait => shade(220, 20, 40, 20, 40, 20, v),
            FrameKind::Python | FrameKind::Process | FrameKind::Thread => continue,
        };
        map.insert(label, color);
    }
    map
}

fn shade(r: u8, dr: u8, g: u8, dg: u8, b: u8, db: u8, v: f32) -> Color {
    let t = |base: u8, span: u8| base.saturating_add((f32::from(span) * v) as u8);
    Color {
        r: t(r, dr),
        g: t(g, dg),
        b: t(b, db),
    }
}

/// FNV-1a of `name`, mapped to [0, 1): stable across runs and machines.
fn name_hash(name: &str) -> f32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h >> 8) as f32 / (1u32 << 24) as f32
}

/// `N samples, 12.3 s at 100 Hz, E errors`, leaving out what is unknown or zero.
fn subtitle(profile: &Profile, meta: &ProfileMeta) -> String {
    let mut s = format!("{} samples", profile.total_samples());
    if meta.kind == SampleKind::Wall {
        s += ", wall-clock time (on and off CPU)";
    }
    if meta.duration_secs > 0.0 {
        s += &format!(", {:.1} s", meta.duration_secs);
    }
    if meta.rate_hz > 0 {
        s += &format!(" at {} Hz", meta.rate_hz);
    }
    if meta.errors > 0 {
        s += &format!(", {} errors", meta.errors);
    }
    s
}

fn write_empty(title: &str, out: &mut dyn Write) -> io::Result<()> {
    write!(
        out,
        concat!(
            r#"<?xml version="1.0" standalone="no"?>"#,
            "\n",
            r#"<svg version="1.1" width="1200" height="90" viewBox="0 0 1200 90" "#,
            r#"xmlns="http://www.w3.org/2000/svg">"#,
            "\n",
            r#"<rect x="0" y="0" width="100%" height="100%" fill="rgb(238,238,238)"/>"#,
            "\n",
            r#"<text x="600" y="30" text-anchor="middle" font-family="Verdana" "#,
            r#"font-size="17">{}</text>"#,
            "\n",
            r#"<text x="600" y="65" text-anchor="middle" font-family="Verdana" "#,
            r#"font-size="12">No samples were collected.</text>"#,
            "\n</svg>\n"
        ),
        xml_escape(title)
    )
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Not allowed in XML 1.0 at all.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{FrameKind, ProfileFrame};

    fn svg(profile: &Profile, meta: &ProfileMeta) -> String {
        let mut out = Vec::new();
        write(profile, meta, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn tiny_profile_has_function_names() {
        let mut p = Profile::new();
        let t = ProfileFrame::new(FrameKind::Thread, "thread 1 \"MainThread\"");
        let main = ProfileFrame::python("main", "app.py", Some(10));
        p.add(
            &[
                t.clone(),
                main.clone(),
                ProfileFrame::python("compute", "app.py", Some(3)),
            ],
            7,
        );
        p.add(
            &[
                t,
                main,
                ProfileFrame::new(FrameKind::Kernel, "do_syscall_64"),
            ],
            2,
        );
        let meta = ProfileMeta {
            title: "python app.py <&>".into(),
            rate_hz: 100,
            duration_secs: 0.09,
            errors: 1,
            ..ProfileMeta::default()
        };
        let s = svg(&p, &meta);
        assert!(s.starts_with("<?xml"), "{s}");
        assert!(s.trim_end().ends_with("</svg>"));
        for needle in [
            "compute (app.py:3)",
            "main (app.py:10)",
            // inferno shows kernel frames without their `_[k]` suffix.
            "do_syscall_64 (2 samples",
            "MainThread",
            "python app.py &lt;&amp;&gt;",
            "9 samples, 0.1 s at 100 Hz, 1 errors",
        ] {
            assert!(s.contains(needle), "missing {needle:?}");
        }
        // The kernel frame is drawn in the orange spectrum.
        let kernel = &s[s.find("<title>do_syscall_64").unwrap()..];
        let fill = &kernel[kernel.find("fill=\"rgb(").unwrap() + 10..];
        let fill = &fill[..fill.find(')').unwrap()];
        let rgb: Vec<u8> = fill.split(',').map(|c| c.parse().unwrap()).collect();
        assert!(rgb[0] >= 190 && rgb[2] == 0, "{fill}");
    }

    #[test]
    fn leaf_with_trailing_number_is_not_a_differential() {
        let mut p = Profile::new();
        p.add(&[ProfileFrame::new(FrameKind::Thread, "worker 7")], 4);
        let s = svg(&p, &ProfileMeta::default());
        assert!(s.contains("worker_7 (4 samples, 100.00%)"), "{s}");
    }

    #[test]
    fn empty_profile_is_a_valid_svg() {
        let s = svg(
            &Profile::new(),
            &ProfileMeta {
                title: "a<b".into(),
                ..Default::default()
            },
        );
        assert!(s.starts_with("<?xml"));
        assert!(s.contains("No samples were collected."));
        assert!(s.contains("a&lt;b"));
        assert!(s.trim_end().ends_with("</svg>"));
    }
}
