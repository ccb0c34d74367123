//! The statistics of a sweep: each candidate's runs summed up as a median with a 95% interval,
//! "within noise", and the rule that picks the setting to recommend.
//!
//! Runs are few (3 by default) and oversubscribed programs are noisy, so a candidate's interval
//! is the t-interval of the mean (Student's t with n − 1 degrees of freedom): wide when the runs
//! disagree, which is the honest answer. Candidates run in alternating rounds, so whether two
//! differ beyond noise is judged on their paired differences round by round (which cancels
//! the machine's drift): within noise when the 95% interval of the mean difference contains 0.

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

/// Do two intervals overlap?
pub fn overlap(a: &Stat, b: &Stat) -> bool {
    a.low <= b.high && b.low <= a.high
}

/// The 95% interval of the mean paired difference `a[r] - b[r]` over the rounds both ran:
/// runs alternate (A B C A B C ...), so the runs of one round saw the same machine and their
/// difference cancels its drift. `None` with fewer than two common rounds.
pub fn paired_difference(a: &[(usize, f64)], b: &[(usize, f64)]) -> Option<(f64, f64, f64)> {
    let d: Vec<f64> = a
        .iter()
        .filter_map(|(r, x)| b.iter().find(|(q, _)| q == r).map(|(_, y)| x - y))
        .collect();
    let n = d.len();
    if n < 2 {
        return None;
    }
    let mean = d.iter().sum::<f64>() / n as f64;
    let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let half = t95(n - 1) * (var / n as f64).sqrt();
    Some((mean, mean - half, mean + half))
}

/// Is the difference between two candidates within the noise of the runs: the paired
/// difference's interval contains 0 (or, without two common rounds, the intervals overlap)?
pub fn within_noise(a: &[(usize, f64)], b: &[(usize, f64)]) -> bool {
    match paired_difference(a, b) {
        Some((_, lo, hi)) => lo <= 0.0 && 0.0 <= hi,
        None => {
            let xs = |v: &[(usize, f64)]| v.iter().map(|(_, x)| *x).collect::<Vec<_>>();
            overlap(&summarize(&xs(a)), &summarize(&xs(b)))
        }
    }
}

/// The relative half-width of an interval: how unsure the median is.
pub fn spread(s: &Stat) -> f64 {
    if s.median > 0.0 {
        (s.high - s.low) / 2.0 / s.median
    } else {
        0.0
    }
}

/// One candidate as the choice rule sees it: its runs by round.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// (round, wall seconds) of its successful runs.
    pub wall: Vec<(usize, f64)>,
    /// (round, CPU seconds) of its successful runs.
    pub cpu: Vec<(usize, f64)>,
}

impl Measured {
    /// No successful run.
    pub fn failed(&self) -> bool {
        self.wall.is_empty()
    }

    fn median_wall(&self) -> f64 {
        median(&self.wall.iter().map(|(_, x)| *x).collect::<Vec<_>>())
    }

    fn median_cpu(&self) -> f64 {
        median(&self.cpu.iter().map(|(_, x)| *x).collect::<Vec<_>>())
    }
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
/// that uses the least CPU; and when that choice is within noise of the program as it is
/// (index 0) on both wall time and CPU, keep the program as it is.
pub fn choose(cands: &[Measured]) -> Option<(usize, Reason)> {
    let ok: Vec<usize> = (0..cands.len()).filter(|i| !cands[*i].failed()).collect();
    let fastest = *ok.iter().min_by(|a, b| {
        cands[**a]
            .median_wall()
            .total_cmp(&cands[**b].median_wall())
    })?;
    let pick = *ok
        .iter()
        .filter(|i| **i == fastest || within_noise(&cands[**i].wall, &cands[fastest].wall))
        .min_by(|a, b| cands[**a].median_cpu().total_cmp(&cands[**b].median_cpu()))?;
    let base = &cands[0];
    let same_as_base = pick == 0
        || (!base.failed()
            && within_noise(&base.wall, &cands[pick].wall)
            && within_noise(&base.cpu, &cands[pick].cpu));
    if same_as_base && !base.failed() {
        return Some((0, Reason::KeepDefault));
    }
    Some((
        pick,
        if pick == fastest {
            Reason::Fastest
        } else {
            Reason::LeastCpu
        },
    ))
}

/// Should another round run: the fastest candidate differs from the program as it is by
/// more than `min_effect` of its wall time, but not yet beyond noise.
pub fn undecided(cands: &[Measured], min_effect: f64) -> bool {
    let Some(base) = cands.first().filter(|b| !b.failed()) else {
        return false;
    };
    let Some(best) = cands[1..]
        .iter()
        .filter(|c| !c.failed())
        .min_by(|a, b| a.median_wall().total_cmp(&b.median_wall()))
    else {
        return false;
    };
    let effect = (base.median_wall() - best.median_wall()).abs() / base.median_wall().max(1e-9);
    effect > min_effect && within_noise(&base.wall, &best.wall)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(wall: &[f64], cpu: &[f64]) -> Measured {
        Measured {
            wall: wall.iter().copied().enumerate().collect(),
            cpu: cpu.iter().copied().enumerate().collect(),
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
    fn noise_is_judged_on_paired_runs() {
        let r = |v: &[f64]| v.iter().copied().enumerate().collect::<Vec<_>>();
        // The machine drifts (1.0, 1.2, 0.9), the candidate is 10% faster in every round:
        // beyond noise paired, within noise by overlapping intervals.
        let base = r(&[1.0, 1.2, 0.9]);
        let fast = r(&[0.9, 1.08, 0.81]);
        assert!(overlap(
            &summarize(&[1.0, 1.2, 0.9]),
            &summarize(&[0.9, 1.08, 0.81])
        ));
        assert!(!within_noise(&base, &fast));
        let same = r(&[1.01, 1.18, 0.92]);
        assert!(within_noise(&base, &same));
        let (mean, lo, hi) = paired_difference(&fast, &base).unwrap();
        assert!(mean < 0.0 && hi < 0.0 && lo < hi);
        // Rounds that only one ran do not pair.
        assert!(paired_difference(&r(&[1.0]), &base).is_none());
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
        // A failed candidate is never chosen.
        let c = [m(&[1.0, 1.0, 1.0], &[1.0, 1.0, 1.0]), Measured::default()];
        assert_eq!(choose(&c), Some((0, Reason::KeepDefault)));
        // Undecided: a 10% effect not yet beyond noise asks for another round.
        let c = [
            m(&[1.0, 1.3, 0.8], &[1.0, 1.0, 1.0]),
            m(&[0.85, 1.0, 0.85], &[1.0, 1.0, 1.0]),
        ];
        assert!(undecided(&c, 0.03));
        assert!(!undecided(&c, 0.5));
    }
}
