//! Client text made safe to print on a terminal or in a log line (SPEC §7).
//!
//! A user name, a reason or a display field can carry a newline (which
//! forges a whole log line), an escape sequence (which sets a terminal's
//! title, clears its screen or paints a fake "verified"), or a Bidi control
//! (which reorders what a reader sees). Every such character is written as
//! a visible `\u{…}` escape instead; a backslash is doubled so an escape
//! written by the client cannot pass for one written here.

use std::fmt;

/// Displays its text with every control character escaped visibly.
/// Use it wherever client text reaches a log or the terminal:
/// `tracing::info!(user = %Escaped(&name), …)`, `println!("{}", Escaped(s))`.
#[derive(Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(needs_escape) {
            f.write_str(&rest[..i])?;
            let c = rest[i..].chars().next().unwrap_or('\0');
            match c {
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c => write!(f, "\\u{{{:x}}}", c as u32)?,
            }
            rest = &rest[i + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// The text with every control character escaped (see [`Escaped`]).
pub fn escaped(s: &str) -> String {
    Escaped(s).to_string()
}

/// Whether `c` must not reach a terminal or a log line as itself: C0 and
/// C1 controls, DEL, the Bidi embedding, override and isolate controls and
/// marks, invisible separators and zero-width characters, and the
/// backslash that introduces our own escapes.
pub fn needs_escape(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_are_visible() {
        let evil = "bob\x1b]0;title\x07\x1b[2J\nok: all records verified\u{202e}txt.exe\u{9b}\x7f\\u{1b}";
        let out = escaped(evil);
        assert!(
            !out.chars()
                .any(|c| c.is_control() || ('\u{2000}'..='\u{206f}').contains(&c)),
            "{out}"
        );
        assert!(!out.contains('\n'));
        assert_eq!(
            out,
            "bob\\u{1b}]0;title\\u{7}\\u{1b}[2J\\nok: all records verified\\u{202e}txt.exe\\u{9b}\\u{7f}\\\\u{1b}"
        );
    }

    #[test]
    fn plain_text_is_unchanged() {
        for s in ["alice", "Zahlung an Müller", "日本語", ""] {
            assert_eq!(escaped(s), s);
        }
    }
}
