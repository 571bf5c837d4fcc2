//! pprof files read back into a `Profile`: ours (`output::pprof`) with their identity, kinds
//! and labels, and other tools' (Go, py-spy, Pyroscope), whose functions are Python frames
//! when their file is Python source and native otherwise.
//!
//! Untrusted input: the compressed file and the decompressed message are both bounded, every
//! length and id is checked, and anything wrong is an error saying what.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};

use anyhow::{anyhow, bail, Context};
use flate2::read::GzDecoder;

use crate::profile::{
    gil_label, FrameKind, Profile, ProfileFrame, ProfileMeta, SampleKind, SampleLabels, WeightUnit,
    GIL_KEY,
};

/// The largest decompressed message read (a 50x50-host profile is a few MB).
pub const MAX_MESSAGE_BYTES: u64 = 512 << 20;

/// Reads a pprof file's bytes (gzipped or not).
pub fn read(input: impl Read) -> anyhow::Result<Profile> {
    // Decompressed as it is read: only the message is held, never the compressed file too,
    // and a corrupt stream fails where it goes wrong, not after the whole file was read.
    let mut input = BufReader::new(input);
    let gzipped = input
        .fill_buf()
        .context("cannot read")?
        .starts_with(&[0x1f, 0x8b]);
    let mut message = Vec::new();
    if gzipped {
        GzDecoder::new(input)
            .take(MAX_MESSAGE_BYTES + 1)
            .read_to_end(&mut message)
            .context("corrupt or truncated gzip data")?;
    } else {
        input
            .take(MAX_MESSAGE_BYTES + 1)
            .read_to_end(&mut message)
            .context("cannot read")?;
    }
    if message.len() as u64 > MAX_MESSAGE_BYTES {
        bail!("larger than {} MiB uncompressed", MAX_MESSAGE_BYTES >> 20);
    }
    decode(&message)
}

#[derive(Default)]
struct Raw {
    sample_types: Vec<(i64, i64)>,
    samples: Vec<RawSample>,
    mappings: HashMap<u64, i64>,
    locations: HashMap<u64, RawLocation>,
    functions: HashMap<u64, RawFunction>,
    strings: Vec<String>,
    time_nanos: i64,
    duration_nanos: i64,
    period_type: Option<(i64, i64)>,
    period: i64,
    comments: Vec<i64>,
}

#[derive(Default)]
struct RawSample {
    locations: Vec<u64>,
    values: Vec<i64>,
    labels: Vec<(i64, i64, i64)>,
}

#[derive(Default)]
struct RawLocation {
    mapping: u64,
    address: u64,
    /// (function id, line), innermost first as pprof lists inlined frames.
    lines: Vec<(u64, i64)>,
}

#[derive(Default)]
struct RawFunction {
    name: i64,
    system_name: i64,
    filename: i64,
    start_line: i64,
}

/// Decodes an uncompressed `Profile` message.
pub fn decode(message: &[u8]) -> anyhow::Result<Profile> {
    let mut raw = Raw::default();
    let mut r = Reader::new(message);
    while let Some((field, value)) = r.field()? {
        match (field, value) {
            (1, Value::Bytes(b)) => raw.sample_types.push(value_type(b)?),
            (2, Value::Bytes(b)) => raw.samples.push(sample(b)?),
            (3, Value::Bytes(b)) => {
                let (id, filename) = mapping(b)?;
                raw.mappings.insert(id, filename);
            }
            (4, Value::Bytes(b)) => {
                let (id, loc) = location(b)?;
                raw.locations.insert(id, loc);
            }
            (5, Value::Bytes(b)) => {
                let (id, f) = function(b)?;
                raw.functions.insert(id, f);
            }
            (6, Value::Bytes(b)) => raw
                .strings
                .push(String::from_utf8(b.to_vec()).map_err(|_| anyhow!("a string is not UTF-8"))?),
            (9, Value::Varint(v)) => raw.time_nanos = v as i64,
            (10, Value::Varint(v)) => raw.duration_nanos = v as i64,
            (11, Value::Bytes(b)) => raw.period_type = Some(value_type(b)?),
            (12, Value::Varint(v)) => raw.period = v as i64,
            (13, Value::Varint(v)) => raw.comments.push(v as i64),
            (13, Value::Bytes(b)) => raw
                .comments
                .extend(packed(b)?.into_iter().map(|v| v as i64)),
            _ => {}
        }
    }
    build(raw)
}

fn build(raw: Raw) -> anyhow::Result<Profile> {
    let string = |i: i64| -> anyhow::Result<&str> {
        usize::try_from(i)
            .ok()
            .and_then(|i| raw.strings.get(i))
            .map(String::as_str)
            .ok_or_else(|| anyhow!("string index {i} outside the string table"))
    };
    if raw.strings.first().is_some_and(|s| !s.is_empty()) {
        bail!("not a pprof profile: the string table does not start with \"\"");
    }
    if raw.sample_types.is_empty() {
        bail!("not a pprof profile: no sample type");
    }
    // Which value is ours to read: the CPU/wall time one if there is one, with a count.
    let types: Vec<(&str, &str)> = raw
        .sample_types
        .iter()
        .map(|&(t, u)| Ok((string(t)?, string(u)?)))
        .collect::<anyhow::Result<_>>()?;
    let count_at = types
        .iter()
        .position(|(t, u)| *u == "count" || *t == "samples");
    let time_at = types.iter().position(|(_, u)| *u == "nanoseconds");
    let (kind, unit) = match (count_at, time_at.map(|i| types[i].0)) {
        (_, Some("wall")) | (_, Some("off_cpu")) => (SampleKind::Wall, WeightUnit::Nanoseconds),
        (Some(_), _) => (SampleKind::Cpu, WeightUnit::Samples),
        (None, Some(_)) => (SampleKind::Cpu, WeightUnit::Nanoseconds),
        (None, None) => (SampleKind::Cpu, WeightUnit::Samples),
    };
    let period_ns = match raw.period_type {
        Some((_, u)) if string(u)? == "nanoseconds" => raw.period.max(0) as u64,
        _ => 0,
    };
    let meta = ProfileMeta {
        title: raw
            .comments
            .first()
            .map(|&c| string(c))
            .transpose()?
            .unwrap_or("")
            .to_string(),
        rate_hz: if period_ns > 0 {
            (1_000_000_000 / period_ns).min(u64::from(u32::MAX)) as u32
        } else {
            0
        },
        kind,
        unit,
        period_ns,
        start_unix_ns: raw.time_nanos.max(0) as u64,
        duration_secs: raw.duration_nanos.max(0) as f64 / 1e9,
        errors: 0,
        labels: Vec::new(),
        processes: Default::default(),
    };
    let mut profile = Profile::with_meta(meta);

    // Frames per location (a location with inlined lines is several frames).
    let mut frames_of: HashMap<u64, Vec<ProfileFrame>> = HashMap::new();
    for (&id, loc) in &raw.locations {
        let module = match loc.mapping {
            0 => None,
            m => match raw.mappings.get(&m) {
                Some(&f) => Some(string(f)?),
                None => bail!("location {id} names mapping {m}, which does not exist"),
            },
        };
        let mut frames = Vec::with_capacity(loc.lines.len().max(1));
        for &(fid, line) in &loc.lines {
            let f = raw.functions.get(&fid).ok_or_else(|| {
                anyhow!("location {id} names function {fid}, which does not exist")
            })?;
            let name = string(f.name)?;
            let system = string(f.system_name)?;
            let file = string(f.filename)?;
            let line = u32::try_from(line).ok();
            let kind = FrameKind::from_name(system).unwrap_or_else(|| {
                if is_python_source(file) {
                    FrameKind::Python
                } else if module == Some("[kernel]")
                    || module.is_some_and(|m| m.starts_with("[kernel"))
                {
                    FrameKind::Kernel
                } else {
                    FrameKind::Native
                }
            });
            frames.push(match kind {
                FrameKind::Python => ProfileFrame {
                    kind,
                    name: name.to_string(),
                    filename: Some(file.to_string()),
                    line,
                    first_line: u32::try_from(f.start_line).ok().filter(|&l| l > 0),
                    address: None,
                },
                FrameKind::Native => ProfileFrame {
                    kind,
                    name: name.to_string(),
                    filename: module
                        .or((!file.is_empty()).then_some(file))
                        .map(str::to_string),
                    line: None,
                    first_line: None,
                    address: (loc.address > 0)
                        .then_some(loc.address % crate::output::pprof::MODULE_SPAN),
                },
                _ => ProfileFrame::new(kind, name),
            });
        }
        if frames.is_empty() {
            // An unsymbolized address.
            frames.push(ProfileFrame {
                filename: module.map(str::to_string),
                address: Some(loc.address),
                ..ProfileFrame::new(FrameKind::Native, format!("{:#x}", loc.address))
            });
        }
        frames_of.insert(id, frames);
    }

    let mut stack = Vec::new();
    for (n, s) in raw.samples.iter().enumerate() {
        stack.clear();
        for id in s.locations.iter().rev() {
            let frames = frames_of
                .get(id)
                .ok_or_else(|| anyhow!("sample {n} names location {id}, which does not exist"))?;
            // Inlined lines are listed innermost first; the stack is root first.
            stack.extend(frames.iter().rev().cloned());
        }
        let value = |i: Option<usize>| -> anyhow::Result<u64> {
            match i {
                Some(i) => s.values.get(i).map(|&v| v.max(0) as u64).ok_or_else(|| {
                    anyhow!(
                        "sample {n} has {} values for {} sample types",
                        s.values.len(),
                        types.len()
                    )
                }),
                None => Ok(0),
            }
        };
        let (samples, weight) = match unit {
            WeightUnit::Samples => {
                let c = value(count_at)?;
                (c, c)
            }
            WeightUnit::Nanoseconds => {
                let w = value(time_at)?;
                (value(count_at)?.max(u64::from(w > 0)), w)
            }
        };
        let mut labels = SampleLabels::default();
        for &(k, str_v, num) in &s.labels {
            match string(k)? {
                "pid" => labels.pid = u32::try_from(num).unwrap_or(0),
                "tid" => labels.tid = u32::try_from(num).ok().filter(|&t| t > 0),
                "thread_name" => labels.thread_name = Some(string(str_v)?.to_string()),
                "process" => labels.process = string(str_v)?.to_string(),
                // Our own `gil` label (held / released); another value of it is no GIL state.
                GIL_KEY => {
                    labels.gil = [true, false]
                        .into_iter()
                        .find(|&held| gil_label(held) == string(str_v).unwrap_or(""))
                }
                key => {
                    // A label on every sample is the profile's (service_name, env): kept once.
                    let pair = (key.to_string(), string(str_v)?.to_string());
                    if n == 0 && !profile.meta.labels.contains(&pair) {
                        profile.meta.labels.push(pair);
                    }
                }
            }
        }
        profile.add_sample(&stack, &labels, None, samples, weight);
    }
    Ok(profile)
}

fn is_python_source(file: &str) -> bool {
    file.ends_with(".py")
        || file.ends_with(".pyw")
        || file.starts_with("<frozen ")
        || file == "<string>"
}

fn value_type(b: &[u8]) -> anyhow::Result<(i64, i64)> {
    let (mut t, mut u) = (0, 0);
    let mut r = Reader::new(b);
    while let Some((f, v)) = r.field()? {
        match (f, v) {
            (1, Value::Varint(x)) => t = x as i64,
            (2, Value::Varint(x)) => u = x as i64,
            _ => {}
        }
    }
    Ok((t, u))
}

fn sample(b: &[u8]) -> anyhow::Result<RawSample> {
    let mut s = RawSample::default();
    let mut r = Reader::new(b);
    while let Some((f, v)) = r.field()? {
        match (f, v) {
            (1, Value::Varint(x)) => s.locations.push(x),
            (1, Value::Bytes(p)) => s.locations.extend(packed(p)?),
            (2, Value::Varint(x)) => s.values.push(x as i64),
            (2, Value::Bytes(p)) => s.values.extend(packed(p)?.into_iter().map(|x| x as i64)),
            (3, Value::Bytes(l)) => {
                let (mut key, mut str_v, mut num) = (0, 0, 0);
                let mut lr = Reader::new(l);
                while let Some((lf, lv)) = lr.field()? {
                    match (lf, lv) {
                        (1, Value::Varint(x)) => key = x as i64,
                        (2, Value::Varint(x)) => str_v = x as i64,
                        (3, Value::Varint(x)) => num = x as i64,
                        _ => {}
                    }
                }
                s.labels.push((key, str_v, num));
            }
            _ => {}
        }
    }
    Ok(s)
}

fn mapping(b: &[u8]) -> anyhow::Result<(u64, i64)> {
    let (mut id, mut filename) = (0, 0);
    let mut r = Reader::new(b);
    while let Some((f, v)) = r.field()? {
        match (f, v) {
            (1, Value::Varint(x)) => id = x,
            (5, Value::Varint(x)) => filename = x as i64,
            _ => {}
        }
    }
    Ok((id, filename))
}

fn location(b: &[u8]) -> anyhow::Result<(u64, RawLocation)> {
    let mut id = 0;
    let mut loc = RawLocation::default();
    let mut r = Reader::new(b);
    while let Some((f, v)) = r.field()? {
        match (f, v) {
            (1, Value::Varint(x)) => id = x,
            (2, Value::Varint(x)) => loc.mapping = x,
            (3, Value::Varint(x)) => loc.address = x,
            (4, Value::Bytes(l)) => {
                let (mut fid, mut line) = (0, 0);
                let mut lr = Reader::new(l);
                while let Some((lf, lv)) = lr.field()? {
                    match (lf, lv) {
                        (1, Value::Varint(x)) => fid = x,
                        (2, Value::Varint(x)) => line = x as i64,
                        _ => {}
                    }
                }
                loc.lines.push((fid, line));
            }
            _ => {}
        }
    }
    Ok((id, loc))
}

fn function(b: &[u8]) -> anyhow::Result<(u64, RawFunction)> {
    let mut id = 0;
    let mut func = RawFunction::default();
    let mut r = Reader::new(b);
    while let Some((f, v)) = r.field()? {
        match (f, v) {
            (1, Value::Varint(x)) => id = x,
            (2, Value::Varint(x)) => func.name = x as i64,
            (3, Value::Varint(x)) => func.system_name = x as i64,
            (4, Value::Varint(x)) => func.filename = x as i64,
            (5, Value::Varint(x)) => func.start_line = x as i64,
            _ => {}
        }
    }
    Ok((id, func))
}

fn packed(mut b: &[u8]) -> anyhow::Result<Vec<u64>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        out.push(varint(&mut b)?);
    }
    Ok(out)
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Other,
}

/// A bounds-checked protobuf field reader.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8]) -> Self {
        Reader { rest: b }
    }

    fn field(&mut self) -> anyhow::Result<Option<(u64, Value<'a>)>> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let key = varint(&mut self.rest)?;
        let (field, wire) = (key >> 3, key & 7);
        let value = match wire {
            0 => Value::Varint(varint(&mut self.rest)?),
            1 => {
                self.skip(8)?;
                Value::Other
            }
            2 => {
                let len = usize::try_from(varint(&mut self.rest)?).unwrap_or(usize::MAX);
                if len > self.rest.len() {
                    bail!(
                        "truncated: a field claims {len} bytes, {} are left",
                        self.rest.len()
                    );
                }
                let (b, rest) = self.rest.split_at(len);
                self.rest = rest;
                Value::Bytes(b)
            }
            5 => {
                self.skip(4)?;
                Value::Other
            }
            w => bail!("not a pprof profile (protobuf wire type {w})"),
        };
        if field == 0 {
            bail!("not a pprof profile (field number 0)");
        }
        Ok(Some((field, value)))
    }

    fn skip(&mut self, n: usize) -> anyhow::Result<()> {
        if n > self.rest.len() {
            bail!("truncated");
        }
        self.rest = &self.rest[n..];
        Ok(())
    }
}

fn varint(b: &mut &[u8]) -> anyhow::Result<u64> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let Some((&byte, rest)) = b.split_first() else {
            bail!("truncated varint");
        };
        *b = rest;
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    bail!("a varint longer than 10 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::pprof as writer;

    fn sample_profile() -> Profile {
        let mut p = Profile::with_meta(ProfileMeta {
            labels: vec![("service_name".into(), "api".into())],
            ..ProfileMeta::cpu("pyspy-bpf python3 app.py", 100)
        });
        p.meta.duration_secs = 2.5;
        let labels = SampleLabels {
            pid: 10,
            tid: Some(11),
            thread_ident: 0,
            thread_name: Some("MainThread".into()),
            process: "python3".into(),
            gil: Some(true),
        };
        let main = ProfileFrame {
            first_line: Some(1),
            ..ProfileFrame::python("main", "/app/app.py", Some(7))
        };
        let native = ProfileFrame {
            kind: FrameKind::Native,
            name: "memcpy".into(),
            filename: Some("libc.so.6".into()),
            line: None,
            first_line: None,
            address: Some(0x1234),
        };
        p.add_sample(
            &[
                main.clone(),
                native,
                ProfileFrame::new(FrameKind::Kernel, "sys_read"),
            ],
            &labels,
            None,
            3,
            3,
        );
        p.add_sample(
            &[
                main,
                ProfileFrame::new(FrameKind::Truncated, "<truncated: depth limit>"),
            ],
            &SampleLabels {
                gil: Some(false),
                ..SampleLabels::default()
            },
            None,
            2,
            2,
        );
        p
    }

    #[test]
    fn round_trip_keeps_frames_labels_counts_and_meta() {
        let p = sample_profile();
        let mut bytes = Vec::new();
        writer::write(&p, &mut bytes).unwrap();
        let q = read(&bytes[..]).unwrap();
        assert_eq!(q.total_samples(), 5);
        assert_eq!(q.meta.period_ns, p.meta.period_ns);
        assert_eq!(q.meta.rate_hz, 100);
        assert_eq!(q.meta.start_unix_ns, p.meta.start_unix_ns);
        assert_eq!(q.meta.title, p.meta.title);
        assert_eq!(q.meta.labels, p.meta.labels);
        assert!((q.meta.duration_secs - 2.5).abs() < 1e-9);
        let mut a: Vec<_> = p
            .samples()
            .iter()
            .map(|e| {
                (
                    e.stack
                        .iter()
                        .map(|&i| p.frames()[i as usize].clone())
                        .collect::<Vec<_>>(),
                    e.labels.clone(),
                    e.counts,
                )
            })
            .collect();
        let mut b: Vec<_> = q
            .samples()
            .iter()
            .map(|e| {
                (
                    e.stack
                        .iter()
                        .map(|&i| q.frames()[i as usize].clone())
                        .collect::<Vec<_>>(),
                    e.labels.clone(),
                    e.counts,
                )
            })
            .collect();
        a.sort_by(|x, y| x.0.cmp(&y.0));
        b.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.0, y.0);
            assert_eq!(
                (x.1.pid, x.1.tid, &x.1.thread_name, &x.1.process, x.1.gil),
                (y.1.pid, y.1.tid, &y.1.thread_name, &y.1.process, y.1.gil)
            );
            assert_eq!(x.2, y.2);
        }
    }

    #[test]
    fn garbage_and_truncations_are_errors_not_panics() {
        let mut bytes = Vec::new();
        writer::write(&sample_profile(), &mut bytes).unwrap();
        let message = writer::encode(&sample_profile());
        for cut in 0..message.len() {
            let _ = decode(&message[..cut]);
        }
        for cut in [1, 5, bytes.len() / 2, bytes.len() - 1] {
            assert!(read(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(read(&b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"[..]).is_err());
        assert!(read(&b""[..]).is_err());
        // Every single-byte corruption: an error or a profile, never a panic.
        for i in 0..message.len() {
            let mut m = message.clone();
            m[i] ^= 0xa5;
            let _ = decode(&m);
        }
    }
}
