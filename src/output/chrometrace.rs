//! Chrome trace (Trace Event Format JSON, as py-spy's `chrometrace`): one track per thread,
//! the samples in time order turned into nested begin/end events, so a frame spans the time
//! from the first sample it is on to the first sample it is not. A sample stands for the time
//! it weighs (one period; a wall-clock sample off the CPU, its time away): a thread not seen
//! for longer than that (asleep, in a CPU profile) has no frames open in between, rather than
//! its last stack stretched over the gap. Loadable by Perfetto (ui.perfetto.dev) and
//! chrome://tracing.
//!
//! It needs the profile's timeline (a recording's samples in time order): a profile read back
//! from pprof or collapsed stacks has none, and is refused with a line saying so. A recording
//! longer than the timeline holds (`MAX_TIMELINE`) shows its first samples and says so in
//! the trace's metadata.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;
use serde_json::json;

use super::frame_label;
use crate::frames::{present_frame, thread_label, FrameOptions};
use crate::profile::{Profile, SampleLabels, WeightUnit};

#[derive(Serialize)]
struct Event<'a> {
    name: &'a str,
    cat: &'static str,
    ph: &'static str,
    /// Microseconds since the recording started.
    ts: f64,
    pid: u32,
    tid: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    args: Option<serde_json::Value>,
}

/// A sample on a thread's track: offset (ns since the start), stack id, weight.
type TrackSample = (u64, u32, u64);

/// Writes `profile`'s timeline as a Chrome trace.
pub fn write(profile: &Profile, view: FrameOptions, out: &mut dyn Write) -> io::Result<()> {
    if profile.timeline().is_empty() && !profile.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "this profile has no timeline (samples in time order): a chrometrace needs a recording, not a profile read back from pprof or collapsed stacks",
        ));
    }
    let labels: Vec<String> = profile
        .frames()
        .iter()
        .map(|f| frame_label(&present_frame(f, view)))
        .collect();
    // A sample stands for one period (when known), or its weight in a wall-clock profile.
    let period_us = match profile.meta.period_ns {
        0 => 10_000.0,
        p => p as f64 / 1000.0,
    };
    let in_ns = profile.meta.unit == WeightUnit::Nanoseconds;
    let stands_for_us = |weight: u64| match weight {
        w if in_ns && w > 0 => w as f64 / 1000.0,
        _ => period_us,
    };

    // Per thread, its samples in time order.
    let mut threads: BTreeMap<(u32, u64), Vec<TrackSample>> = BTreeMap::new();
    let mut names: BTreeMap<(u32, u64), &SampleLabels> = BTreeMap::new();
    for t in profile.timeline() {
        let l = profile.labels(t.labels);
        let key = (l.pid, track_id(l));
        threads
            .entry(key)
            .or_default()
            .push((t.offset_ns, t.stack, t.weight));
        // The latest: a thread's `threading` name may be read only after its first samples
        // (named by its OS name until then).
        names.insert(key, l);
    }

    let mut events: Vec<Event> = Vec::new();
    let mut processes: BTreeMap<u32, &str> = BTreeMap::new();
    for (&(pid, tid), l) in &names {
        processes.entry(pid).or_insert(&l.process);
        events.push(Event {
            name: "thread_name",
            cat: "__metadata",
            ph: "M",
            ts: 0.0,
            pid,
            tid,
            args: Some(json!({ "name": thread_label(l) })),
        });
    }
    for (&pid, &name) in &processes {
        events.push(Event {
            name: "process_name",
            cat: "__metadata",
            ph: "M",
            ts: 0.0,
            pid,
            tid: 0,
            args: Some(json!({ "name": if name.is_empty() { "?" } else { name } })),
        });
    }
    for (&(pid, tid), samples) in threads.iter_mut() {
        samples.sort_by_key(|&(t, _, _)| t);
        let mut open: &[u32] = &[];
        // Until when the open frames' last sample stands.
        let mut open_until = 0.0;
        for &(offset_ns, stack, weight) in samples.iter() {
            let ts = offset_ns as f64 / 1000.0;
            let stack = profile.stack(stack);
            // Not seen for more than one more period (the rate's jitter moves samples by less):
            // the thread was elsewhere, and its frames end where its last sample did.
            if ts > open_until + period_us {
                for &id in open.iter().rev() {
                    events.push(end(&labels[id as usize], open_until, pid, tid));
                }
                open = &[];
            }
            let common = open
                .iter()
                .zip(stack)
                .take_while(|(a, b)| labels[**a as usize] == labels[**b as usize])
                .count();
            for &id in open[common..].iter().rev() {
                events.push(end(&labels[id as usize], ts, pid, tid));
            }
            for &id in &stack[common..] {
                events.push(Event {
                    name: &labels[id as usize],
                    cat: "pyspy-bpf",
                    ph: "B",
                    ts,
                    pid,
                    tid,
                    args: None,
                });
            }
            open = stack;
            open_until = ts + stands_for_us(weight);
        }
        for &id in open.iter().rev() {
            events.push(end(&labels[id as usize], open_until, pid, tid));
        }
    }
    let trace = json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "title": profile.meta.title,
            "start_unix_ns": profile.meta.start_unix_ns,
            "samples": profile.total_samples(),
            "samples_not_in_timeline": profile.timeline_dropped(),
            "exporter": format!("pyspy-bpf {}", env!("CARGO_PKG_VERSION")),
        },
    });
    serde_json::to_writer(&mut *out, &trace)?;
    out.write_all(b"\n")
}

/// The track of a thread: its OS tid, else the thread id CPython stores.
fn track_id(l: &SampleLabels) -> u64 {
    l.tid.map_or(l.thread_ident, u64::from)
}

fn end(name: &str, ts: f64, pid: u32, tid: u64) -> Event<'_> {
    Event {
        name,
        cat: "pyspy-bpf",
        ph: "E",
        ts,
        pid,
        tid,
        args: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{ProfileFrame, ProfileMeta};

    #[test]
    fn nested_begin_and_end_per_thread() {
        let mut p = Profile::with_meta(ProfileMeta {
            start_unix_ns: 1_000_000,
            period_ns: 10_000_000,
            ..ProfileMeta::default()
        });
        let l = |tid| SampleLabels {
            pid: 5,
            tid: Some(tid),
            thread_ident: 0,
            thread_name: Some(format!("t{tid}")),
            process: "python3".into(),
            gil: None,
        };
        let main = ProfileFrame::python("main", "/a/app.py", Some(1));
        let f = ProfileFrame::python("f", "/a/app.py", Some(2));
        let g = ProfileFrame::python("g", "/a/app.py", Some(3));
        p.add_sample(&[main.clone(), f.clone()], &l(6), Some(1_000_000), 1, 1);
        p.add_sample(&[main.clone(), g.clone()], &l(6), Some(11_000_000), 1, 1);
        p.add_sample(&[main.clone()], &l(7), Some(1_000_000), 1, 1);
        let v = trace(&p);
        let ev = v["traceEvents"].as_array().unwrap();
        let t6 = track(&v, 6);
        let want = [
            ("B", "main (app.py:1)", 0.0),
            ("B", "f (app.py:2)", 0.0),
            ("E", "f (app.py:2)", 10_000.0),
            ("B", "g (app.py:3)", 10_000.0),
            ("E", "g (app.py:3)", 20_000.0),
            ("E", "main (app.py:1)", 20_000.0),
        ];
        assert_eq!(t6.len(), want.len(), "{t6:?}");
        for (got, want) in t6.iter().zip(want) {
            assert_eq!((got.0.as_str(), got.1.as_str(), got.2), want);
        }
        assert_eq!(track(&v, 7).len(), 2);
        assert!(ev
            .iter()
            .any(|e| e["ph"] == "M" && e["args"]["name"] == "thread \"t7\" (7)"));
        assert!(ev
            .iter()
            .any(|e| e["name"] == "process_name" && e["args"]["name"] == "python3"));
    }

    /// `p` written as a Chrome trace, parsed.
    fn trace(p: &Profile) -> serde_json::Value {
        let mut out = Vec::new();
        write(p, FrameOptions::default(), &mut out).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    /// The (phase, name, µs) events of thread `tid`'s track.
    fn track(v: &serde_json::Value, tid: u64) -> Vec<(String, String, f64)> {
        v["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["tid"] == tid && e["ph"] != "M")
            .map(|e| {
                (
                    e["ph"].as_str().unwrap().to_string(),
                    e["name"].as_str().unwrap().to_string(),
                    e["ts"].as_f64().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn a_sample_spans_the_time_it_stands_for_and_a_gap_closes_the_frames() {
        let l = SampleLabels {
            pid: 5,
            tid: Some(6),
            thread_ident: 0,
            thread_name: None,
            process: "python3".into(),
            gil: None,
        };
        let work = ProfileFrame::python("work", "/a/app.py", Some(1));
        let nap = ProfileFrame::python("nap", "/a/app.py", Some(2));
        let ms = 1_000_000;
        // CPU: two samples 10 ms apart, then none for a second (the thread slept).
        let mut cpu = Profile::with_meta(ProfileMeta {
            period_ns: 10 * ms,
            ..ProfileMeta::default()
        });
        for at in [0, 10, 1010] {
            cpu.add_sample(std::slice::from_ref(&work), &l, Some(at * ms), 1, 1);
        }
        let got = track(&trace(&cpu), 6);
        let want = [
            ("B", 0.0),
            ("E", 20_000.0),
            ("B", 1_010_000.0),
            ("E", 1_020_000.0),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, w) in got.iter().zip(want) {
            assert_eq!((g.0.as_str(), g.2), w, "{got:?}");
        }
        // Wall clock: a 500 ms nap off the CPU spans its time away, not one period.
        let mut wall = Profile::with_meta(ProfileMeta {
            period_ns: 10 * ms,
            unit: WeightUnit::Nanoseconds,
            ..ProfileMeta::default()
        });
        wall.add_sample(std::slice::from_ref(&work), &l, Some(0), 1, 10 * ms);
        wall.add_sample(std::slice::from_ref(&nap), &l, Some(10 * ms), 1, 500 * ms);
        wall.add_sample(std::slice::from_ref(&work), &l, Some(515 * ms), 1, 10 * ms);
        let got = track(&trace(&wall), 6);
        let nap_end = got.iter().find(|e| e.0 == "E" && e.1.starts_with("nap"));
        assert_eq!(nap_end.map(|e| e.2), Some(515_000.0), "{got:?}");
        assert_eq!(got.last().map(|e| e.2), Some(525_000.0), "{got:?}");
    }

    #[test]
    fn a_profile_without_timeline_is_refused() {
        let mut p = Profile::new();
        p.add(&[ProfileFrame::python("f", "a.py", Some(1))], 3);
        let e = write(&p, FrameOptions::default(), &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("no timeline"), "{e}");
    }

    #[test]
    fn a_thread_recorded_out_of_time_order_has_its_events_in_time_order() {
        let mut p = Profile::with_meta(ProfileMeta {
            start_unix_ns: 0,
            period_ns: 1_000,
            ..ProfileMeta::default()
        });
        let l = SampleLabels {
            pid: 5,
            tid: Some(6),
            thread_ident: 0,
            thread_name: None,
            process: "python3".into(),
            gil: None,
        };
        let a = ProfileFrame::python("a", "/a/app.py", Some(1));
        let b = ProfileFrame::python("b", "/a/app.py", Some(2));
        p.add_sample(std::slice::from_ref(&a), &l, Some(50_000), 1, 1);
        p.add_sample(std::slice::from_ref(&b), &l, Some(10_000), 1, 40_000);
        p.add_sample(std::slice::from_ref(&a), &l, Some(60_000), 1, 1);
        let mut out = Vec::new();
        write(&p, FrameOptions::default(), &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let ts: Vec<f64> = v["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["ph"] != "M")
            .map(|e| e["ts"].as_f64().unwrap())
            .collect();
        assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{ts:?}");
        assert_eq!(ts.first(), Some(&10.0), "{ts:?}");
    }
}
