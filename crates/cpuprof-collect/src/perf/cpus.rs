//! The CPUs to open one event (and one ring buffer) on: `/sys/devices/system/cpu/online`.

/// Parses a kernel CPU list (`0-3,5,7-8`).
pub fn parse_list(s: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<u32>().ok()),
        }
    }
    out
}

/// The online CPUs (falls back to `0..nprocs`).
pub fn online() -> Vec<u32> {
    let list = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .map(|s| parse_list(&s))
        .unwrap_or_default();
    if !list.is_empty() {
        return list;
    }
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as u32;
    (0..n).collect()
}

#[cfg(test)]
mod tests {
    use super::parse_list;

    #[test]
    fn ranges_and_singles() {
        assert_eq!(parse_list("0-3,5,7-8\n"), vec![0, 1, 2, 3, 5, 7, 8]);
        assert_eq!(parse_list("0\n"), vec![0]);
        assert_eq!(parse_list(""), Vec::<u32>::new());
    }
}
