//! `/proc/PID/cmdline`: the command line, NUL-separated.

/// Splits `cmdline` text into arguments (lossily decoded; a trailing NUL ends the last one).
pub fn parse(text: &[u8]) -> Vec<String> {
    let text = text.strip_suffix(b"\0").unwrap_or(text);
    if text.is_empty() {
        return Vec::new();
    }
    text.split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn splits_on_nul() {
        assert_eq!(
            super::parse(b"python3\0-c\0print(1)\0"),
            vec!["python3", "-c", "print(1)"]
        );
        assert_eq!(super::parse(b"a\0\0b\0"), vec!["a", "", "b"]);
        assert!(super::parse(b"").is_empty());
    }
}
