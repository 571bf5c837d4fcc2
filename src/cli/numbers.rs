//! Value parsers for the numeric options (`--rate`, `--duration`, `--delay`, `--pid`): each
//! rejects what cannot be used (NaN, infinities, negatives, zero, absurd sizes) with a message
//! naming the accepted range, so nothing starts on a value that would fail later.

/// The highest `--rate`: above it the per-sample work costs more CPU than the profiled program
/// gets, and one sample every 100 µs is finer than a Python line takes.
pub const MAX_RATE_HZ: u32 = 10_000;
/// The longest `--duration`: a year. Longer spans are typos, and `Duration` cannot hold
/// seconds beyond ~5.8e11 years at all.
pub const MAX_DURATION_SECS: f64 = 365.0 * 86_400.0;
/// The shortest `--duration`: one 100 Hz sample period.
pub const MIN_DURATION_SECS: f64 = 0.01;
/// `--delay` bounds: a refresh faster than 10 ms only burns CPU; a day is already odd.
pub const MIN_DELAY_SECS: f64 = 0.01;
pub const MAX_DELAY_SECS: f64 = 86_400.0;
/// The kernel's `PID_MAX_LIMIT` on 64-bit: no pid is larger.
pub const MAX_PID: u32 = 4 * 1024 * 1024;

/// `--rate`: samples per second, 1 to `MAX_RATE_HZ`.
pub fn rate(s: &str) -> Result<u32, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u32>() {
        return match n {
            0 => Err("the rate must be at least 1 sample per second".into()),
            n if n > MAX_RATE_HZ => Err(format!(
                "{n} samples per second is above the maximum, {MAX_RATE_HZ}"
            )),
            n => Ok(n),
        };
    }
    // `1e9`, `20000.0`, `-1`: say what is wrong with the number, not only that it is not one.
    match t.parse::<f64>() {
        Ok(x) if x.is_finite() && x > MAX_RATE_HZ as f64 => Err(format!(
            "{s} samples per second is above the maximum, {MAX_RATE_HZ}"
        )),
        Ok(x) if x.is_finite() && x < 1.0 => {
            Err("the rate must be at least 1 sample per second".into())
        }
        _ => Err(format!(
            "{s:?} is not a whole number of samples per second (1 to {MAX_RATE_HZ})"
        )),
    }
}

/// `--duration`: seconds, `MIN_DURATION_SECS` to `MAX_DURATION_SECS`.
pub fn duration(s: &str) -> Result<f64, String> {
    seconds(s, MIN_DURATION_SECS, MAX_DURATION_SECS, "a duration")
}

/// `--delay`: seconds between refreshes, `MIN_DELAY_SECS` to `MAX_DELAY_SECS`.
pub fn delay(s: &str) -> Result<f64, String> {
    seconds(s, MIN_DELAY_SECS, MAX_DELAY_SECS, "a refresh interval")
}

/// `--offcpu-min` bounds: below 10 µs the off-CPU program would record most context switches
/// of a busy host; above a minute it would record nearly none.
pub const MIN_OFFCPU_NS: u64 = 10_000;
pub const MAX_OFFCPU_NS: u64 = 60_000_000_000;

/// `--offcpu-min`: a duration with a unit, `ns`, `us`, `ms` or `s` (`500us`, `1ms`, `0.2s`); a
/// bare number is milliseconds. Returned in nanoseconds, `MIN_OFFCPU_NS` to `MAX_OFFCPU_NS`.
pub fn off_cpu_min(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (number, ns_per) = [
        ("ns", 1.0),
        ("us", 1e3),
        ("µs", 1e3),
        ("ms", 1e6),
        ("s", 1e9),
    ]
    .iter()
    .find_map(|&(unit, per)| Some((t.strip_suffix(unit)?, per)))
    .unwrap_or((t, 1e6));
    let bad = || {
        format!(
            "{s:?} is not a duration from 10us to 60s (a number with ns, us, ms or s; a bare number is milliseconds)"
        )
    };
    match number.trim().parse::<f64>() {
        Ok(x) if x.is_finite() => {
            let ns = x * ns_per;
            if (MIN_OFFCPU_NS as f64..=MAX_OFFCPU_NS as f64).contains(&ns) {
                Ok(ns.round() as u64)
            } else {
                Err(bad())
            }
        }
        _ => Err(bad()),
    }
}

/// `diff --threshold`, `--min-change`: a percentage, 0 to 100.
pub fn percent(s: &str) -> Result<f64, String> {
    match s.trim().trim_end_matches('%').parse::<f64>() {
        Ok(x) if x.is_finite() && (0.0..=100.0).contains(&x) => Ok(x),
        _ => Err(format!("{s:?} is not a percentage (0 to 100)")),
    }
}

/// `diff --alpha`: a probability strictly between 0 and 1.
pub fn probability(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 && x < 1.0 => Ok(x),
        _ => Err(format!("{s:?} is not a probability (between 0 and 1)")),
    }
}

fn seconds(s: &str, min: f64, max: f64, what: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && (min..=max).contains(&x) => Ok(x),
        _ => Err(format!("{s:?} is not {what} in seconds ({min} to {max})")),
    }
}

/// `--pid`: a process id, 1 to `MAX_PID` (0 is not a process; pids above the limit do not
/// exist on any kernel).
pub fn pid(s: &str) -> Result<u32, String> {
    // A hex pid (`0x4b90`), as py-spy takes it.
    let t = s.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => t.parse::<u32>(),
    };
    match parsed {
        Ok(p) if (1..=MAX_PID).contains(&p) => Ok(p),
        _ => Err(format!("{s:?} is not a process id (1 to {MAX_PID})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_pids() {
        assert_eq!(pid("1234"), Ok(1234));
        assert_eq!(pid("0x4b90"), Ok(0x4b90));
        assert_eq!(pid("0X4B90"), Ok(0x4b90));
        assert!(pid("0x").is_err());
        assert!(pid("0").is_err());
        assert!(pid("-5").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(rate("1"), Ok(1));
        assert_eq!(rate("10000"), Ok(10_000));
        assert!(rate("0").unwrap_err().contains("at least 1"));
        assert!(rate("10001").unwrap_err().contains("maximum, 10000"));
        assert!(rate("1e9").unwrap_err().contains("maximum, 10000"));
        assert!(rate("99999999999999").unwrap_err().contains("maximum"));
        assert!(rate("-1").unwrap_err().contains("at least 1"));
        assert!(rate("nan").is_err());
        assert!(rate("inf").is_err());
        assert!(rate("fast").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(duration("1.5"), Ok(1.5));
        assert_eq!(duration("31536000"), Ok(MAX_DURATION_SECS));
        for bad in [
            "nan", "NaN", "inf", "-inf", "-1", "0", "1e300", "31536001", "", "x",
        ] {
            let e = duration(bad).unwrap_err();
            assert!(e.contains("0.01 to 31536000"), "{bad}: {e}");
        }
    }

    #[test]
    fn delays() {
        assert_eq!(delay("0.5"), Ok(0.5));
        for bad in ["0", "nan", "inf", "-1", "1e300"] {
            assert!(delay(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pids() {
        assert_eq!(pid("1"), Ok(1));
        for bad in ["0", "-5", "4194305", "99999999999", "x", "1.5"] {
            assert!(pid(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn off_cpu_minimum_takes_units() {
        assert_eq!(off_cpu_min("1ms"), Ok(1_000_000));
        assert_eq!(off_cpu_min("2"), Ok(2_000_000));
        assert_eq!(off_cpu_min("500us"), Ok(500_000));
        assert_eq!(off_cpu_min("0.25s"), Ok(250_000_000));
        assert_eq!(off_cpu_min("10000ns"), Ok(10_000));
        for bad in ["", "ms", "5us", "61s", "-1ms", "nan", "1h", "1e400"] {
            let e = off_cpu_min(bad).unwrap_err();
            assert!(e.contains("10us to 60s"), "{bad}: {e}");
        }
    }
}
