//! Escaping of text that comes from the target.
//!
//! Thread names (`comm`, any 15 bytes), command lines, paths and function names are chosen by
//! the profiled program, not by us. The terminal must not receive its control characters (an
//! escape sequence could rewrite the screen) and HTML must not receive its markup.

use std::fmt::Write;

/// `s` with control characters (C0, DEL, C1) shown as `\xNN` / `\u{NNNN}`, safe to print on a
/// terminal.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            let n = c as u32;
            if n < 0x100 {
                let _ = write!(out, "\\x{n:02x}");
            } else {
                let _ = write!(out, "\\u{{{n:04x}}}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `s` escaped for HTML text and attribute values (`&`, `<`, `>`, `"`, `'`), with control
/// characters made visible as in [`printable`].
pub fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in printable(s).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// JSON text made safe to embed inside `<script type="application/json">`: `<`, `>` and `&`
/// become `\u003c`, `\u003e`, `\u0026` (still the same JSON value), and so do U+2028/U+2029.
/// No `</script>` or `<!--` can appear in the output.
pub fn json_for_script(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// A command line as one string, each argument quoted like a shell would need it.
pub fn command_line(args: &[String]) -> String {
    args.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(a: &str) -> String {
    let plain = !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%^".contains(c));
    if plain {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_visible() {
        assert_eq!(printable("a\x1b[2Jb\n"), "a\\x1b[2Jb\\x0a");
        assert_eq!(printable("ok é"), "ok é");
    }

    #[test]
    fn html_escapes_markup() {
        assert_eq!(
            html("<b>&\"x'</script>"),
            "&lt;b&gt;&amp;&quot;x&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn script_json_cannot_close_the_script() {
        let v = serde_json::json!({"name": "</script><b>&"});
        let s = json_for_script(&v.to_string());
        assert!(!s.contains('<') && !s.contains('>') && !s.contains('&'));
        let back: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn command_lines_are_quoted() {
        assert_eq!(
            command_line(&["python".into(), "a b.py".into(), "it's".into()]),
            "python 'a b.py' 'it'\\''s'"
        );
    }
}
