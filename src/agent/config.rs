//! The agent's configuration: a TOML file (every key documented in `packaging/agent.toml`)
//! with command-line flags on top, checked whole before anything starts. A mistake is one
//! line naming the file, the key and what is wrong.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Default sampling rate: off the 100 Hz / 1 kHz grid that timers in the profiled programs
/// use, so that sampling does not lock step with periodic work.
pub const DEFAULT_RATE_HZ: u32 = 19;
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
pub const DEFAULT_SPOOL_BYTES: u64 = 1 << 30;
pub const DEFAULT_BACKLOG_BYTES: u64 = 256 << 20;
pub const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_STATE_DIR: &str = "/var/lib/pyspy-bpf";
/// The shortest window: shorter ones would cost more in export than they tell.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
const MAX_INTERVAL: Duration = Duration::from_secs(3600);

/// The agent's settings, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    pub rate_hz: u32,
    pub interval: Duration,
    /// The perf event that drives sampling (`cpu-clock`, `cycles`).
    pub event: crate::bpf::PerfEventKind,
    pub native: bool,
    /// Only Python processes (the default); `false` also profiles every other process.
    pub python_only: bool,
    pub group_by: GroupBy,
    /// Static labels added to every profile (`env = "prod"`).
    pub labels: BTreeMap<String, String>,
    /// Where backlogs of undelivered windows live (`STATE_DIR/backlog/SINK`).
    pub state_dir: PathBuf,
    pub metrics_addr: Option<SocketAddr>,
    /// How long SIGTERM waits for the last windows to be delivered.
    pub flush_timeout: Duration,
    pub sinks: Vec<SinkConfig>,
}

/// One profile per process per window, or one per service (its processes merged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Process,
    Service,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig {
    /// Unique among the sinks: names its metrics and its backlog directory.
    pub name: String,
    pub kind: SinkKind,
    /// Bytes of undelivered windows kept on disk while the sink fails; oldest dropped first.
    pub backlog_bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SinkKind {
    Spool {
        dir: PathBuf,
        max_bytes: u64,
    },
    Pyroscope {
        url: String,
        tenant: Option<String>,
        auth: Auth,
    },
    Otlp {
        url: String,
        auth: Auth,
    },
}

impl SinkKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkKind::Spool { .. } => "spool",
            SinkKind::Pyroscope { .. } => "pyroscope",
            SinkKind::Otlp { .. } => "otlp",
        }
    }
}

/// How an HTTP sink authenticates; secrets are read from files (never from the config or
/// the command line, which other users may read in `/proc`).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Auth {
    #[default]
    None,
    Basic {
        user: String,
        password_file: PathBuf,
    },
    Bearer {
        token_file: PathBuf,
    },
}

/// The file as written. Unknown keys are errors: a typo must not silently mean a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    rate: Option<u32>,
    interval: Option<DurationValue>,
    event: Option<String>,
    native: Option<bool>,
    python_only: Option<bool>,
    group_by: Option<GroupBy>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    state_dir: Option<PathBuf>,
    metrics_addr: Option<String>,
    flush_timeout: Option<DurationValue>,
    #[serde(default)]
    sink: Vec<FileSink>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSink {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    dir: Option<PathBuf>,
    max_size: Option<SizeValue>,
    url: Option<String>,
    tenant: Option<String>,
    basic_auth_user: Option<String>,
    basic_auth_password_file: Option<PathBuf>,
    bearer_token_file: Option<PathBuf>,
    backlog_size: Option<SizeValue>,
}

/// `15` (seconds) or `"15s"`, `"500ms"`, `"2m"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum DurationValue {
    Seconds(f64),
    Text(String),
}

/// `1073741824` (bytes) or `"1GiB"`, `"512MiB"`, `"10MB"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(u64),
    Text(String),
}

/// What the command line adds to, or sets over, the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub rate: Option<u32>,
    pub interval: Option<String>,
    pub event: Option<String>,
    pub native: bool,
    pub all_processes: bool,
    pub group_by: Option<GroupBy>,
    pub labels: Vec<String>,
    pub state_dir: Option<PathBuf>,
    pub metrics_addr: Option<String>,
    pub spool: Option<PathBuf>,
    pub pyroscope: Option<String>,
    pub otlp: Option<String>,
}

/// Reads `file` (if any), applies `overrides`, and checks the whole. The error is one line.
pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<AgentConfig, String> {
    let (parsed, origin) = match file {
        Some(path) => {
            let text = read_config_file(path)?;
            let parsed: FileConfig = toml::from_str(&text)
                .map_err(|e| format!("{}: {}", path.display(), one_line(&e.to_string())))?;
            (parsed, path.display().to_string())
        }
        None => (FileConfig::default(), "command line".to_string()),
    };
    resolve(parsed, overrides).map_err(|e| format!("{origin}: {e}"))
}

/// At most 1 MiB: a config file is small, and anything else named by mistake is refused
/// quickly.
fn read_config_file(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).map_err(|e| format!("{}: cannot open: {e}", path.display()))?;
    let mut text = String::new();
    file.take(1 << 20)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    Ok(text)
}

fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '|' || c == '^' || c == ' '))
        .collect::<Vec<_>>()
        .join(" ")
}

fn resolve(file: FileConfig, o: &Overrides) -> Result<AgentConfig, String> {
    let rate_hz = o.rate.or(file.rate).unwrap_or(DEFAULT_RATE_HZ);
    if !(1..=10_000).contains(&rate_hz) {
        return Err(format!("rate: {rate_hz} Hz is outside 1..=10000"));
    }
    let interval = match (&o.interval, &file.interval) {
        (Some(text), _) => parse_duration(text).map_err(|e| format!("--interval: {e}"))?,
        (None, Some(v)) => duration_value(v).map_err(|e| format!("interval: {e}"))?,
        (None, None) => DEFAULT_INTERVAL,
    };
    if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) {
        return Err(format!(
            "interval: {:?} is outside {:?}..={:?}",
            interval, MIN_INTERVAL, MAX_INTERVAL
        ));
    }
    let flush_timeout = match &file.flush_timeout {
        Some(v) => duration_value(v).map_err(|e| format!("flush_timeout: {e}"))?,
        None => DEFAULT_FLUSH_TIMEOUT,
    };
    let mut labels = file.labels;
    for (key, _) in labels.iter() {
        check_label_name(key).map_err(|e| format!("labels.{key}: {e}"))?;
    }
    for pair in &o.labels {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("--label {pair:?}: expected KEY=VALUE"))?;
        check_label_name(k).map_err(|e| format!("--label {k}: {e}"))?;
        labels.insert(k.to_string(), v.to_string());
    }
    for (key, value) in labels.iter() {
        if value.is_empty() || value.chars().any(char::is_control) {
            return Err(format!(
                "labels.{key}: the value must be non-empty printable text"
            ));
        }
    }
    let metrics_addr = match o.metrics_addr.as_ref().or(file.metrics_addr.as_ref()) {
        None => None,
        Some(a) if a.is_empty() => None,
        Some(a) => Some(
            a.parse::<SocketAddr>()
                .map_err(|_| format!("metrics_addr: {a:?} is not an IP:PORT address"))?,
        ),
    };
    let state_dir = o
        .state_dir
        .clone()
        .or(file.state_dir)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    if !state_dir.is_absolute() {
        return Err(format!(
            "state_dir: {} is not an absolute path",
            state_dir.display()
        ));
    }
    let mut sinks = Vec::new();
    for (i, s) in file.sink.into_iter().enumerate() {
        sinks.push(file_sink(s).map_err(|e| format!("sink[{i}]: {e}"))?);
    }
    if let Some(dir) = &o.spool {
        sinks.push(
            spool_sink(None, dir.clone(), DEFAULT_SPOOL_BYTES)
                .map_err(|e| format!("--spool: {e}"))?,
        );
    }
    if let Some(url) = &o.pyroscope {
        check_url(url).map_err(|e| format!("--pyroscope: {e}"))?;
        sinks.push(SinkConfig {
            name: String::new(),
            kind: SinkKind::Pyroscope {
                url: url.trim_end_matches('/').to_string(),
                tenant: None,
                auth: Auth::None,
            },
            backlog_bytes: DEFAULT_BACKLOG_BYTES,
        });
    }
    if let Some(url) = &o.otlp {
        check_url(url).map_err(|e| format!("--otlp: {e}"))?;
        sinks.push(SinkConfig {
            name: String::new(),
            kind: SinkKind::Otlp {
                url: url.trim_end_matches('/').to_string(),
                auth: Auth::None,
            },
            backlog_bytes: DEFAULT_BACKLOG_BYTES,
        });
    }
    if sinks.is_empty() {
        return Err("no sink: give --spool DIR, --pyroscope URL or --otlp URL, or [[sink]] tables in --config".into());
    }
    name_sinks(&mut sinks)?;
    let event = match o.event.as_ref().or(file.event.as_ref()) {
        Some(e) => e.parse().map_err(|why| format!("event: {why}"))?,
        None => crate::bpf::PerfEventKind::CpuClock,
    };
    Ok(AgentConfig {
        rate_hz,
        interval,
        event,
        native: o.native || file.native.unwrap_or(false),
        python_only: !o.all_processes && file.python_only.unwrap_or(true),
        group_by: o.group_by.or(file.group_by).unwrap_or(GroupBy::Process),
        labels,
        state_dir,
        metrics_addr,
        flush_timeout,
        sinks,
    })
}

/// Sinks without a name are named by type (`spool`, `pyroscope-2`); names must be unique and
/// usable as a directory name.
fn name_sinks(sinks: &mut [SinkConfig]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for i in 0..sinks.len() {
        if sinks[i].name.is_empty() {
            let base = sinks[i].kind.type_name();
            let mut name = base.to_string();
            let mut n = 1;
            while seen.contains(&name) || sinks.iter().any(|s| s.name == name) {
                n += 1;
                name = format!("{base}-{n}");
            }
            sinks[i].name = name;
        }
        let name = &sinks[i].name;
        if crate::safe_fs::safe_name(name).as_deref() != Some(name.as_str()) {
            return Err(format!(
                "sink name {name:?}: use letters, digits, '.', '_', '+' and '-' (at most {} bytes)",
                crate::safe_fs::MAX_SAFE_NAME
            ));
        }
        if !seen.insert(name.clone()) {
            return Err(format!("sink name {name:?} is used twice"));
        }
    }
    Ok(())
}

fn file_sink(s: FileSink) -> Result<SinkConfig, String> {
    let unexpected = |key: &str, present: bool| -> Result<(), String> {
        match present {
            true => Err(format!("{key} does not apply to a {} sink", s.kind)),
            false => Ok(()),
        }
    };
    let backlog_bytes = match &s.backlog_size {
        Some(v) => size_value(v).map_err(|e| format!("backlog_size: {e}"))?,
        None => DEFAULT_BACKLOG_BYTES,
    };
    let mut sink = match s.kind.as_str() {
        "spool" => {
            unexpected("url", s.url.is_some())?;
            unexpected("tenant", s.tenant.is_some())?;
            unexpected("basic_auth_user", s.basic_auth_user.is_some())?;
            unexpected("bearer_token_file", s.bearer_token_file.is_some())?;
            let dir = s.dir.clone().ok_or("a spool sink needs dir")?;
            let max = match &s.max_size {
                Some(v) => size_value(v).map_err(|e| format!("max_size: {e}"))?,
                None => DEFAULT_SPOOL_BYTES,
            };
            spool_sink(s.name.clone(), dir, max)?
        }
        "pyroscope" | "otlp" => {
            unexpected("dir", s.dir.is_some())?;
            unexpected("max_size", s.max_size.is_some())?;
            let url = s
                .url
                .clone()
                .ok_or(format!("a {} sink needs url", s.kind))?;
            check_url(&url).map_err(|e| format!("url: {e}"))?;
            let auth = match (
                &s.basic_auth_user,
                &s.basic_auth_password_file,
                &s.bearer_token_file,
            ) {
                (None, None, None) => Auth::None,
                (Some(user), Some(file), None) => Auth::Basic {
                    user: user.clone(),
                    password_file: file.clone(),
                },
                (None, None, Some(file)) => Auth::Bearer {
                    token_file: file.clone(),
                },
                (Some(_), None, _) | (None, Some(_), _) => {
                    return Err(
                        "basic auth needs both basic_auth_user and basic_auth_password_file".into(),
                    )
                }
                _ => return Err("give basic auth or a bearer token, not both".into()),
            };
            let url = url.trim_end_matches('/').to_string();
            let kind = match s.kind.as_str() {
                "pyroscope" => SinkKind::Pyroscope {
                    url,
                    tenant: s.tenant.clone(),
                    auth,
                },
                _ => {
                    unexpected("tenant", s.tenant.is_some())?;
                    SinkKind::Otlp { url, auth }
                }
            };
            SinkConfig {
                name: s.name.clone().unwrap_or_default(),
                kind,
                backlog_bytes,
            }
        }
        other => {
            return Err(format!(
                "type {other:?}: expected \"spool\", \"pyroscope\" or \"otlp\""
            ))
        }
    };
    sink.backlog_bytes = backlog_bytes;
    Ok(sink)
}

fn spool_sink(name: Option<String>, dir: PathBuf, max_bytes: u64) -> Result<SinkConfig, String> {
    if !dir.is_absolute() {
        return Err(format!(
            "{}: the spool directory must be an absolute path",
            dir.display()
        ));
    }
    if max_bytes < 1 << 20 {
        return Err(format!("max_size: {max_bytes} bytes is less than 1 MiB"));
    }
    Ok(SinkConfig {
        name: name.unwrap_or_default(),
        kind: SinkKind::Spool { dir, max_bytes },
        backlog_bytes: DEFAULT_BACKLOG_BYTES,
    })
}

/// `http://` or `https://`, a host, no query or fragment (the sink adds its own path).
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url:?} does not start with http:// or https://"))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    if url.contains(['?', '#', ' ']) || url.chars().any(char::is_control) {
        return Err(format!(
            "{url:?}: no query, fragment, spaces or control characters"
        ));
    }
    url.parse::<ureq::http::Uri>()
        .map_err(|e| format!("{url:?}: {e}"))?;
    Ok(())
}

/// Label names as Prometheus and Pyroscope take them: `[a-zA-Z_][a-zA-Z0-9_.]*`.
fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    match ok && name.len() <= 64 {
        true => Ok(()),
        false => {
            Err("a label name is letters, digits, '_' and '.', not starting with a digit".into())
        }
    }
}

fn duration_value(v: &DurationValue) -> Result<Duration, String> {
    match v {
        DurationValue::Seconds(s) if s.is_finite() && *s >= 0.0 && *s < 1e9 => {
            Ok(Duration::from_secs_f64(*s))
        }
        DurationValue::Seconds(s) => Err(format!("{s} is not a duration in seconds")),
        DurationValue::Text(t) => parse_duration(t),
    }
}

/// `"15s"`, `"500ms"`, `"2m"`, `"1h"`, or plain seconds `"15"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 15s, 500ms, 2m)"))?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("{text:?}: unknown unit (ms, s, m, h)")),
    };
    let secs = value * scale;
    match secs.is_finite() && secs < 1e9 {
        true => Ok(Duration::from_secs_f64(secs)),
        false => Err(format!("{text:?} is too long")),
    }
}

fn size_value(v: &SizeValue) -> Result<u64, String> {
    match v {
        SizeValue::Bytes(b) => Ok(*b),
        SizeValue::Text(t) => parse_size(t),
    }
}

/// `"1GiB"`, `"512MiB"`, `"64KiB"`, `"10MB"`, `"1000"`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 1GiB, 512MiB)"))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit (KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
            ))
        }
    };
    value
        .checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_text(text: &str) -> Result<AgentConfig, String> {
        let parsed: FileConfig = toml::from_str(text).map_err(|e| one_line(&e.to_string()))?;
        resolve(parsed, &Overrides::default())
    }

    #[test]
    fn a_full_file_resolves() {
        let c = from_text(
            r#"
rate = 29
interval = "30s"
group_by = "service"
metrics_addr = "127.0.0.1:9464"
[labels]
env = "prod"
[[sink]]
type = "spool"
dir = "/var/spool/p"
max_size = "2GiB"
[[sink]]
type = "pyroscope"
url = "https://pyroscope.example:4040/"
tenant = "team"
bearer_token_file = "/etc/t"
[[sink]]
type = "otlp"
name = "collector"
url = "http://127.0.0.1:4318"
backlog_size = "64MiB"
"#,
        )
        .unwrap();
        assert_eq!(c.rate_hz, 29);
        assert_eq!(c.interval, Duration::from_secs(30));
        assert_eq!(c.group_by, GroupBy::Service);
        assert_eq!(c.labels["env"], "prod");
        assert_eq!(c.sinks.len(), 3);
        assert_eq!(c.sinks[0].name, "spool");
        assert_eq!(
            c.sinks[0].kind,
            SinkKind::Spool {
                dir: "/var/spool/p".into(),
                max_bytes: 2 << 30
            }
        );
        assert_eq!(c.sinks[1].name, "pyroscope");
        match &c.sinks[1].kind {
            SinkKind::Pyroscope { url, tenant, auth } => {
                assert_eq!(url, "https://pyroscope.example:4040");
                assert_eq!(tenant.as_deref(), Some("team"));
                assert_eq!(
                    auth,
                    &Auth::Bearer {
                        token_file: "/etc/t".into()
                    }
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.sinks[2].name, "collector");
        assert_eq!(c.sinks[2].backlog_bytes, 64 << 20);
    }

    #[test]
    fn the_shipped_example_config_is_valid() {
        let c = from_text(include_str!("../../packaging/agent.toml")).unwrap();
        assert_eq!(c.rate_hz, DEFAULT_RATE_HZ);
        assert_eq!(c.interval, DEFAULT_INTERVAL);
        assert_eq!(c.sinks.len(), 1);
        assert_eq!(c.labels["env"], "prod");
    }

    #[test]
    fn defaults() {
        let c = resolve(
            FileConfig::default(),
            &Overrides {
                spool: Some("/tmp/s".into()),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(c.rate_hz, 19);
        assert_eq!(c.interval, Duration::from_secs(15));
        assert!(c.python_only);
        assert_eq!(c.metrics_addr, None);
        assert_eq!(c.sinks[0].name, "spool");
    }

    #[test]
    fn mistakes_name_the_key() {
        let err =
            from_text("rate = 19\nbogus = 1\n[[sink]]\ntype='spool'\ndir='/x'\n").unwrap_err();
        assert!(err.contains("bogus"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        let err = from_text("[[sink]]\ntype = 'pyroscope'\nurl = 'ftp://x'\n").unwrap_err();
        assert!(
            err.contains("sink[0]: url") && err.contains("http://"),
            "{err}"
        );
        let err = from_text("[[sink]]\ntype = 'spool'\ndir = 'relative'\n").unwrap_err();
        assert!(err.contains("absolute"), "{err}");
        let err = from_text("interval = '0.1s'\n[[sink]]\ntype='spool'\ndir='/x'\n").unwrap_err();
        assert!(err.contains("interval"), "{err}");
        let err = from_text("[[sink]]\ntype = 'kafka'\n").unwrap_err();
        assert!(err.contains("kafka"), "{err}");
        let err = from_text("[[sink]]\ntype = 'spool'\ndir = '/a'\nname='x/y'\n").unwrap_err();
        assert!(err.contains("sink name"), "{err}");
        let err =
            from_text("[labels]\n'1bad' = 'x'\n[[sink]]\ntype='spool'\ndir='/x'\n").unwrap_err();
        assert!(err.contains("labels.1bad"), "{err}");
        let err = from_text("rate = 19\n").unwrap_err();
        assert!(err.contains("no sink"), "{err}");
        let err =
            from_text("[[sink]]\ntype='otlp'\nurl='http://h'\nbasic_auth_user='u'\n").unwrap_err();
        assert!(err.contains("basic auth"), "{err}");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("10MB").unwrap(), 10_000_000);
        assert!(parse_size("1ZiB").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("nan").is_err());
        assert!(parse_duration("1e300").is_err());
    }

    #[test]
    fn urls() {
        assert!(check_url("http://127.0.0.1:4040").is_ok());
        assert!(check_url("https://h/prefix").is_ok());
        assert!(check_url("http://").is_err());
        assert!(check_url("http://h/?a=b").is_err());
        assert!(check_url("h:4040").is_err());
    }
}
