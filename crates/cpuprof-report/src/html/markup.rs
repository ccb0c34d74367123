//! HTML built through a writer that escapes by default.
//!
//! Everything that came from a profile (thread names, command lines, paths, findings) is
//! text, and [`Markup::text`] escapes it. Markup itself can only be a string literal
//! ([`Markup::raw`] takes `&'static str`), or a [`Trusted`] block this crate made safe (the
//! report's data as JSON for a script element, its CSS and JS): nothing a target controls can
//! be written as markup by mistake.

use crate::escape::{html, json_for_script};

/// A block of markup this crate vouches for.
pub struct Trusted(String);

impl Trusted {
    /// JSON made safe to embed in `<script type="application/json">` ([`json_for_script`]).
    pub fn json_for_script(json: &str) -> Trusted {
        Trusted(json_for_script(json))
    }

    /// An asset compiled into the binary (CSS, JS).
    pub fn asset(text: &'static str) -> Trusted {
        Trusted(text.to_string())
    }
}

/// An HTML document being written.
#[derive(Default)]
pub struct Markup {
    out: String,
}

impl Markup {
    /// An empty document with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Markup {
        Markup {
            out: String::with_capacity(n),
        }
    }

    /// Markup written by this crate: string literals only.
    pub fn raw(&mut self, markup: &'static str) -> &mut Self {
        self.out.push_str(markup);
        self
    }

    /// Text or an attribute value: escaped (`&`, `<`, `>`, `"`, `'`; control characters made
    /// visible).
    pub fn text(&mut self, s: &str) -> &mut Self {
        self.out.push_str(&html(s));
        self
    }

    /// Text that keeps its line breaks and tabs (a fix can be several lines of code).
    pub fn text_lines(&mut self, s: &str) -> &mut Self {
        for (i, line) in s.split('\n').enumerate() {
            if i > 0 {
                self.out.push('\n');
            }
            for (j, part) in line.split('\t').enumerate() {
                if j > 0 {
                    self.out.push('\t');
                }
                self.out.push_str(&html(part));
            }
        }
        self
    }

    /// A block this crate made safe.
    pub fn trusted(&mut self, t: Trusted) -> &mut Self {
        self.out.push_str(&t.0);
        self
    }

    /// The document.
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_markup_is_literal() {
        let mut m = Markup::default();
        m.raw("<p title=\"")
            .text("a\"b")
            .raw("\">")
            .text("<script>&")
            .raw("</p>");
        assert_eq!(m.finish(), "<p title=\"a&quot;b\">&lt;script&gt;&amp;</p>");
        let mut m = Markup::default();
        m.text_lines("a<b\n\tc");
        assert_eq!(m.finish(), "a&lt;b\n\tc");
    }
}
