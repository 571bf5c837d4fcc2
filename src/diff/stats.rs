//! The statistics `diff` rests on: normal and Student-t tail probabilities, a test of two
//! shares that accounts for sampling noise and (with repeated runs) for run-to-run variation
//! (a quasi-binomial dispersion),
//! Holm's correction for testing many functions at once, and the smallest change a test at
//! given sample counts calls significant.
//!
//! No dependency: the special functions are the textbook ones (Abramowitz & Stegun 7.1.26-
//! style erfc via its continued-fraction-free Chebyshev fit; the regularized incomplete beta
//! by Lentz's continued fraction), accurate to ~1e-7, far below what a verdict depends on.

/// `P(Z > z)` for a standard normal Z.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The `p` quantile of the standard normal (Acklam's rational approximation, refined by one
/// Newton step; |error| < 1e-9 for 1e-300 < p < 1).
pub fn normal_quantile(p: f64) -> f64 {
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    const A: [f64; 6] = [
        -3.969683028665376e+01,
        2.209460984245205e+02,
        -2.759285104469687e+02,
        1.383_577_518_672_69e2,
        -3.066479806614716e+01,
        2.506628277459239e+00,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e+01,
        1.615858368580409e+02,
        -1.556989798598866e+02,
        6.680131188771972e+01,
        -1.328068155288572e+01,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-03,
        -3.223964580411365e-01,
        -2.400758277161838e+00,
        -2.549732539343734e+00,
        4.374664141464968e+00,
        2.938163982698783e+00,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-03,
        3.224671290700398e-01,
        2.445134137142996e+00,
        3.754408661907416e+00,
    ];
    let low = 0.02425;
    let x = if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    // One Newton step on the CDF.
    let e = 1.0 - normal_sf(x) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

/// The complementary error function (Numerical Recipes' `erfcc`, fractional error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.26551223
        + t * (1.00002368
            + t * (0.37409196
                + t * (0.09678418
                    + t * (-0.18628806
                        + t * (0.27886807
                            + t * (-1.13520398
                                + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// `ln Γ(x)` for x > 0 (Lanczos, g = 7).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.5203681218851,
        -1259.1392167224028,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507343278686905,
        -0.13857109526572012,
        9.984_369_578_019_572e-6,
        1.5056327351493116e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularized incomplete beta function `I_x(a, b)`.
fn incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    // The continued fraction converges fast for x < (a+1)/(a+b+2); use the symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(x, a, b) / a
    } else {
        1.0 - front * beta_fraction(1.0 - x, b, a) / b
    }
}

/// Lentz's evaluation of the incomplete beta's continued fraction (bounded iterations).
fn beta_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let step = d * c;
        h *= step;
        if (step - 1.0).abs() < 1e-12 {
            break;
        }
    }
    h
}

/// Two-sided `P(|T| > |t|)` for Student's t with `df` degrees of freedom.
pub fn t_two_sided(t: f64, df: f64) -> f64 {
    if !t.is_finite() {
        return 0.0;
    }
    if df > 1e6 {
        return 2.0 * normal_sf(t.abs());
    }
    incomplete_beta(df / (df + t * t), df / 2.0, 0.5)
}

/// One side of a comparison: a function's share in each run, and each run's sample count.
#[derive(Debug, Clone, Default)]
pub struct Side {
    /// The function's samples in each run.
    pub hits: Vec<f64>,
    /// Each run's total samples.
    pub totals: Vec<f64>,
}

impl Side {
    pub fn total(&self) -> f64 {
        self.totals.iter().sum()
    }

    /// The pooled share: the function's samples over all samples.
    pub fn share(&self) -> f64 {
        let n = self.total();
        if n > 0.0 {
            self.hits.iter().sum::<f64>() / n
        } else {
            0.0
        }
    }

    /// Pearson's X² of the runs against the pooled share, and its degrees of freedom (runs
    /// - 1): how much more the runs disagree than sampling alone would make them.
    fn pearson(&self) -> (f64, f64) {
        let p = self.share();
        if self.hits.len() < 2 || p <= 0.0 || p >= 1.0 {
            return (0.0, 0.0);
        }
        let x2 = self
            .hits
            .iter()
            .zip(&self.totals)
            .filter(|(_, &n)| n > 0.0)
            .map(|(h, n)| (h - n * p).powi(2) / (n * p * (1.0 - p)))
            .sum();
        (x2, (self.hits.len() - 1) as f64)
    }
}

/// How much more shares vary from run to run than sampling noise explains (the
/// quasi-binomial dispersion φ ≥ 1), estimated once over every tested function of both
/// sides, with the degrees of freedom it rests on. One estimate for all functions is stable
/// where each function's own few runs would not be (two runs give one degree of freedom).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dispersion {
    pub phi: f64,
    /// Infinite: no repeated runs, sampling noise only (a z test).
    pub df: f64,
}

impl Dispersion {
    pub const SAMPLING_ONLY: Dispersion = Dispersion {
        phi: 1.0,
        df: f64::INFINITY,
    };

    /// From the functions' (base, head) sides.
    pub fn estimate<'a>(sides: impl IntoIterator<Item = (&'a Side, &'a Side)>) -> Dispersion {
        let (mut x2, mut df) = (0.0, 0.0);
        for (b, h) in sides {
            for side in [b, h] {
                let (x, d) = side.pearson();
                x2 += x;
                df += d;
            }
        }
        // Runs that agree as well as sampling predicts (or better): sampling noise decides.
        if df == 0.0 || x2 <= df {
            return Dispersion::SAMPLING_ONLY;
        }
        Dispersion { phi: x2 / df, df }
    }
}

/// Below this many expected samples on a side the normal approximation is wrong, and a
/// function that rare is not tested (p = 1).
pub const MIN_EXPECTED: f64 = 5.0;

/// The test of one function: head's share against base's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tested {
    pub base_share: f64,
    pub head_share: f64,
    /// Standard error of `head_share - base_share`.
    pub std_error: f64,
    /// Degrees of freedom of the test (infinite: a z test).
    pub df: f64,
    /// Two-sided p value, uncorrected.
    pub p: f64,
}

/// Tests whether the function's head share differs from its base share times `scale` (the
/// bulk's ratio, `median_ratio`; 1 compares the shares as they are): a two-proportion test on
/// the pooled counts (the variance at the pooled share, so a function absent on one side
/// still has a variance there), widened by the dispersion of repeated runs and then a t test
/// on its degrees of freedom.
pub fn test_shares(base: &Side, head: &Side, dispersion: Dispersion, scale: f64) -> Tested {
    let (pb, ph) = (base.share(), head.share());
    let (nb, nh) = (base.total(), head.total());
    let pooled = if nb + nh > 0.0 {
        (base.hits.iter().sum::<f64>() + head.hits.iter().sum::<f64>()) / (nb + nh)
    } else {
        0.0
    };
    let untested = |se: f64| Tested {
        base_share: pb,
        head_share: ph,
        std_error: se,
        df: f64::INFINITY,
        p: 1.0,
    };
    if nb <= 0.0 || nh <= 0.0 {
        return untested(f64::INFINITY);
    }
    let se = (dispersion.phi * pooled * (1.0 - pooled) * (scale * scale / nb + 1.0 / nh)).sqrt();
    if pooled * nb < MIN_EXPECTED || pooled * nh < MIN_EXPECTED || !(se > 0.0) {
        return untested(se);
    }
    let t = (ph - scale * pb) / se;
    let p = if dispersion.df.is_finite() {
        t_two_sided(t, dispersion.df)
    } else {
        2.0 * normal_sf(t.abs())
    };
    Tested {
        base_share: pb,
        head_share: ph,
        std_error: se,
        df: dispersion.df,
        p: p.clamp(0.0, 1.0),
    }
}

/// Holm's step-down adjustment: the adjusted p value of each test, in the input's order
/// (each at most 1, and monotone in the sorted order). Controls the family-wise error rate.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut adjusted = vec![1.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        let a = ((m - rank) as f64 * p[i]).min(1.0);
        running = running.max(a);
        adjusted[i] = running;
    }
    adjusted
}

/// How much a function's time changed against the bulk of the program: its head share over
/// its base share scaled by `scale`, the typical (median) head/base ratio of the functions
/// compared, minus one. Shares are compositional (when one function takes longer, every other
/// share shrinks); against the bulk, a function at 52% made 10% slower shows +10% and the
/// unchanged ones 0%. Infinite when it was absent from base.
pub fn relative_change(base: f64, head: f64, scale: f64) -> f64 {
    let expected = base * scale;
    if expected <= 0.0 {
        return if head > 0.0 { f64::INFINITY } else { 0.0 };
    }
    head / expected - 1.0
}

/// The median head/base share ratio over functions present on both sides (1 without any):
/// what an unchanged function's share is multiplied by when others change.
pub fn median_ratio(pairs: impl IntoIterator<Item = (f64, f64)>) -> f64 {
    let mut ratios: Vec<f64> = pairs
        .into_iter()
        .filter(|(b, h)| *b > 0.0 && *h > 0.0)
        .map(|(b, h)| h / b)
        .collect();
    if ratios.is_empty() {
        return 1.0;
    }
    ratios.sort_by(f64::total_cmp);
    let n = ratios.len();
    if n % 2 == 1 {
        ratios[n / 2]
    } else {
        (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0
    }
}

/// The smallest change of share a two-sided test at level `alpha` calls significant, given
/// the standard error of the difference: `z_{1-alpha/2} * se` (the critical difference). A
/// true change of that size is seen half the time, a change 1.5x as large ~90% of the time.
pub fn critical_difference(se: f64, alpha: f64) -> f64 {
    normal_quantile(1.0 - alpha / 2.0) * se
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-300) || (a - b).abs() < 1e-12
    }

    #[test]
    fn normal_tails_match_known_values() {
        // scipy.stats.norm.sf
        assert!(close(normal_sf(0.0), 0.5, 1e-7));
        assert!(close(normal_sf(1.959963984540054), 0.025, 1e-5));
        assert!(close(normal_sf(3.0), 0.0013498980316301, 1e-5));
        assert!(close(normal_sf(-1.0), 0.8413447460685429, 1e-6));
        for p in [0.001, 0.025, 0.2, 0.5, 0.8, 0.975, 0.999999] {
            let z = normal_quantile(p);
            assert!(close(1.0 - normal_sf(z), p, 1e-6), "p={p} z={z}");
        }
        assert!(close(normal_quantile(0.975), 1.959963984540054, 1e-6));
    }

    #[test]
    fn t_tails_match_known_values() {
        // scipy.stats.t.sf(t, df) * 2
        assert!(close(t_two_sided(2.0, 3.0), 0.1393259686, 1e-5));
        assert!(close(t_two_sided(2.776445105, 4.0), 0.05, 1e-5));
        assert!(close(t_two_sided(-1.0, 10.0), 0.3408931323, 1e-5));
        assert!(close(t_two_sided(0.0, 5.0), 1.0, 1e-9));
        assert!(close(t_two_sided(2.0, 1e9), 2.0 * normal_sf(2.0), 1e-6));
    }

    #[test]
    fn two_proportion_z_test() {
        // 520/1000 vs 560/1000: pooled p = 0.54, se = sqrt(.54*.46*(2/1000)) = 0.022289,
        // z = 1.7946, p = 0.07272 (statsmodels proportions_ztest).
        let base = Side {
            hits: vec![520.0],
            totals: vec![1000.0],
        };
        let head = Side {
            hits: vec![560.0],
            totals: vec![1000.0],
        };
        let t = test_shares(&base, &head, Dispersion::SAMPLING_ONLY, 1.0);
        assert!(close(t.std_error, 0.022289, 1e-4), "{t:?}");
        assert!(close(t.p, 0.07272, 1e-3), "{t:?}");
        assert!(t.df.is_infinite());
        // One sample of 22 against none of 500: too rare to test.
        let rare = test_shares(
            &Side {
                hits: vec![1.0],
                totals: vec![22.0],
            },
            &Side {
                hits: vec![0.0],
                totals: vec![500.0],
            },
            Dispersion::SAMPLING_ONLY,
            1.0,
        );
        assert_eq!(rare.p, 1.0);
    }

    #[test]
    fn noisy_runs_widen_the_test() {
        // The same pooled shares, but the runs disagree a lot: the test must not call it.
        let base = Side {
            hits: vec![4000.0, 6000.0, 5000.0],
            totals: vec![10000.0; 3],
        };
        let head = Side {
            hits: vec![5800.0, 4800.0, 6200.0],
            totals: vec![10000.0; 3],
        };
        let d = Dispersion::estimate([(&base, &head)]);
        assert!(d.phi > 100.0 && d.df == 4.0, "{d:?}");
        let t = test_shares(&base, &head, d, 1.0);
        assert!(t.p > 0.3, "{t:?}");
        // Runs that agree: dispersion 1, and 50% -> 56% on 30k samples is clear.
        let base = Side {
            hits: vec![5000.0, 5010.0, 4990.0],
            totals: vec![10000.0; 3],
        };
        let head = Side {
            hits: vec![5600.0, 5590.0, 5610.0],
            totals: vec![10000.0; 3],
        };
        let d = Dispersion::estimate([(&base, &head)]);
        assert_eq!(d, Dispersion::SAMPLING_ONLY);
        assert!(test_shares(&base, &head, d, 1.0).p < 1e-10);
        assert_eq!(
            Dispersion::estimate([(&Side::default(), &Side::default())]),
            Dispersion::SAMPLING_ONLY
        );
    }

    #[test]
    fn holm_adjusts_step_down() {
        // p.adjust(c(0.01, 0.04, 0.03, 0.5), "holm") in R: 0.04 0.09 0.09 0.5
        let a = holm(&[0.01, 0.04, 0.03, 0.5]);
        let want = [0.04, 0.09, 0.09, 0.5];
        for (x, w) in a.iter().zip(want) {
            assert!(close(*x, w, 1e-9), "{a:?}");
        }
        assert!(holm(&[]).is_empty());
    }

    #[test]
    fn relative_change_is_against_the_bulk() {
        // 52/29/19%, the first made 10% slower: 57.2/105.2, 29/105.2, 19/105.2.
        let (b, h) = (
            [0.52, 0.29, 0.19],
            [57.2 / 105.2, 29.0 / 105.2, 19.0 / 105.2],
        );
        let scale = median_ratio(b.iter().copied().zip(h.iter().copied()));
        assert!(close(scale, 100.0 / 105.2, 1e-9));
        assert!(close(relative_change(b[0], h[0], scale), 0.10, 1e-9));
        assert!(close(relative_change(b[1], h[1], scale), 0.0, 1e-9));
        assert!(relative_change(0.0, 0.1, 1.0).is_infinite());
        assert_eq!(median_ratio([]), 1.0);
        assert!(close(median_ratio([(0.5, 0.6), (0.5, 0.4)]), 1.0, 1e-12));
    }

    #[test]
    fn critical_difference_at_alpha() {
        assert!(close(critical_difference(0.01, 0.05), 0.0195996, 1e-4));
    }
}
