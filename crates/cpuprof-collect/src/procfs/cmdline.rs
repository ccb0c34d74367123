//! `/proc/PID/cmdline`: the command line, NUL-separated.

/// Splits `cmdline` text into arguments ([`arg_text`] each; a trailing NUL ends the last one).
pub fn parse(text: &[u8]) -> Vec<String> {
    let text = text.strip_suffix(b"\0").unwrap_or(text);
    if text.is_empty() {
        return Vec::new();
    }
    text.split(|&b| b == 0).map(arg_text).collect()
}

/// An argument as text: UTF-8 as it is, each byte that is not UTF-8 as `\xNN` (so nothing
/// is lost, and the report and the JSON show what the program was given; a command line may
/// be any bytes).
pub fn arg_text(arg: &[u8]) -> String {
    let mut out = String::with_capacity(arg.len());
    for chunk in arg.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
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
        assert_eq!(
            super::parse(b"echo\0\xff\xfe ok\0"),
            vec!["echo", "\\xff\\xfe ok"]
        );
        assert_eq!(super::arg_text("été".as_bytes()), "été");
    }
}
