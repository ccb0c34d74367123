//! The sampling period: near `1 / rate`, but never in step with the kernel's scheduler tick.
//!
//! A CPU-wide `cpu-clock` event fires every period of wall time. When the period is a multiple
//! or a simple fraction of the tick (250 Hz sampling on a `HZ=250` kernel, Debian's default),
//! every sample falls at the same point of the tick. On a busy machine the scheduler switches
//! tasks at ticks, so what runs at that point is sampled every time and what runs at another
//! point of the tick never is: 150 children of 2 ms each got 23 to 173 samples instead of 75
//! from one recording to the next, and a parent waiting for them got 143 samples for 0.04 s of
//! CPU (`tests/stacks.rs`, two busy loops beside it). `perf record -F 99` avoids round rates for
//! the same reason.
//!
//! [`period_ns`] picks, near the asked period, one whose successive samples spread over the
//! tick for every common tick length (`HZ` = 1000, 300, 250, 100), so every part of the tick is
//! sampled within a few dozen samples. The rate moves by a few percent (250 Hz becomes 255 Hz);
//! [`effective_rate`] gives the rate that is really used.

/// Tick lengths of the common `CONFIG_HZ` choices, ns.
const TICKS_NS: [u64; 4] = [1_000_000, 3_333_333, 4_000_000, 10_000_000];
/// Samples per tick length (at least one tick) over which the phases must cover the tick.
const SPREAD_SAMPLES: u64 = 24;
/// Largest gap between those phases, as a share of the tick, that counts as spread.
const MAX_GAP: f64 = 0.15;
/// How far from the asked period the search goes (each side).
const SEARCH: f64 = 0.15;

/// The largest gap between the points of the tick that successive samples `period` apart fall
/// on (over [`SPREAD_SAMPLES`] samples, or that many ticks when the period is shorter), as a
/// share of the tick; the worst over [`TICKS_NS`].
fn worst_gap(period: u64) -> f64 {
    let period = period.max(1);
    TICKS_NS
        .iter()
        .map(|&tick| {
            let n = SPREAD_SAMPLES * tick.div_ceil(period).max(1);
            let mut phases: Vec<u64> = (0..n).map(|k| k * period % tick).collect();
            phases.sort_unstable();
            let inner = phases.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
            let wrap = tick - phases[phases.len() - 1] + phases[0];
            inner.max(wrap) as f64 / tick as f64
        })
        .fold(0.0, f64::max)
}

/// The sampling period for `rate_hz`: the period nearest to `1e9 / rate_hz` whose samples
/// spread over the tick (see the module docs), or the best-spread one in the search range.
pub fn period_ns(rate_hz: u32) -> u64 {
    let asked = 1_000_000_000 / u64::from(rate_hz.max(1));
    let step = (asked / 4000).max(1);
    let reach = (asked as f64 * SEARCH) as u64;
    let mut best = (worst_gap(asked), asked);
    if best.0 <= MAX_GAP {
        return asked;
    }
    // Outwards from the asked period, alternating sides: the first spread one is the nearest.
    let mut off = step;
    while off <= reach {
        for p in [asked.saturating_sub(off), asked + off] {
            let gap = worst_gap(p);
            if gap <= MAX_GAP {
                return p;
            }
            if gap < best.0 {
                best = (gap, p);
            }
        }
        off += step;
    }
    best.1
}

/// The rate really sampled at for `rate_hz` (rounded to whole Hz).
pub fn effective_rate(rate_hz: u32) -> u32 {
    (1e9 / period_ns(rate_hz) as f64).round() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_rate_moves_off_the_250_hz_tick_and_stays_near() {
        assert!(
            worst_gap(4_000_000) > 0.9,
            "250 Hz: one point of a 4 ms tick"
        );
        let p = period_ns(250);
        assert_ne!(p, 4_000_000);
        assert!(worst_gap(p) <= MAX_GAP);
        let r = effective_rate(250);
        assert!((225..=275).contains(&r), "{r} Hz");
    }

    #[test]
    fn every_rate_gets_a_spread_period_near_it() {
        for rate in [1, 50, 99, 100, 200, 250, 300, 500, 997, 1000, 4000, 10_000] {
            let p = period_ns(rate);
            let asked = 1e9 / f64::from(rate);
            assert!(
                (p as f64 - asked).abs() <= asked * SEARCH + 1.0,
                "{rate} Hz: {p} ns"
            );
            assert!(
                worst_gap(p) <= 0.35,
                "{rate} Hz: period {p} ns, gap {}",
                worst_gap(p)
            );
        }
    }
}
