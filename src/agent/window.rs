//! Windows: the agent's samples cut every `--interval` into one labelled profile per process
//! (or per service), each with the window's start time and duration.
//!
//! A process's labels (service name, container, version) are inferred once, at its first
//! sample, and kept only while it is sampled: at each cut the labels of processes that had no
//! sample in the window are dropped, so a fleet whose processes come and go holds only what is
//! alive now.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::agent::config::GroupBy;
use crate::agent::labels::{self, ProcessLabels};
use crate::frames::{identity_frames, sample_labels};
use crate::model::{PyVersion, StackTrace};
use crate::profile::{unix_ns, Profile, ProfileMeta};
use crate::sampler::source::SampleProcess;

/// Distinct stacks a window holds (over all its profiles) before it is cut early: a bound on
/// the agent's memory whatever the host runs (~100 bytes a stack, frames aside).
pub const MAX_WINDOW_STACKS: usize = 200_000;

/// What the windows are cut with; changed by a config reload.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSettings {
    pub rate_hz: u32,
    pub group_by: GroupBy,
    /// Static labels from the config, on every profile.
    pub labels: BTreeMap<String, String>,
    pub hostname: String,
}

/// A process's labels, inferred once.
#[derive(Debug, Clone)]
pub struct ProcessMeta {
    pub pid: u32,
    pub labels: ProcessLabels,
    pub python: Option<PyVersion>,
}

/// One profile of a window, and who it is about.
#[derive(Debug)]
pub struct WindowProfile {
    pub service: String,
    /// The process, when profiles are grouped by process.
    pub process: Option<Arc<ProcessMeta>>,
    pub profile: Profile,
}

/// A cut window: every profile with a sample in it.
#[derive(Debug)]
pub struct Window {
    pub start_unix_ns: u64,
    pub duration: Duration,
    pub profiles: Vec<WindowProfile>,
}

impl Window {
    pub fn end_unix_ns(&self) -> u64 {
        self.start_unix_ns
            .saturating_add(u64::try_from(self.duration.as_nanos()).unwrap_or(u64::MAX))
    }

    pub fn samples(&self) -> u64 {
        self.profiles
            .iter()
            .map(|p| p.profile.total_samples())
            .sum()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum GroupKey {
    Process(u32, u64),
    Service(String),
}

/// Builds the current window from samples; `cut` hands it over and starts the next.
pub struct WindowBuilder {
    settings: WindowSettings,
    start_unix_ns: u64,
    started: Instant,
    groups: HashMap<GroupKey, WindowProfile>,
    stacks: usize,
    /// Labels of processes seen, by (pid, start time).
    processes: HashMap<(u32, u64), Arc<ProcessMeta>>,
    seen: HashSet<(u32, u64)>,
    /// How labels are found for a new process (the real `/proc` reader, or a test's).
    infer: fn(u32) -> ProcessLabels,
}

impl WindowBuilder {
    pub fn new(settings: WindowSettings) -> Self {
        Self::with_inference(settings, labels::for_process)
    }

    pub fn with_inference(settings: WindowSettings, infer: fn(u32) -> ProcessLabels) -> Self {
        WindowBuilder {
            settings,
            start_unix_ns: unix_ns(SystemTime::now()),
            started: Instant::now(),
            groups: HashMap::new(),
            stacks: 0,
            processes: HashMap::new(),
            seen: HashSet::new(),
            infer,
        }
    }

    /// Applies new settings from the next cut on (a window is cut with one set of settings).
    pub fn set_settings(&mut self, settings: WindowSettings) {
        self.settings = settings;
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether the window holds as many stacks as it may: cut it now.
    pub fn is_full(&self) -> bool {
        self.stacks >= MAX_WINDOW_STACKS
    }

    /// Processes whose labels are kept (those sampled in this window or the last).
    pub fn known_processes(&self) -> usize {
        self.processes.len()
    }

    pub fn add(&mut self, stack: &StackTrace, process: &SampleProcess) {
        let id = (stack.pid, process.start_time);
        let meta = match self.processes.get(&id) {
            Some(meta) => meta.clone(),
            None => {
                let meta = Arc::new(ProcessMeta {
                    pid: stack.pid,
                    labels: (self.infer)(stack.pid),
                    python: process.python,
                });
                self.processes.insert(id, meta.clone());
                meta
            }
        };
        self.seen.insert(id);
        let key = match self.settings.group_by {
            GroupBy::Process => GroupKey::Process(id.0, id.1),
            GroupBy::Service => GroupKey::Service(meta.labels.service_name.clone()),
        };
        let settings = &self.settings;
        let start = self.start_unix_ns;
        let group = self.groups.entry(key).or_insert_with(|| WindowProfile {
            service: meta.labels.service_name.clone(),
            profile: Profile::with_meta(profile_meta(settings, start, &meta)),
            process: (settings.group_by == GroupBy::Process).then(|| meta.clone()),
        });
        let before = group.profile.num_stacks();
        // The process is named by its executable, as the profile's `process` label. No time
        // per sample: a window's time is its start and duration, and what the agent sends
        // (pprof, Pyroscope, OTLP as written here) carries no sample timestamps, so a
        // timeline would only hold memory (up to `MAX_TIMELINE` entries a profile). A CPU
        // sample weighs one, as in `record`.
        group.profile.add_sample(
            &identity_frames(stack),
            &sample_labels(stack, &meta.labels.process),
            None,
            1,
            1,
        );
        self.stacks += group.profile.num_stacks() - before;
    }

    /// The window so far; the next one starts now.
    pub fn cut(&mut self) -> Window {
        let now = unix_ns(SystemTime::now());
        let duration = self.started.elapsed();
        let mut profiles: Vec<WindowProfile> = self.groups.drain().map(|(_, p)| p).collect();
        profiles.sort_by(|a, b| {
            (&a.service, a.process.as_ref().map(|p| p.pid))
                .cmp(&(&b.service, b.process.as_ref().map(|p| p.pid)))
        });
        for p in &mut profiles {
            p.profile.meta.duration_secs = duration.as_secs_f64();
        }
        let window = Window {
            start_unix_ns: self.start_unix_ns,
            duration,
            profiles,
        };
        // Forget the processes that had no sample in this window: they have most likely
        // exited, and one that comes back is labelled again.
        let seen = std::mem::take(&mut self.seen);
        self.processes.retain(|id, _| seen.contains(id));
        self.start_unix_ns = now;
        self.started = Instant::now();
        self.stacks = 0;
        window
    }
}

/// The profile-wide labels of one process's (or service's) profile.
fn profile_meta(settings: &WindowSettings, start_unix_ns: u64, meta: &ProcessMeta) -> ProfileMeta {
    let mut labels = vec![
        ("service_name".to_string(), meta.labels.service_name.clone()),
        ("hostname".to_string(), settings.hostname.clone()),
    ];
    if settings.group_by == GroupBy::Process {
        labels.push(("pid".into(), meta.pid.to_string()));
        labels.push(("process".into(), meta.labels.process.clone()));
        if let Some(v) = meta.python {
            labels.push(("python_version".into(), v.to_string()));
        }
        if let Some(id) = &meta.labels.container_id {
            labels.push(("container_id".into(), id.clone()));
        }
    }
    for (k, v) in &settings.labels {
        if !labels.iter().any(|(have, _)| have == k) {
            labels.push((k.clone(), v.clone()));
        }
    }
    ProfileMeta {
        title: format!("pyspy-bpf agent: {}", meta.labels.service_name),
        start_unix_ns,
        labels,
        ..ProfileMeta::cpu("", settings.rate_hz)
    }
}

/// This host's name (`/proc/sys/kernel/hostname`, as `uname -n`).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::labels::ServiceSource;
    use crate::model::{Frame, PyFrame};

    fn fake_labels(pid: u32) -> ProcessLabels {
        ProcessLabels {
            service_name: format!("svc{}", pid % 2),
            source: ServiceSource::CommandLine,
            container_id: None,
            process: "python3".into(),
        }
    }

    fn stack(pid: u32, function: &str) -> StackTrace {
        StackTrace {
            pid,
            tid: Some(pid),
            thread_name: Some("MainThread".into()),
            thread_ident: 1,
            active: true,
            owns_gil: Some(true),
            frames: vec![Frame::Python(PyFrame {
                function: function.into(),
                filename: "/app/x.py".into(),
                line: 3,
                first_line: 1,
            })],
        }
    }

    fn settings(group_by: GroupBy) -> WindowSettings {
        WindowSettings {
            rate_hz: 19,
            group_by,
            labels: [("env".to_string(), "prod".to_string())].into(),
            hostname: "host1".into(),
        }
    }

    fn process(start_time: u64) -> SampleProcess<'static> {
        SampleProcess {
            pid: 0,
            name: "python3",
            details: &crate::process::details::UNKNOWN,
            python: Some(PyVersion::new(3, 11, 7)),
            start_time,
        }
    }

    #[test]
    fn one_profile_per_process_with_its_labels() {
        let mut w = WindowBuilder::with_inference(settings(GroupBy::Process), fake_labels);
        w.add(&stack(10, "a"), &process(1));
        w.add(&stack(10, "a"), &process(1));
        w.add(&stack(11, "b"), &process(1));
        let window = w.cut();
        assert_eq!(window.profiles.len(), 2);
        let p = &window.profiles[0];
        assert_eq!(p.service, "svc0");
        assert_eq!(p.profile.total_samples(), 2);
        let labels: HashMap<_, _> = p.profile.meta.labels.iter().cloned().collect();
        assert_eq!(labels["service_name"], "svc0");
        assert_eq!(labels["hostname"], "host1");
        assert_eq!(labels["pid"], "10");
        assert_eq!(labels["python_version"], "3.11.7");
        assert_eq!(labels["env"], "prod");
        assert_eq!(p.profile.meta.start_unix_ns, window.start_unix_ns);
        assert!(p.profile.meta.period_ns > 0);
        assert_eq!(window.samples(), 3);
        // The next window starts empty, where this one ended.
        let next = w.cut();
        assert!(next.profiles.is_empty());
        assert!(next.start_unix_ns >= window.start_unix_ns);
    }

    #[test]
    fn grouping_by_service_merges_processes() {
        let mut w = WindowBuilder::with_inference(settings(GroupBy::Service), fake_labels);
        w.add(&stack(10, "a"), &process(1));
        w.add(&stack(12, "a"), &process(1));
        w.add(&stack(11, "b"), &process(1));
        let window = w.cut();
        assert_eq!(window.profiles.len(), 2);
        assert_eq!(window.profiles[0].service, "svc0");
        assert_eq!(window.profiles[0].profile.total_samples(), 2);
        assert!(window.profiles[0].process.is_none());
    }

    #[test]
    fn labels_of_processes_not_seen_are_dropped() {
        let mut w = WindowBuilder::with_inference(settings(GroupBy::Process), fake_labels);
        for pid in 0..100 {
            w.add(&stack(pid, "a"), &process(1));
        }
        w.cut();
        assert_eq!(w.known_processes(), 100);
        w.add(&stack(5, "a"), &process(1));
        w.cut();
        assert_eq!(w.known_processes(), 1);
        // The same pid with another start time is another process.
        w.add(&stack(5, "a"), &process(2));
        w.cut();
        assert_eq!(w.known_processes(), 1);
    }
}
