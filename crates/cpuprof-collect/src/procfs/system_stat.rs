//! `/proc/stat`: the machine's CPU time, for the cores busy of a live view.

/// The first line (`cpu  user nice system idle iowait irq softirq steal ...`), in clock
/// ticks: busy is everything but idle and iowait.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTotals {
    /// Ticks spent running anything (user, nice, system, irq, softirq, steal).
    pub busy: u64,
    /// Ticks in all states.
    pub total: u64,
}

/// Parses `/proc/stat` text.
pub fn parse(text: &[u8]) -> Option<CpuTotals> {
    let text = std::str::from_utf8(text).ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_ascii_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if v.len() < 5 {
        return None;
    }
    let total: u64 = v.iter().sum();
    let idle = v[3] + v[4];
    Some(CpuTotals {
        busy: total - idle,
        total,
    })
}

/// Reads `/proc/stat` now.
pub fn read() -> Option<CpuTotals> {
    parse(&std::fs::read("/proc/stat").ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_is_all_but_idle_and_iowait() {
        let text = b"cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n";
        assert_eq!(
            parse(text),
            Some(CpuTotals {
                busy: 161,
                total: 1181
            })
        );
        assert_eq!(parse(b"intr 1 2 3\n"), None);
    }
}
