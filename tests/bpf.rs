//! BPF sampler tests: the committed object is fresh; the program loads and attaches on this
//! kernel and samples real processes. Sampling needs root (or CAP_BPF + CAP_PERFMON): without
//! it these tests print why and pass, except in CI (`CI` set), where they fail.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pyspy_bpf::bpf::{BpfConfig, BpfError, BpfSampler, PerfEventKind, Samples, COUNTER_NAMES};
use pyspy_bpf::model::{RawSample, StackStatus};

const PYTHON: &str = "/usr/bin/python3";
const COLLECT_FOR_AT_MOST: Duration = Duration::from_secs(10);

/// Whether this process may load BPF programs and open CPU-wide perf events. When it may not:
/// panics in CI, else prints why the test is skipped.
fn privileged(test: &str) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| cap_eff & (1 << cap) != 0;
    // CAP_SYS_ADMIN = 21 (covers both on kernels before 5.8), CAP_PERFMON = 38, CAP_BPF = 39.
    if has(21) || (has(38) && has(39)) {
        return true;
    }
    let reason = format!("{test}: needs root or CAP_BPF + CAP_PERFMON (CapEff {cap_eff:#x})");
    if std::env::var_os("CI").is_some() {
        panic!("{reason}; CI must run the BPF tests as root");
    }
    eprintln!("skipped {reason}");
    false
}

/// A child process killed when the test ends, however it ends.
struct Guard(Child);

impl Guard {
    fn spawn(program: &str, args: &[&str]) -> Guard {
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e}"));
        Guard(child)
    }

    fn busy_python() -> Guard {
        Guard::spawn(PYTHON, &["-c", "while True: pass"])
    }

    /// Spends most of its time in the kernel (zeroing and copying pages).
    fn busy_kernel() -> Guard {
        Guard::spawn("dd", &["if=/dev/zero", "of=/dev/null", "bs=1M"])
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Samples of `pid` until `enough` of them arrived or the time limit passed.
fn collect_of(rx: &mut Samples, pid: u32, enough: usize) -> (Vec<RawSample>, usize) {
    let deadline = Instant::now() + COLLECT_FOR_AT_MOST;
    let mut theirs = Vec::new();
    let mut others = 0;
    while theirs.len() < enough {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(sample) if sample.pid == pid => theirs.push(sample),
            Ok(_) => others += 1,
            Err(_) => break,
        }
    }
    (theirs, others)
}

fn config() -> BpfConfig {
    BpfConfig {
        rate_hz: 1000,
        ..BpfConfig::default()
    }
}

fn counters_by_name(counters: &[(&'static str, u64)]) -> HashMap<&'static str, u64> {
    counters.iter().copied().collect()
}

#[test]
fn loads_attaches_and_reads_counters() {
    if !privileged("loads_attaches_and_reads_counters") {
        return;
    }
    let sampler = BpfSampler::start(&BpfConfig::default()).expect("start the BPF sampler");
    assert!(!sampler.cpus().is_empty());
    let counters = sampler.counters().expect("counters");
    let names: Vec<&str> = counters.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, COUNTER_NAMES);
    assert!(names.contains(&"ringbuf_full") && names.contains(&"queue_full"));
    let last = sampler.stop().expect("stop");
    assert_eq!(last.len(), COUNTER_NAMES.len());
}

#[test]
fn samples_a_busy_python_process() {
    if !privileged("samples_a_busy_python_process") {
        return;
    }
    let mut sampler = BpfSampler::start(&config()).expect("start the BPF sampler");
    let cpus = sampler.cpus().to_vec();
    let mut rx = sampler.spawn_reader(32 << 20).expect("reader");
    let python = Guard::busy_python();
    let (samples, others) = collect_of(&mut rx, python.pid(), 200);
    drop(python);
    let counters = counters_by_name(&sampler.stop().expect("stop"));

    let running: Vec<&RawSample> = samples.iter().filter(|s| s.comm == "python3").collect();
    assert!(
        running.len() >= 20,
        "{} samples of the python pid ({} as python3), {others} of other processes; counters {counters:?}",
        samples.len(),
        running.len()
    );
    for sample in &running {
        assert_eq!(sample.tid, sample.pid, "single-threaded");
        assert!(cpus.contains(&sample.cpu), "cpu {}", sample.cpu);
        assert!(sample.ktime_ns > 0);
        assert_ne!(sample.user_status, StackStatus::Failed, "{sample:?}");
    }
    let with_user_stack = running.iter().filter(|s| !s.user.is_empty()).count();
    assert!(
        with_user_stack * 10 >= running.len() * 9,
        "{with_user_stack} of {} python3 samples have a user stack",
        running.len()
    );
    // The leaf is the interrupted instruction: always a user address. The kernel finds the
    // callers by frame pointers, and Debian's python has none, so deeper entries may be any
    // value (that is why --native unwinds a stack copy instead): only the leaf is checked.
    assert!(running
        .iter()
        .filter_map(|s| s.user.first())
        .all(|&ip| ip < 0x8000_0000_0000_0000));
    assert_eq!(counters["bad_record"], 0);
}

#[test]
fn copies_user_registers_and_stack() {
    if !privileged("copies_user_registers_and_stack") {
        return;
    }
    // dd spends most of its time in the kernel: its registers come from the task's saved
    // user registers there, python's from the sample's own in user mode.
    let python = Guard::busy_python();
    let dd = Guard::busy_kernel();
    let mut sampler = BpfSampler::start(&BpfConfig {
        copy_user_stack: Some(16 * 1024),
        ringbuf_bytes: 32 << 20,
        ..config()
    })
    .expect("start the BPF sampler with a stack copy");
    let mut rx = sampler.spawn_reader(64 << 20).expect("reader");
    let mut of = |pid: u32| collect_of(&mut rx, pid, 50).0;
    let samples: Vec<(&str, Vec<RawSample>)> =
        vec![("python", of(python.pid())), ("dd", of(dd.pid()))];
    drop((python, dd));
    let counters = counters_by_name(&sampler.stop().expect("stop"));
    for (what, samples) in &samples {
        let copied: Vec<&RawSample> = samples
            .iter()
            .filter(|s| s.user_regs.is_some() && !s.user_stack.is_empty())
            .collect();
        assert!(
            samples.len() >= 20 && copied.len() * 10 >= samples.len() * 9,
            "{what}: {} of {} samples with registers and a stack copy; counters {counters:?}",
            copied.len(),
            samples.len()
        );
        for s in copied {
            let regs = s.user_regs.unwrap();
            assert!(
                regs.ip != 0 && regs.ip < 0x8000_0000_0000_0000,
                "{what}: {regs:?}"
            );
            assert!(
                regs.sp != 0 && regs.sp < 0x8000_0000_0000_0000,
                "{what}: {regs:?}"
            );
            // At least the rest of sp's page, at most the 16 KiB asked for plus that page.
            let len = s.user_stack.len();
            assert!((1..=20 * 1024).contains(&len), "{what}: {len} bytes");
            // The copy reaches the end of the stack or the pages asked for.
            assert!(
                len >= 4096 - (regs.sp % 4096) as usize,
                "{what}: {len} bytes"
            );
        }
    }
    assert_eq!(counters["bad_record"], 0);
    assert_eq!(counters["regs_failed"], 0);
}

#[test]
fn target_tgid_keeps_only_that_process_with_kernel_stacks() {
    if !privileged("target_tgid_keeps_only_that_process_with_kernel_stacks") {
        return;
    }
    let _python = Guard::busy_python();
    let dd = Guard::busy_kernel();
    let mut sampler = BpfSampler::start(&BpfConfig {
        target_tgid: Some(dd.pid()),
        ..config()
    })
    .expect("start the BPF sampler");
    let mut rx = sampler.spawn_reader(32 << 20).expect("reader");
    let (samples, others) = collect_of(&mut rx, dd.pid(), 100);
    sampler.stop().expect("stop");

    assert_eq!(others, 0, "samples of other processes arrived");
    assert!(samples.len() >= 20, "only {} samples of dd", samples.len());
    let in_kernel: Vec<&RawSample> = samples.iter().filter(|s| !s.kernel.is_empty()).collect();
    assert!(
        !in_kernel.is_empty(),
        "no kernel stack in {} samples of dd",
        samples.len()
    );
    for sample in &in_kernel {
        assert_eq!(sample.kernel_status, StackStatus::Collected);
        assert!(
            sample.kernel.iter().all(|&ip| ip >= 0xffff_8000_0000_0000),
            "kernel addresses: {:x?}",
            sample.kernel
        );
    }
}

#[test]
fn kernel_stacks_can_be_switched_off() {
    if !privileged("kernel_stacks_can_be_switched_off") {
        return;
    }
    let dd = Guard::busy_kernel();
    let mut sampler = BpfSampler::start(&BpfConfig {
        target_tgid: Some(dd.pid()),
        kernel_stacks: false,
        ..config()
    })
    .expect("start the BPF sampler");
    let mut rx = sampler.spawn_reader(32 << 20).expect("reader");
    let (samples, _) = collect_of(&mut rx, dd.pid(), 50);
    sampler.stop().expect("stop");

    assert!(samples.len() >= 20, "only {} samples of dd", samples.len());
    for sample in &samples {
        assert!(sample.kernel.is_empty(), "{sample:?}");
        assert_eq!(sample.kernel_status, StackStatus::NotCollected);
    }
}

/// The clock event's period is varied (src/bpf/jitter.rs) so that sampling does not alias with
/// periodic code: on each CPU the intervals between samples spread over ±20% of the period,
/// around the period asked for (the median interval). (Every tick is a sample here: the idle task's
/// too.) With a fixed period nearly every interval would be within 5% of 1 ms.
#[test]
fn the_clock_period_varies_around_the_rate() {
    if !privileged("the_clock_period_varies_around_the_rate") {
        return;
    }
    let mut sampler = BpfSampler::start(&BpfConfig {
        include_idle: true,
        kernel_stacks: false,
        ..config()
    })
    .expect("start the BPF sampler");
    let mut rx = sampler.spawn_reader(64 << 20).expect("reader");
    let start = Instant::now();
    let mut by_cpu: HashMap<u32, Vec<u64>> = HashMap::new();
    while start.elapsed() < Duration::from_secs(2) {
        if let Ok(s) = rx.recv_timeout(Duration::from_millis(100)) {
            by_cpu.entry(s.cpu).or_default().push(s.ktime_ns);
        }
    }
    let counters = counters_by_name(&sampler.stop().expect("stop"));
    assert_eq!(counters.get("ringbuf_full").copied().unwrap_or(0), 0);
    let mut intervals = Vec::new();
    let (mut samples, mut span_ns) = (0u64, 0u64);
    for times in by_cpu.values_mut() {
        times.sort_unstable();
        // The first samples: the sampler's start; the rest is steady state.
        let times = &times[times.len().min(50)..];
        if times.len() < 100 {
            continue;
        }
        intervals.extend(times.windows(2).map(|w| w[1] - w[0]));
        samples += times.len() as u64 - 1;
        span_ns += times[times.len() - 1] - times[0];
    }
    assert!(intervals.len() >= 500, "{} intervals", intervals.len());
    // The median interval: a busy VM misses ticks now and then (a vCPU not running when its
    // timer was due: one late tick, not several), which lowers the mean rate but not this.
    let mut sorted = intervals.clone();
    sorted.sort_unstable();
    let median_ms = sorted[sorted.len() / 2] as f64 / 1e6;
    let mean_rate = samples as f64 / (span_ns as f64 / 1e9);
    assert!(
        (median_ms - 1.0).abs() < 0.1,
        "median interval {median_ms:.3} ms (mean rate {mean_rate:.1} Hz), asked for 1 ms"
    );
    let off = intervals
        .iter()
        .filter(|&&ns| (ns as f64 / 1e6 - 1.0).abs() > 0.05)
        .count();
    let share = off as f64 / intervals.len() as f64;
    // Uniform rates in [0.8, 1.2]: ~75% of the periods are more than 5% off 1 ms.
    assert!(
        share > 0.4,
        "{:.0}% of {} intervals more than 5% off 1 ms: the period does not vary",
        share * 100.0,
        intervals.len()
    );
}

#[test]
fn an_unavailable_event_says_so() {
    if !privileged("an_unavailable_event_says_so") {
        return;
    }
    // No hardware PMU (as in most VMs): a clear EventUnavailable. With one: it starts.
    match BpfSampler::start(&BpfConfig {
        event: PerfEventKind::Cycles,
        ..BpfConfig::default()
    }) {
        Ok(sampler) => drop(sampler.stop()),
        Err(err @ BpfError::EventUnavailable { .. }) => {
            assert!(err.to_string().contains("cpu-clock"), "{err}")
        }
        Err(err) => panic!("unexpected error for the cycles event: {err}"),
    }
}

/// `bpf/sampler.bpf.o.inputs` against what this build embedded (`$OUT_DIR/sampler.bpf.o.inputs`,
/// written by build.rs): the sources must be the ones the committed object was built from, and
/// when this build compiled them with the same clang, the object must be byte-identical.
#[test]
fn committed_object_is_fresh() {
    let read = |path: &str| {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
    };
    let committed = Inputs::parse(&read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/bpf/sampler.bpf.o.inputs"
    )));
    let built = Inputs::parse(&read(env!("PYSPY_BPF_BUILT_INPUTS")));
    let update = "run `PYSPY_BPF_UPDATE_OBJECT=1 cargo build` with clang installed and commit bpf/";
    assert_eq!(
        (&built.arch, &built.libbpf_headers, &built.sources),
        (
            &committed.arch,
            &committed.libbpf_headers,
            &committed.sources
        ),
        "bpf/sampler.bpf.o is stale: {update}"
    );
    if built.clang.starts_with("none") {
        assert_eq!(
            built.object, committed.object,
            "bpf/sampler.bpf.o does not match its recorded hash: {update}"
        );
        eprintln!("no clang in this build: checked the sources' hashes only");
    } else if built.clang == committed.clang {
        assert_eq!(
            built.object, committed.object,
            "{} rebuilt bpf/sampler.bpf.o from the same sources into different bytes",
            built.clang
        );
    } else {
        eprintln!(
            "built with {:?}, the committed object with {:?}: not comparing the bytes",
            built.clang, committed.clang
        );
    }
}

/// The parts of a `sampler.bpf.o.inputs` file (format: build.rs).
#[derive(Debug, Default)]
struct Inputs {
    arch: String,
    clang: String,
    libbpf_headers: String,
    sources: Vec<(String, String)>,
    object: String,
}

impl Inputs {
    fn parse(text: &str) -> Inputs {
        let mut inputs = Inputs::default();
        for line in text.lines() {
            if let Some((key, value)) = line.strip_prefix("# ").and_then(|c| c.split_once(": ")) {
                match key {
                    "arch" => inputs.arch = value.into(),
                    "clang" => inputs.clang = value.into(),
                    "libbpf headers" => inputs.libbpf_headers = value.into(),
                    _ => {}
                }
            } else if let Some((hash, path)) = line.split_once("  ") {
                if path == "bpf/sampler.bpf.o" {
                    inputs.object = hash.into();
                } else {
                    inputs.sources.push((hash.into(), path.into()));
                }
            }
        }
        assert!(
            !inputs.arch.is_empty() && !inputs.object.is_empty() && inputs.sources.len() >= 3,
            "malformed inputs file:\n{text}"
        );
        inputs
    }
}
