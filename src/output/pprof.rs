//! pprof: a gzipped `profile.proto` (github.com/google/pprof, proto/profile.proto), the format
//! `go tool pprof`, Grafana Pyroscope and OpenTelemetry's profiling signal read.
//!
//! The profile keeps its identity here, not the presentation options: full file names, each
//! Python frame's line (`Line.line`) and its function's first line (`Function.start_line`).
//! - Sample types: a count profile writes `samples/count` and `cpu/nanoseconds` (count times
//!   the period); a nanosecond-weighted one `samples/count` and `KIND/nanoseconds`.
//! - Sample labels: `pid` and `tid` (numeric), `thread_name` and `process` (strings), `gil`
//!   (`held` / `released`, on Python samples whose GIL state was read), and the profile's own
//!   labels (`service_name=...`) on every sample.
//! - Functions: the name, `system_name` the frame's kind (`python`, `native`, `kernel`,
//!   `truncated`: what `convert` and `diff` read back), the file (Python source or native
//!   module) and the first line.
//! - Native frames get a `Mapping` per module and an address. Their addresses are offsets in
//!   the module's file (the same in every process), so each module is given its own range of
//!   a synthetic address space (`MODULE_SPAN` apart) with `file_offset` 0: address - start is
//!   the offset in the file, as pprof computes it. Kernel frames share a `[kernel]` mapping.
//!
//! The encoder is written out by hand (varints and length-delimited fields): the message is
//! small, and a generated one would need a build step.

use std::collections::HashMap;
use std::io::{self, Write};

use flate2::write::GzEncoder;
use flate2::Compression;

use crate::profile::{gil_label, FrameKind, Profile, ProfileFrame, WeightUnit, GIL_KEY};

/// Each native module's range in the synthetic address space of the written profile.
pub const MODULE_SPAN: u64 = 1 << 40;

/// Writes `profile` gzipped.
pub fn write(profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
    let bytes = encode(profile);
    let mut gz = GzEncoder::new(out, Compression::default());
    gz.write_all(&bytes)?;
    gz.finish()?;
    Ok(())
}

/// The uncompressed `Profile` message.
pub fn encode(profile: &Profile) -> Vec<u8> {
    let mut strings = Strings::default();
    let mut msg = Vec::with_capacity(1 << 16);
    let meta = &profile.meta;

    // sample_type (1), period_type (11), period (12).
    let (value_type, value_unit) = match meta.unit {
        WeightUnit::Samples => ("cpu", "nanoseconds"),
        WeightUnit::Nanoseconds => (meta.kind.name(), "nanoseconds"),
    };
    // A count profile of unknown period (read back from collapsed stacks) has no time to
    // give: counts only.
    let with_time = !(meta.unit == WeightUnit::Samples && meta.period_ns == 0);
    let sample_types: &[(&str, &str)] = match with_time {
        true => &[("samples", "count"), (value_type, value_unit)],
        false => &[("samples", "count")],
    };
    for &(t, u) in sample_types {
        let vt = value_type_msg(&mut strings, t, u);
        put_bytes(&mut msg, 1, &vt);
    }

    // Functions and locations: one per frame of the profile (frames are interned already).
    let mut mappings: HashMap<&str, u64> = HashMap::new();
    let mut mapping_msgs: Vec<Vec<u8>> = Vec::new();
    let mut function_ids: HashMap<(&str, Option<&str>, FrameKind, Option<u32>), u64> =
        HashMap::new();
    let mut function_msgs: Vec<Vec<u8>> = Vec::new();
    let mut location_msgs: Vec<Vec<u8>> = Vec::with_capacity(profile.frames().len());
    for (i, frame) in profile.frames().iter().enumerate() {
        let location_id = i as u64 + 1;
        let function_id = {
            let key = (
                frame.name.as_str(),
                frame.filename.as_deref(),
                frame.kind,
                frame.first_line,
            );
            let next = function_ids.len() as u64 + 1;
            *function_ids.entry(key).or_insert_with(|| {
                function_msgs.push(function_msg(&mut strings, next, frame));
                next
            })
        };
        let (mapping_id, address) = match frame.kind {
            FrameKind::Native | FrameKind::Kernel => {
                let module = match frame.kind {
                    FrameKind::Kernel => "[kernel]",
                    _ => frame.filename.as_deref().unwrap_or("[unknown]"),
                };
                let next = mappings.len() as u64 + 1;
                let id = *mappings.entry(module).or_insert_with(|| {
                    mapping_msgs.push(mapping_msg(&mut strings, next, module, frame.kind));
                    next
                });
                let address = match (frame.kind, frame.address) {
                    (FrameKind::Native, Some(offset)) if offset < MODULE_SPAN => {
                        id * MODULE_SPAN + offset
                    }
                    _ => 0,
                };
                (id, address)
            }
            _ => (0, 0),
        };
        let mut loc = Vec::with_capacity(24);
        put_varint_field(&mut loc, 1, location_id);
        put_varint_field(&mut loc, 2, mapping_id);
        put_varint_field(&mut loc, 3, address);
        let mut line = Vec::with_capacity(8);
        put_varint_field(&mut line, 1, function_id);
        put_varint_field(&mut line, 2, u64::from(frame.line.unwrap_or(0)));
        put_bytes(&mut loc, 4, &line);
        location_msgs.push(loc);
    }

    // Samples (2), leaf first.
    let period = meta.period_ns;
    let profile_labels: Vec<(i64, i64)> = meta
        .labels
        .iter()
        .map(|(k, v)| (strings.id(k), strings.id(v)))
        .collect();
    let keys = LabelKeys {
        pid: strings.id("pid"),
        tid: strings.id("tid"),
        thread_name: strings.id("thread_name"),
        process: strings.id("process"),
    };
    let mut sample = Vec::with_capacity(256);
    let mut packed = Vec::with_capacity(256);
    for entry in profile.samples() {
        sample.clear();
        packed.clear();
        for &id in entry.stack.iter().rev() {
            put_varint(&mut packed, u64::from(id) + 1);
        }
        put_bytes(&mut sample, 1, &packed);
        packed.clear();
        let second = match meta.unit {
            WeightUnit::Samples => entry.counts.samples.saturating_mul(period),
            WeightUnit::Nanoseconds => entry.counts.weight,
        };
        put_varint(&mut packed, entry.counts.samples);
        if with_time {
            put_varint(&mut packed, second);
        }
        put_bytes(&mut sample, 2, &packed);
        let l = entry.labels;
        if l.pid != 0 {
            put_bytes(&mut sample, 3, &num_label(keys.pid, i64::from(l.pid)));
        }
        if let Some(tid) = l.tid {
            put_bytes(&mut sample, 3, &num_label(keys.tid, i64::from(tid)));
        }
        if let Some(name) = &l.thread_name {
            put_bytes(
                &mut sample,
                3,
                &str_label(keys.thread_name, strings.id(name)),
            );
        }
        if !l.process.is_empty() {
            put_bytes(
                &mut sample,
                3,
                &str_label(keys.process, strings.id(&l.process)),
            );
        }
        if let Some(held) = l.gil {
            let value = strings.id(gil_label(held));
            put_bytes(&mut sample, 3, &str_label(strings.id(GIL_KEY), value));
        }
        for &(k, v) in &profile_labels {
            // The sample's own pid and process say the same more precisely (a pid as a
            // number): one label of a key per sample.
            let own = (k == keys.pid && l.pid != 0) || (k == keys.process && !l.process.is_empty());
            if !own {
                put_bytes(&mut sample, 3, &str_label(k, v));
            }
        }
        put_bytes(&mut msg, 2, &sample);
    }
    for m in &mapping_msgs {
        put_bytes(&mut msg, 3, m);
    }
    for l in &location_msgs {
        put_bytes(&mut msg, 4, l);
    }
    for f in &function_msgs {
        put_bytes(&mut msg, 5, f);
    }
    let start = meta.start_unix_ns;
    let duration = (meta.duration_secs.max(0.0) * 1e9) as u64;
    let period_type = match with_time {
        true => value_type_msg(&mut strings, value_type, value_unit),
        false => value_type_msg(&mut strings, "samples", "count"),
    };
    let comment = (!meta.title.is_empty()).then(|| strings.id(&meta.title));
    // The string table (6) goes last so every string above is in it.
    let mut tail = Vec::new();
    put_varint_field(&mut tail, 9, start);
    put_varint_field(&mut tail, 10, duration);
    put_bytes(&mut tail, 11, &period_type);
    put_varint_field(&mut tail, 12, if with_time { period } else { 1 });
    if let Some(c) = comment {
        put_varint_field(&mut tail, 13, c as u64);
    }
    for s in &strings.table {
        put_bytes(&mut msg, 6, s.as_bytes());
    }
    msg.extend_from_slice(&tail);
    msg
}

struct LabelKeys {
    pid: i64,
    tid: i64,
    thread_name: i64,
    process: i64,
}

/// The string table: index 0 is "", as the format requires.
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Default for Strings {
    fn default() -> Self {
        Strings {
            table: vec![String::new()],
            index: HashMap::from([(String::new(), 0)]),
        }
    }
}

impl Strings {
    fn id(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

fn value_type_msg(strings: &mut Strings, t: &str, unit: &str) -> Vec<u8> {
    let mut m = Vec::new();
    put_varint_field(&mut m, 1, strings.id(t) as u64);
    put_varint_field(&mut m, 2, strings.id(unit) as u64);
    m
}

fn function_msg(strings: &mut Strings, id: u64, frame: &ProfileFrame) -> Vec<u8> {
    let mut m = Vec::new();
    put_varint_field(&mut m, 1, id);
    let name = if frame.name.is_empty() {
        "[unknown]"
    } else {
        frame.name.as_str()
    };
    put_varint_field(&mut m, 2, strings.id(name) as u64);
    put_varint_field(&mut m, 3, strings.id(frame.kind.name()) as u64);
    if let Some(file) = &frame.filename {
        put_varint_field(&mut m, 4, strings.id(file) as u64);
    }
    if let Some(first) = frame.first_line {
        put_varint_field(&mut m, 5, u64::from(first));
    }
    m
}

fn mapping_msg(strings: &mut Strings, id: u64, module: &str, kind: FrameKind) -> Vec<u8> {
    let mut m = Vec::new();
    put_varint_field(&mut m, 1, id);
    if kind == FrameKind::Native {
        put_varint_field(&mut m, 2, id * MODULE_SPAN);
        put_varint_field(&mut m, 3, (id + 1) * MODULE_SPAN);
    }
    put_varint_field(&mut m, 5, strings.id(module) as u64);
    // Symbolized already: pprof must not try to symbolize these addresses itself.
    put_varint_field(&mut m, 7, 1);
    put_varint_field(&mut m, 8, 1);
    put_varint_field(&mut m, 9, u64::from(kind != FrameKind::Native));
    m
}

fn num_label(key: i64, num: i64) -> Vec<u8> {
    let mut m = Vec::new();
    put_varint_field(&mut m, 1, key as u64);
    put_varint_field(&mut m, 3, num as u64);
    m
}

fn str_label(key: i64, s: i64) -> Vec<u8> {
    let mut m = Vec::new();
    put_varint_field(&mut m, 1, key as u64);
    put_varint_field(&mut m, 2, s as u64);
    m
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A varint field; zero (the default) is left out, as protobuf encoders do.
fn put_varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        put_varint(out, u64::from(field) << 3);
        put_varint(out, v);
    }
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_varint(out, (u64::from(field) << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}
