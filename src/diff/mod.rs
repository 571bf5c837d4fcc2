//! `diff`: does HEAD spend a larger share of its samples in some function than BASE, by more
//! than sampling noise and run-to-run variation explain, and by more than a minimum effect?
//!
//! Per function (file + name; + line with `--lines`) the self share (samples where it is the
//! innermost frame) is tested, and the total share (anywhere on the stack, once per stack) is
//! shown beside it (`--metric total` gates on it instead). The test (`stats::test_shares`) is a
//! two-proportion z test on the pooled counts, or Welch's t on the runs' shares where several
//! runs per side vary more than sampling explains; p values are corrected for the number of
//! functions tested (Holm). A function is a regression only if its corrected p is below
//! `alpha` *and* its share grew by at least the absolute and the relative threshold.
//! Shares are compositional (when one function takes longer every other share shrinks), so
//! each function is compared against the bulk of the program: base shares are scaled by the
//! median head/base ratio of the tested functions (the typical function did not change). Functions
//! whose share is below the absolute threshold on both sides cannot pass it and are not tested
//! (they would only dilute the correction).
//!
//! Assumptions: samples are independent draws of where the program is (timer sampling of a
//! CPU-bound job is close to that; bursts of correlated samples make the z test
//! over-confident, which several runs per side correct for); both sides ran the same job
//! with the same sampler, rate and kind of profile (checked, refused otherwise).

pub mod report;
pub mod shares;
pub mod stats;

use std::collections::BTreeSet;

use crate::profile::Profile;
use shares::{shares, FunctionKey, ShareOptions, Shares};
use stats::{
    critical_difference, holm, median_ratio, relative_change, test_shares, Dispersion, Side,
};

/// What to compare and how strict to be.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    pub shares: ShareOptions,
    /// Family-wise error rate (after the Holm correction).
    pub alpha: f64,
    /// Minimum change of the function's time relative to the rest of the program
    /// (`stats::relative_change`; 0.05 = 5% slower).
    pub relative_threshold: f64,
    /// Minimum change of share in absolute terms (0.005 = 0.5 percentage points).
    pub absolute_threshold: f64,
    /// Gate on total (inclusive) shares instead of self shares.
    pub total: bool,
    /// Compare profiles of different kinds or rates anyway.
    pub force: bool,
    /// Fewer samples than this on a side: inconclusive.
    pub min_samples: u64,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            shares: ShareOptions::default(),
            alpha: 0.05,
            relative_threshold: 0.05,
            absolute_threshold: 0.005,
            total: false,
            force: false,
            min_samples: 200,
        }
    }
}

/// What happened to one function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Regressed,
    Improved,
    Unchanged,
}

/// One function's comparison.
#[derive(Debug, Clone)]
pub struct Row {
    pub function: FunctionKey,
    pub base_self: f64,
    pub head_self: f64,
    pub base_total: f64,
    pub head_total: f64,
    /// Uncorrected and Holm-corrected p of the gated metric.
    pub p: f64,
    pub q: f64,
    /// The change of the function's time against the bulk (`stats::relative_change`).
    pub relative: f64,
    pub verdict: Verdict,
}

impl Row {
    /// The gated metric's base and head share.
    pub fn gated(&self, total: bool) -> (f64, f64) {
        match total {
            true => (self.base_total, self.head_total),
            false => (self.base_self, self.head_self),
        }
    }
}

/// The whole comparison.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub rows: Vec<Row>,
    pub base_samples: Vec<u64>,
    pub head_samples: Vec<u64>,
    /// The smallest change of share the test calls significant (at the corrected level) for
    /// the function with the largest base share, and that share; None with nothing tested.
    pub detectable: Option<(f64, f64)>,
    /// Why the result cannot be trusted either way, when it cannot.
    pub inconclusive: Option<String>,
    pub total: bool,
    /// How much more than sampling noise the runs varied (1: not at all, or single runs).
    pub dispersion: Dispersion,
    /// The median head/base ratio of the tested functions' shares (`stats::median_ratio`).
    pub scale: f64,
    /// Wall-clock profiles (weighted in nanoseconds): the nanoseconds one of `base_samples`
    /// and `head_samples` stands for (they count time in sampling periods, and shares are
    /// shares of time). `None`: sample counts.
    pub period_ns: Option<f64>,
}

impl Comparison {
    pub fn count(&self, v: Verdict) -> usize {
        self.rows.iter().filter(|r| r.verdict == v).count()
    }

    /// 0 no significant regression, 1 a regression, 3 inconclusive (2 is for bad input).
    pub fn exit_code(&self) -> i32 {
        if self.count(Verdict::Regressed) > 0 {
            1
        } else if self.inconclusive.is_some() {
            3
        } else {
            0
        }
    }
}

/// Refuses profiles that measure different things, unless forced.
pub fn check_comparable(base: &[Profile], head: &[Profile], force: bool) -> anyhow::Result<()> {
    let all: Vec<&Profile> = base.iter().chain(head).collect();
    let Some(first) = all.first() else {
        anyhow::bail!("no profiles to compare");
    };
    if force {
        return Ok(());
    }
    for p in &all {
        if (p.meta.kind, p.meta.unit) != (first.meta.kind, first.meta.unit) {
            anyhow::bail!(
                "the profiles measure different things ({} in {:?} vs {} in {:?}); comparing them means nothing (--force to compare anyway)",
                first.meta.kind.name(),
                first.meta.unit,
                p.meta.kind.name(),
                p.meta.unit
            );
        }
    }
    let rates: Vec<u32> = all
        .iter()
        .map(|p| p.meta.rate_hz)
        .filter(|&r| r > 0)
        .collect();
    if let (Some(lo), Some(hi)) = (rates.iter().min(), rates.iter().max()) {
        if *hi > lo.saturating_mul(2) {
            anyhow::bail!(
                "the profiles were sampled at very different rates ({lo} Hz and {hi} Hz): record both sides alike (--force to compare anyway)"
            );
        }
    }
    Ok(())
}

/// Compares BASE runs with HEAD runs (one profile per run).
pub fn compare(
    base: &[Profile],
    head: &[Profile],
    opts: &DiffOptions,
) -> anyhow::Result<Comparison> {
    check_comparable(base, head, opts.force)?;
    let base: Vec<Shares> = base.iter().map(|p| shares(p, &opts.shares)).collect();
    let head: Vec<Shares> = head.iter().map(|p| shares(p, &opts.shares)).collect();
    // (Samples' worth: a wall profile's nanoseconds in sampling periods.)
    let base_n: Vec<u64> = base.iter().map(|s| s.in_samples(s.total) as u64).collect();
    let head_n: Vec<u64> = head.iter().map(|s| s.in_samples(s.total) as u64).collect();

    let keys: BTreeSet<&FunctionKey> = base
        .iter()
        .chain(&head)
        .flat_map(|s| s.total_counts.keys())
        .collect();
    let side = |runs: &[Shares], key: &FunctionKey, total: bool| Side {
        hits: runs
            .iter()
            .map(|s| {
                let counts = if total {
                    &s.total_counts
                } else {
                    &s.self_counts
                };
                s.in_samples(counts.get(key).copied().unwrap_or(0))
            })
            .collect(),
        totals: runs.iter().map(|s| s.in_samples(s.total)).collect(),
    };

    struct Candidate<'k> {
        key: &'k FunctionKey,
        sides: [Side; 4],
    }
    let candidates: Vec<Candidate> = keys
        .into_iter()
        .map(|key| Candidate {
            key,
            sides: [
                side(&base, key, false),
                side(&head, key, false),
                side(&base, key, true),
                side(&head, key, true),
            ],
        })
        .collect();
    let gated = |_: &Candidate| -> (usize, usize) {
        if opts.total {
            (2, 3)
        } else {
            (0, 1)
        }
    };
    // Below the absolute threshold on both sides a function cannot change by that much: not
    // tested (it would only dilute the correction), nor used to estimate the dispersion.
    let testable = |c: &Candidate| {
        let (b, h) = gated(c);
        c.sides[b].share().max(c.sides[h].share()) >= opts.absolute_threshold
    };
    let dispersion = Dispersion::estimate(candidates.iter().filter(|c| testable(c)).map(|c| {
        let (b, h) = gated(c);
        (&c.sides[b], &c.sides[h])
    }));

    // Shares are compositional: compare each function against the bulk of the program.
    let scale = median_ratio(candidates.iter().filter(|c| testable(c)).map(|c| {
        let (b, h) = gated(c);
        (c.sides[b].share(), c.sides[h].share())
    }));

    let mut rows = Vec::new();
    let mut tests = Vec::new();
    for c in &candidates {
        let (b, h) = gated(c);
        let tested = test_shares(&c.sides[b], &c.sides[h], dispersion, scale);
        if testable(c) {
            tests.push((rows.len(), tested));
        }
        rows.push(Row {
            function: c.key.clone(),
            base_self: c.sides[0].share(),
            head_self: c.sides[1].share(),
            base_total: c.sides[2].share(),
            head_total: c.sides[3].share(),
            p: tested.p,
            q: 1.0,
            relative: relative_change(tested.base_share, tested.head_share, scale),
            verdict: Verdict::Unchanged,
        });
    }
    let adjusted = holm(&tests.iter().map(|(_, t)| t.p).collect::<Vec<_>>());
    for ((i, t), q) in tests.iter().zip(&adjusted) {
        let row = &mut rows[*i];
        row.q = *q;
        let change = t.head_share - scale * t.base_share;
        let big_enough = change.abs() >= opts.absolute_threshold
            && row.relative.abs() >= opts.relative_threshold;
        if *q < opts.alpha && big_enough {
            row.verdict = if change > 0.0 {
                Verdict::Regressed
            } else {
                Verdict::Improved
            };
        }
    }

    // What the test could have seen: for the function with the largest base share (the one
    // whose share moves most for a given slowdown, and the noisiest), the smallest change it
    // calls significant at the corrected level. Above the threshold, "no regression" would
    // only mean "too noisy to tell".
    let m = tests.len().max(1) as f64;
    let detectable = tests
        .iter()
        .max_by(|a, b| a.1.base_share.total_cmp(&b.1.base_share))
        .map(|(_, t)| {
            (
                critical_difference(t.std_error, opts.alpha / m),
                t.base_share,
            )
        });
    let min_side = |n: &[u64]| n.iter().sum::<u64>();
    let too_few = min_side(&base_n) < opts.min_samples || min_side(&head_n) < opts.min_samples;
    if too_few {
        // Nothing is decided on a handful of samples, a regression no more than its absence.
        for row in &mut rows {
            row.verdict = Verdict::Unchanged;
        }
    }
    let regressed = rows.iter().any(|r| r.verdict == Verdict::Regressed);
    // A regression found is a conclusion; only "no regression" can be too weak to trust.
    let inconclusive = if regressed {
        None
    } else if min_side(&base_n) < opts.min_samples || min_side(&head_n) < opts.min_samples {
        Some(format!(
            "too few samples to decide ({} base, {} head; at least {} a side): record longer or at a higher rate",
            min_side(&base_n),
            min_side(&head_n),
            opts.min_samples
        ))
    } else {
        match detectable {
            Some((mdc, share)) => {
                let needed = opts.absolute_threshold.max(share * opts.relative_threshold);
                (mdc > needed).then(|| {
                    format!(
                        "at these sample counts only a change of {:.2} percentage points could be seen in a function at {:.1}% (the threshold asks for {:.2}): record longer, at a higher rate, or more runs",
                        mdc * 100.0,
                        share * 100.0,
                        needed * 100.0
                    )
                })
            }
            None => Some("no function was sampled on either side".to_string()),
        }
    };
    rows.sort_by(|a, b| {
        let rank = |r: &Row| match r.verdict {
            Verdict::Regressed => 0,
            Verdict::Improved => 1,
            Verdict::Unchanged => 2,
        };
        let (ab, ah) = a.gated(opts.total);
        let (bb, bh) = b.gated(opts.total);
        rank(a)
            .cmp(&rank(b))
            .then((bh - bb).abs().total_cmp(&(ah - ab).abs()))
            .then(a.function.cmp(&b.function))
    });
    Ok(Comparison {
        rows,
        base_samples: base_n,
        head_samples: head_n,
        detectable,
        inconclusive,
        total: opts.total,
        dispersion,
        scale,
        period_ns: base
            .first()
            .filter(|s| s.unit != 1.0 || head.iter().any(|h| h.unit != 1.0))
            .map(|s| s.unit),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{ProfileFrame, ProfileMeta};

    /// A profile of three functions with these sample counts, called from `main`.
    fn run(a: u64, b: u64, c: u64) -> Profile {
        let mut p = Profile::with_meta(ProfileMeta::cpu("t", 1000));
        let main = ProfileFrame::python("main", "/w/work.py", Some(1));
        for (name, n) in [("big", a), ("mid", b), ("small", c)] {
            p.add(
                &[
                    main.clone(),
                    ProfileFrame::python(name, "/w/work.py", Some(5)),
                ],
                n,
            );
        }
        p
    }

    #[test]
    fn unchanged_passes_and_regression_names_the_function() {
        let opts = DiffOptions::default();
        let base = [
            run(5200, 2900, 1900),
            run(5210, 2890, 1900),
            run(5190, 2905, 1905),
        ];
        let same = compare(
            &base,
            &[
                run(5180, 2920, 1900),
                run(5200, 2900, 1900),
                run(5220, 2880, 1900),
            ],
            &opts,
        )
        .unwrap();
        assert_eq!(same.count(Verdict::Regressed), 0, "{same:?}");
        assert_eq!(same.exit_code(), 0, "{same:?}");

        // `big` 10% slower: 5720 / 10520 = 54.4% against 52%.
        let slower = compare(
            &base,
            &[
                run(5720, 2900, 1900),
                run(5700, 2910, 1890),
                run(5730, 2895, 1905),
            ],
            &opts,
        )
        .unwrap();
        assert_eq!(slower.exit_code(), 1);
        let regressed: Vec<&str> = slower
            .rows
            .iter()
            .filter(|r| r.verdict == Verdict::Regressed)
            .map(|r| r.function.name.as_str())
            .collect();
        assert_eq!(regressed, vec!["big"]);
    }

    #[test]
    fn too_few_samples_is_inconclusive_not_a_pass() {
        let c = compare(
            &[run(52, 29, 19)],
            &[run(55, 27, 18)],
            &DiffOptions::default(),
        )
        .unwrap();
        assert_eq!(c.exit_code(), 3, "{c:?}");
        // Enough samples for the threshold count but not for 2-point moves of the big one.
        let opts = DiffOptions {
            min_samples: 10,
            ..Default::default()
        };
        let c = compare(&[run(260, 145, 95)], &[run(262, 143, 95)], &opts).unwrap();
        assert_eq!(c.exit_code(), 3, "{c:?}");
        assert!(c.inconclusive.unwrap().contains("percentage points"));
    }

    /// A wall profile at 100 Hz: `cpu` on-CPU samples of `work` (one period each) and `sleeps`
    /// off-CPU stretches of `sleep_ms` each in `wait`, called from `main`.
    fn wall_run(cpu: u64, sleeps: u64, sleep_ms: u64) -> Profile {
        let mut p = Profile::with_meta(ProfileMeta::wall("t", 100));
        let period = p.meta.period_ns;
        let main = ProfileFrame::python("main", "/w/work.py", Some(1));
        let labels = crate::profile::SampleLabels::default();
        let work = [
            main.clone(),
            ProfileFrame::python("work", "/w/work.py", Some(5)),
        ];
        p.add_sample(&work, &labels, None, cpu, cpu * period);
        let wait = [main, ProfileFrame::python("wait", "/w/work.py", Some(9))];
        p.add_sample(&wait, &labels, None, sleeps, sleeps * sleep_ms * 1_000_000);
        p
    }

    #[test]
    fn wall_profiles_are_compared_by_time_not_samples() {
        // Base: 60 s of work (6000 samples) and 60 s asleep in 600 sleeps of 100 ms: half the
        // time each. Head: the same number of sleeps, each twice as long: `wait` is 2/3 of
        // the wall time. By samples it would be 600/6600 on both sides: unchanged.
        let opts = DiffOptions::default();
        let base = [wall_run(6000, 600, 100)];
        let head = [wall_run(6000, 600, 200)];
        let c = compare(&base, &head, &opts).unwrap();
        let wait = c.rows.iter().find(|r| r.function.name == "wait").unwrap();
        assert!((wait.base_self - 0.5).abs() < 1e-9, "{wait:?}");
        assert!((wait.head_self - 2.0 / 3.0).abs() < 1e-9, "{wait:?}");
        assert_eq!(wait.verdict, Verdict::Regressed, "{c:?}");
        // Sample counts are time in periods: 120 s at 100 Hz is 12000 samples' worth.
        assert_eq!(c.base_samples, vec![12_000]);
        assert!(
            crate::diff::report::summary(&c).contains("120.0 s of wall time"),
            "{}",
            crate::diff::report::summary(&c)
        );
        let same = compare(&base, &[wall_run(6000, 600, 100)], &opts).unwrap();
        assert_eq!(same.exit_code(), 0, "{same:?}");
    }

    #[test]
    fn different_kinds_and_rates_are_refused() {
        let mut wall = run(10, 10, 10);
        wall.meta.kind = crate::profile::SampleKind::Wall;
        let e = compare(&[run(10, 10, 10)], &[wall.clone()], &DiffOptions::default()).unwrap_err();
        assert!(e.to_string().contains("different things"), "{e}");
        let mut fast = run(10, 10, 10);
        fast.meta.rate_hz = 10_000;
        let e = compare(&[run(10, 10, 10)], &[fast], &DiffOptions::default()).unwrap_err();
        assert!(e.to_string().contains("rates"), "{e}");
        let forced = DiffOptions {
            force: true,
            ..Default::default()
        };
        assert!(compare(&[run(10, 10, 10)], &[wall], &forced).is_ok());
    }
}
