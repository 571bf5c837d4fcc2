//! What a sink sends: a window encoded for it (pprof files for a spool, a pprof upload per
//! profile for Pyroscope, one OTLP request per window), as `Delivery`s that can wait in a
//! queue or an on-disk backlog and be sent again unchanged.

use serde::{Deserialize, Serialize};

use crate::agent::config::SinkKind;
use crate::agent::otlp;
use crate::agent::window::{Window, WindowProfile};
use crate::output::pprof;

/// One request (or spool file) of one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub window_start_unix_ns: u64,
    pub window_end_unix_ns: u64,
    /// The service it is about (for messages; several for an OTLP request).
    pub service: String,
    /// For an HTTP sink, the path and query appended to its URL; for a spool, the file name.
    pub target: String,
    pub content_type: String,
    #[serde(skip)]
    pub body: Vec<u8>,
}

/// The boundary of a Pyroscope upload's multipart body (never inside a gzip stream's bytes
/// as a whole line: the body is binary, and the boundary is checked against it).
const BOUNDARY: &str = "pyspy-bpf-profile-7f3a91c2e5d84b06";

/// `window` as `kind` sends it.
pub fn encode(kind: &SinkKind, window: &Window) -> Vec<Delivery> {
    match kind {
        SinkKind::Spool { .. } => window
            .profiles
            .iter()
            .map(|p| Delivery {
                window_start_unix_ns: window.start_unix_ns,
                window_end_unix_ns: window.end_unix_ns(),
                service: p.service.clone(),
                target: spool_file_name(p, window.start_unix_ns),
                content_type: "application/vnd.google.protobuf+gzip".into(),
                body: gzipped_pprof(p),
            })
            .collect(),
        SinkKind::Pyroscope { .. } => window
            .profiles
            .iter()
            .map(|p| pyroscope_upload(p, window))
            .collect(),
        SinkKind::Otlp { .. } if window.profiles.is_empty() => Vec::new(),
        SinkKind::Otlp { .. } => vec![Delivery {
            window_start_unix_ns: window.start_unix_ns,
            window_end_unix_ns: window.end_unix_ns(),
            service: format!("{} profiles", window.profiles.len()),
            target: "/v1development/profiles".into(),
            content_type: "application/x-protobuf".into(),
            body: otlp::encode_request(window),
        }],
    }
}

fn gzipped_pprof(p: &WindowProfile) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = pprof::write(&p.profile, &mut out);
    out
}

/// `SERVICE-PID-START.pb.gz` (`SERVICE-START` per service), from sanitised parts only: the
/// service name comes from the target's environment and command line.
fn spool_file_name(p: &WindowProfile, start_unix_ns: u64) -> String {
    let service = crate::safe_fs::safe_name(&p.service).unwrap_or_else(|| "unknown".into());
    let start_ms = start_unix_ns / 1_000_000;
    match &p.process {
        Some(process) => format!("{service}-{}-{start_ms}.pb.gz", process.pid),
        None => format!("{service}-{start_ms}.pb.gz"),
    }
}

/// `POST /ingest?name=SERVICE{labels}&from=&until=&format=pprof&sampleRate=` with the pprof
/// as the `profile` part of a multipart form, as Pyroscope's SDKs upload it.
fn pyroscope_upload(p: &WindowProfile, window: &Window) -> Delivery {
    let labels: Vec<String> = p
        .profile
        .meta
        .labels
        .iter()
        .filter(|(k, _)| k != "service_name")
        .map(|(k, v)| format!("{k}={}", pyroscope_label_value(v)))
        .collect();
    let name = format!(
        "{}{{{}}}",
        pyroscope_label_value(&p.service),
        labels.join(",")
    );
    let from = window.start_unix_ns / 1_000_000_000;
    // At least a second long: Pyroscope takes whole seconds.
    let until = (window.end_unix_ns() / 1_000_000_000).max(from + 1);
    let target = format!(
        "/ingest?name={}&from={from}&until={until}&format=pprof&sampleRate={}&spyName=pyspy-bpf&units=samples&aggregationType=sum",
        query_escape(&name),
        p.profile.meta.rate_hz
    );
    let profile = gzipped_pprof(p);
    let mut body = Vec::with_capacity(profile.len() + 256);
    body.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"profile.pprof\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(&profile);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    Delivery {
        window_start_unix_ns: window.start_unix_ns,
        window_end_unix_ns: window.end_unix_ns(),
        service: p.service.clone(),
        target,
        content_type: format!("multipart/form-data; boundary={BOUNDARY}"),
        body,
    }
}

/// A label value as Pyroscope's `name{k=v,...}` syntax can carry it: no `{`, `}`, `,`, `=`
/// or control characters (they would split or end the label set), at most 256 bytes.
fn pyroscope_label_value(v: &str) -> String {
    v.chars()
        .map(|c| match c {
            '{' | '}' | ',' | '=' | '"' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .take(256)
        .collect()
}

/// Percent-encodes everything but unreserved characters (RFC 3986) for a query value.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(query_escape("a b{c=d}"), "a%20b%7Bc%3Dd%7D");
        assert_eq!(pyroscope_label_value("x,y}z{=\n"), "x_y_z___");
    }
}
