//! The statistics of a sweep: each candidate's runs summed up as a median with a 95% interval,
//! "within noise", and the rule that picks the setting to recommend.
//!
//! Runs are few (3 by default) and oversubscribed programs are noisy, so the interval is the
//! t-interval of the mean (Student's t with n − 1 degrees of freedom): wide when the runs
//! disagree, which is the honest answer. Two candidates are within noise of each other when
//! their intervals overlap.

use cpuprof_model::sweep::Stat;

/// Two-sided 95% quantiles of Student's t by degrees of freedom (1.96 beyond 30).
const T95: [f64; 30] = [
    12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23, 2.20, 2.18, 2.16, 2.14, 2.13,
    2.12, 2.11, 2.10, 2.09, 2.09, 2.08, 2.07, 2.07, 2.06, 2.06, 2.06, 2.05, 2.05, 2.05, 2.04,
];

/// Student's t quantile for a two-sided 95% interval with `df` degrees of freedom.
pub fn t95(df: usize) -> f64 {
    match df {
        0 => f64::INFINITY,
        d if d <= T95.len() => T95[d - 1],
        _ => 1.96,
    }
}

/// The median of some values (mean of the middle two for an even count); NaN when empty.
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median and 95% interval of the mean of `xs`; one value has an interval of itself.
pub fn summarize(xs: &[f64]) -> Stat {
    let n = xs.len();
    let med = median(xs);
    if n < 2 {
        return Stat {
            median: med,
            low: med,
            high: med,
        };
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let half = t95(n - 1) * (var / n as f64).sqrt();
    Stat {
        median: med,
        low: (mean - half).max(0.0).min(med),
        high: (mean + half).max(med),
    }
}

/// Do two intervals overlap (the difference is within the noise of the runs)?
pub fn within_noise(a: &Stat, b: &Stat) -> bool {
    a.low <= b.high && b.low <= a.high
}

/// The relative half-width of an interval: how unsure the median is.
pub fn spread(s: &Stat) -> f64 {
    if s.median > 0.0 {
        (s.high - s.low) / 2.0 / s.median
    } else {
        0.0
    }
}

/// One candidate as the choice rule sees it.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// Wall time of its runs.
    pub wall: Stat,
    /// CPU time of its runs.
    pub cpu: Stat,
    /// Every run failed or none ran.
    pub failed: bool,
}

/// Why a candidate was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// It was the fastest, beyond noise of the program as it is.
    Fastest,
    /// It was within noise of the fastest and used the least CPU.
    LeastCpu,
    /// Nothing beat the program as it is beyond noise.
    KeepDefault,
}

/// The rule: the lowest median wall time; among the candidates within noise of it, the one
/// that uses the least CPU; and when the program as it is (index 0) is within noise of that
/// choice on wall time and no cheaper beyond noise on CPU, keep it.
pub fn choose(cands: &[Measured]) -> Option<(usize, Reason)> {
    let ok: Vec<usize> = (0..cands.len()).filter(|i| !cands[*i].failed).collect();
    let fastest = *ok
        .iter()
        .min_by(|a, b| cands[**a].wall.median.total_cmp(&cands[**b].wall.median))?;
    let (pick, reason) = ok
        .iter()
        .filter(|i| within_noise(&cands[**i].wall, &cands[fastest].wall))
        .min_by(|a, b| cands[**a].cpu.median.total_cmp(&cands[**b].cpu.median))
        .map(|i| {
            if *i == fastest {
                (*i, Reason::Fastest)
            } else {
                (*i, Reason::LeastCpu)
            }
        })?;
    let base = cands.first()?;
    if pick != 0
        && !base.failed
        && within_noise(&base.wall, &cands[pick].wall)
        && within_noise(&base.cpu, &cands[pick].cpu)
    {
        return Some((0, Reason::KeepDefault));
    }
    if pick == 0 {
        return Some((0, Reason::KeepDefault));
    }
    Some((pick, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(wall: &[f64], cpu: &[f64]) -> Measured {
        Measured {
            wall: summarize(wall),
            cpu: summarize(cpu),
            failed: false,
        }
    }

    #[test]
    fn median_and_interval() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let s = summarize(&[1.0, 2.0, 3.0]);
        // mean 2, sd 1, t(2) = 4.30: 2 ± 4.30 / sqrt(3) = 2 ± 2.48.
        assert_eq!(s.median, 2.0);
        assert!((s.high - 4.483).abs() < 0.01, "{s:?}");
        assert_eq!(s.low, 0.0);
        let one = summarize(&[5.0]);
        assert_eq!((one.low, one.median, one.high), (5.0, 5.0, 5.0));
        let tight = summarize(&[1.0, 1.01, 0.99, 1.0]);
        assert!(spread(&tight) < 0.02);
    }

    #[test]
    fn noise_is_overlap() {
        let a = summarize(&[1.0, 1.02, 0.98]);
        let b = summarize(&[1.01, 1.03, 0.99]);
        let c = summarize(&[0.70, 0.71, 0.69]);
        assert!(within_noise(&a, &b));
        assert!(!within_noise(&a, &c));
    }

    #[test]
    fn the_fastest_beyond_noise_wins() {
        let c = [
            m(&[1.0, 1.02, 0.98], &[2.0, 2.0, 2.0]),
            m(&[0.70, 0.71, 0.69], &[1.4, 1.4, 1.4]),
            m(&[0.90, 0.91, 0.89], &[1.8, 1.8, 1.8]),
        ];
        assert_eq!(choose(&c), Some((1, Reason::Fastest)));
    }

    #[test]
    fn among_equals_the_cheapest_wins() {
        let c = [
            m(&[1.0, 1.01, 0.99], &[2.0, 2.0, 2.0]),
            m(&[0.70, 0.71, 0.69], &[1.4, 1.41, 1.39]),
            m(&[0.70, 0.72, 0.69], &[0.9, 0.91, 0.89]),
        ];
        assert_eq!(choose(&c), Some((2, Reason::LeastCpu)));
    }

    #[test]
    fn nothing_beyond_noise_keeps_the_default() {
        let c = [
            m(&[1.0, 1.05, 0.95], &[2.0, 2.05, 1.95]),
            m(&[0.98, 1.03, 0.96], &[1.98, 2.0, 1.97]),
        ];
        assert_eq!(choose(&c), Some((0, Reason::KeepDefault)));
        // A failed candidate is never chosen, however fast.
        let mut f = m(&[0.1, 0.1, 0.1], &[0.1, 0.1, 0.1]);
        f.failed = true;
        let c = [m(&[1.0, 1.0, 1.0], &[1.0, 1.0, 1.0]), f];
        assert_eq!(choose(&c), Some((0, Reason::KeepDefault)));
    }
}
