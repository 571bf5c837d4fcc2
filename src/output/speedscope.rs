//! speedscope JSON (<https://www.speedscope.app/file-format-schema.json>).
//!
//! - `shared.frames` is the profile's interned frame table, in the same order, so a frame id
//!   is its speedscope index. Python and native frames give their bare name with `file` and
//!   `line` as separate fields; other kinds use [`frame_label`].
//! - Samples in time order, as py-spy writes them, when the profile has its whole timeline
//!   (a recording of up to `MAX_TIMELINE` samples): one entry per sample, so speedscope's
//!   "time order" view shows when each thing ran. Otherwise (a profile read back from a file,
//!   or a longer recording) each distinct stack once, with its total weight.
//! - One `sampled` profile per thread: a stack is split at its first `Thread` frame; the
//!   frames up to and including it (process and thread) name the profile, the frames after
//!   it are the sample. A stack that is only a thread frame keeps it as its single frame.
//!   Stacks without a thread frame go to one profile named after the title.
//! - Weights are seconds (count / rate) when the rate is known, else plain counts (`none`).
//! - The profile with the most samples is the one speedscope opens first.
//! - An empty profile gives one empty sampled profile, which speedscope opens as blank.

use std::collections::HashMap;
use std::io::{self, Write};

use serde::Serialize;

use super::{frame_label, UNKNOWN_NAME};
use crate::profile::{
    Counts, FrameKind, Profile, ProfileFrame, ProfileMeta, TimedSample, WeightUnit,
};

pub const SCHEMA: &str = "https://www.speedscope.app/file-format-schema.json";
const DEFAULT_NAME: &str = "pyspy-bpf";

#[derive(Serialize)]
struct File<'a> {
    #[serde(rename = "$schema")]
    schema: &'static str,
    shared: Shared<'a>,
    profiles: Vec<SampledProfile>,
    name: &'a str,
    #[serde(rename = "activeProfileIndex")]
    active_profile_index: usize,
    exporter: String,
}

#[derive(Serialize)]
struct Shared<'a> {
    frames: Vec<Frame<'a>>,
}

#[derive(Serialize)]
struct Frame<'a> {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u32>,
}

#[derive(Serialize)]
struct SampledProfile {
    #[serde(rename = "type")]
    kind: &'static str,
    name: String,
    unit: &'static str,
    #[serde(rename = "startValue")]
    start_value: f64,
    #[serde(rename = "endValue")]
    end_value: f64,
    samples: Vec<Vec<u32>>,
    weights: Weights,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Weights {
    Counts(Vec<u64>),
    Seconds(Vec<f64>),
}

/// Collects one thread's samples.
struct Builder {
    name: String,
    samples: Vec<Vec<u32>>,
    counts: Vec<u64>,
    total: u64,
}

fn speedscope_frame(frame: &ProfileFrame) -> Frame<'_> {
    match frame.kind {
        FrameKind::Python | FrameKind::Native => Frame {
            name: if frame.name.is_empty() {
                UNKNOWN_NAME.to_string()
            } else {
                frame.name.clone()
            },
            file: frame.filename.as_deref(),
            line: frame.line,
        },
        _ => Frame {
            name: frame_label(frame),
            file: None,
            line: None,
        },
    }
}

/// Writes `profile` as a speedscope file.
pub fn write(profile: &Profile, meta: &ProfileMeta, out: &mut dyn Write) -> io::Result<()> {
    let title = if meta.title.is_empty() {
        DEFAULT_NAME
    } else {
        meta.title.as_str()
    };
    let frames = profile.frames();

    let mut builders: Vec<Builder> = Vec::new();
    let mut by_prefix: HashMap<&[u32], usize> = HashMap::new();
    let in_time_order = !profile.timeline().is_empty() && profile.timeline_dropped() == 0;
    let samples: Vec<(&[u32], u64)> = match in_time_order {
        // Off-CPU samples are recorded when the thread comes back, after later samples of
        // others: in time order by their own time (stable: equal times keep their order).
        true => sorted_by_time(profile.timeline())
            .into_iter()
            .map(|t| {
                let counts = Counts {
                    samples: 1,
                    weight: t.weight,
                };
                (profile.stack(t.stack), meta.shown_value(counts))
            })
            .collect(),
        false => profile.shown_stacks().collect(),
    };
    for (ids, count) in samples {
        let thread_at = ids.iter().position(|&id| {
            frames
                .get(id as usize)
                .is_some_and(|f| f.kind == FrameKind::Thread)
        });
        let (prefix, sample) = match thread_at {
            Some(i) if i + 1 < ids.len() => (&ids[..=i], &ids[i + 1..]),
            Some(i) => (&ids[..=i], &ids[i..]),
            None => (&ids[..0], ids),
        };
        let at = *by_prefix.entry(prefix).or_insert_with(|| {
            builders.push(Builder {
                name: profile_name(prefix, frames, title),
                samples: Vec::new(),
                counts: Vec::new(),
                total: 0,
            });
            builders.len() - 1
        });
        let b = &mut builders[at];
        b.samples.push(sample.to_vec());
        b.counts.push(count);
        b.total = b.total.saturating_add(count);
    }
    if builders.is_empty() {
        builders.push(Builder {
            name: title.to_string(),
            samples: Vec::new(),
            counts: Vec::new(),
            total: 0,
        });
    }

    let mut active_profile_index = 0;
    for (i, b) in builders.iter().enumerate() {
        if b.total > builders[active_profile_index].total {
            active_profile_index = i;
        }
    }
    let profiles = builders
        .into_iter()
        .map(|b| to_sampled(b, per_second(meta)))
        .collect();
    let file = File {
        schema: SCHEMA,
        shared: Shared {
            frames: frames.iter().map(speedscope_frame).collect(),
        },
        profiles,
        name: title,
        active_profile_index,
        exporter: format!("pyspy-bpf {}", env!("CARGO_PKG_VERSION")),
    };
    serde_json::to_writer(&mut *out, &file)?;
    out.write_all(b"\n")
}

/// `python3 (12) / thread 12 "MainThread"`: the labels of the frames up to the thread.
fn sorted_by_time(timeline: &[TimedSample]) -> Vec<&TimedSample> {
    let mut v: Vec<&TimedSample> = timeline.iter().collect();
    v.sort_by_key(|t| t.offset_ns);
    v
}

fn profile_name(prefix: &[u32], frames: &[ProfileFrame], title: &str) -> String {
    if prefix.is_empty() {
        return title.to_string();
    }
    prefix
        .iter()
        .map(|&id| {
            frames
                .get(id as usize)
                .map_or(UNKNOWN_NAME.to_string(), frame_label)
        })
        .collect::<Vec<_>>()
        .join(" / ")
}

/// Shown values per second: the rate (samples), a million (microseconds of a profile weighted
/// in nanoseconds), or 0 when unknown (plain counts).
fn per_second(meta: &ProfileMeta) -> u32 {
    match meta.unit {
        WeightUnit::Samples => meta.rate_hz,
        WeightUnit::Nanoseconds => 1_000_000,
    }
}

fn to_sampled(b: Builder, per_second: u32) -> SampledProfile {
    let (unit, end_value, weights) = if per_second > 0 {
        let rate = f64::from(per_second);
        let w: Vec<f64> = b.counts.iter().map(|&c| c as f64 / rate).collect();
        ("seconds", b.total as f64 / rate, Weights::Seconds(w))
    } else {
        ("none", b.total as f64, Weights::Counts(b.counts))
    };
    SampledProfile {
        kind: "sampled",
        name: b.name,
        unit,
        start_value: 0.0,
        end_value,
        samples: b.samples,
        weights,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn json(profile: &Profile, meta: &ProfileMeta) -> Value {
        let mut out = Vec::new();
        write(profile, meta, &mut out).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    /// The frame names of each sample of `profile`, leaf last, with its weight.
    fn decoded(v: &Value, profile: usize) -> Vec<(Vec<String>, f64)> {
        let frames = v["shared"]["frames"].as_array().unwrap();
        let p = &v["profiles"][profile];
        let samples = p["samples"].as_array().unwrap();
        let weights = p["weights"].as_array().unwrap();
        assert_eq!(samples.len(), weights.len());
        samples
            .iter()
            .zip(weights)
            .map(|(s, w)| {
                let names = s
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| {
                        frames[i.as_u64().unwrap() as usize]["name"]
                            .as_str()
                            .unwrap()
                            .to_string()
                    })
                    .collect();
                (names, w.as_f64().unwrap())
            })
            .collect()
    }

    #[test]
    fn one_profile_per_thread() {
        let proc_ = ProfileFrame::new(FrameKind::Process, "python3 (10)");
        let t1 = ProfileFrame::new(FrameKind::Thread, "thread 10 \"MainThread\"");
        let t2 = ProfileFrame::new(FrameKind::Thread, "thread 11 \"worker\"");
        let main = ProfileFrame::python("main", "app.py", Some(5));
        let work = ProfileFrame::python("work", "app.py", None);
        let read = ProfileFrame::new(FrameKind::Kernel, "vfs_read");
        let mut p = Profile::new();
        p.add(&[proc_.clone(), t1.clone(), main.clone()], 2);
        p.add(&[proc_.clone(), t2.clone(), work.clone(), read.clone()], 6);
        p.add(&[proc_.clone(), t1.clone(), main.clone(), work.clone()], 3);
        p.add(&[proc_.clone(), t2.clone()], 1);
        let v = json(
            &p,
            &ProfileMeta {
                title: "record".into(),
                rate_hz: 0,
                ..Default::default()
            },
        );
        assert_eq!(v["$schema"], SCHEMA);
        assert_eq!(v["name"], "record");

        let frames = v["shared"]["frames"].as_array().unwrap();
        assert_eq!(frames.len(), p.frames().len());
        assert_eq!(frames[2]["name"], "main");
        assert_eq!(frames[2]["file"], "app.py");
        assert_eq!(frames[2]["line"], 5);
        let work_json = frames.iter().find(|f| f["name"] == "work").unwrap();
        assert!(work_json.get("line").is_none());
        assert!(frames.iter().any(|f| f["name"] == "vfs_read_[k]"));

        let profiles = v["profiles"].as_array().unwrap();
        assert_eq!(profiles.len(), 2);
        assert_eq!(
            profiles[0]["name"],
            "python3 (10) / thread 10 \"MainThread\""
        );
        assert_eq!(profiles[1]["name"], "python3 (10) / thread 11 \"worker\"");
        for prof in profiles {
            assert_eq!(prof["type"], "sampled");
            assert_eq!(prof["unit"], "none");
            assert_eq!(prof["startValue"], 0.0);
        }
        assert_eq!(profiles[0]["endValue"], 5.0);
        assert_eq!(profiles[1]["endValue"], 7.0);
        // The busiest thread opens first.
        assert_eq!(v["activeProfileIndex"], 1);

        let s = |names: &[&str], w: f64| (names.iter().map(|n| n.to_string()).collect(), w);
        assert_eq!(
            decoded(&v, 0),
            vec![s(&["main"], 2.0), s(&["main", "work"], 3.0)]
        );
        assert_eq!(
            decoded(&v, 1),
            vec![
                s(&["thread 11 \"worker\""], 1.0),
                s(&["work", "vfs_read_[k]"], 6.0),
            ]
        );
    }

    #[test]
    fn no_threads_one_profile_in_seconds() {
        let mut p = Profile::new();
        p.add(&[ProfileFrame::python("f", "a.py", Some(1))], 50);
        let v = json(
            &p,
            &ProfileMeta {
                title: "t".into(),
                rate_hz: 100,
                ..Default::default()
            },
        );
        let profiles = v["profiles"].as_array().unwrap();
        assert_eq!(profiles.len(), 1);
        assert_eq!(profiles[0]["name"], "t");
        assert_eq!(profiles[0]["unit"], "seconds");
        assert_eq!(profiles[0]["endValue"], 0.5);
        assert_eq!(decoded(&v, 0), vec![(vec!["f".to_string()], 0.5)]);
    }

    #[test]
    fn empty_profile_is_valid() {
        let v = json(&Profile::new(), &ProfileMeta::default());
        assert_eq!(v["name"], DEFAULT_NAME);
        assert_eq!(v["shared"]["frames"].as_array().unwrap().len(), 0);
        let profiles = v["profiles"].as_array().unwrap();
        assert_eq!(profiles.len(), 1);
        assert_eq!(profiles[0]["samples"].as_array().unwrap().len(), 0);
        assert_eq!(profiles[0]["weights"].as_array().unwrap().len(), 0);
        assert_eq!(v["activeProfileIndex"], 0);
    }

    #[test]
    fn samples_recorded_out_of_time_order_are_written_in_time_order() {
        // An off-CPU sample arrives when its thread comes back: after a later one.
        let mut p = Profile::with_meta(ProfileMeta {
            start_unix_ns: 1_000,
            ..ProfileMeta::default()
        });
        let labels = crate::profile::SampleLabels {
            pid: 5,
            tid: Some(6),
            thread_ident: 0,
            thread_name: None,
            process: "python3".into(),
            gil: None,
        };
        let late = ProfileFrame::python("running", "app.py", Some(2));
        let early = ProfileFrame::python("sleeping", "app.py", Some(1));
        p.add_sample(std::slice::from_ref(&late), &labels, Some(9_000), 1, 7);
        p.add_sample(std::slice::from_ref(&early), &labels, Some(2_000), 1, 5);
        let meta = p.meta.clone();
        let v = json(&p, &meta);
        let names: Vec<&str> = v["shared"]["frames"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        let first = v["profiles"][0]["samples"][0][0].as_u64().unwrap() as usize;
        let second = v["profiles"][0]["samples"][1][0].as_u64().unwrap() as usize;
        assert_eq!(names[first], "sleeping", "{v}");
        assert_eq!(names[second], "running", "{v}");
    }
}
