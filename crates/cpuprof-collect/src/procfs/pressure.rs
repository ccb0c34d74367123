//! `/proc/pressure/cpu`: pressure stall information, the share of time some runnable task
//! waited for a core (the kernel's own run-queue pressure, machine-wide).

/// `some avg10`, in percent: over the last 10 s, the share of time at least one task waited.
pub fn parse_some_avg10(text: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(text).ok()?;
    let line = text.lines().find(|l| l.starts_with("some "))?;
    line.split_ascii_whitespace()
        .find_map(|f| f.strip_prefix("avg10="))?
        .parse()
        .ok()
}

/// Reads `/proc/pressure/cpu` now (`None` without PSI: kernels before 4.20 or `psi=0`).
pub fn cpu_some_avg10() -> Option<f64> {
    parse_some_avg10(&std::fs::read("/proc/pressure/cpu").ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn some_avg10() {
        let text = b"some avg10=12.50 avg60=2.75 avg300=13.24 total=4047067788\n\
                     full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(parse_some_avg10(text), Some(12.5));
        assert_eq!(parse_some_avg10(b"full avg10=1\n"), None);
    }
}
