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

/// A log sink that escapes whatever client text a field carried, for every
/// log call at once: each event arrives as one buffer ending in `\n`, and
/// nothing before that newline may end the line, move the cursor or flip
/// the reading direction. In text logs such characters become `\u{…}` (and
/// `\` becomes `\\`); in JSON logs, which already escape C0 controls,
/// the rest (DEL, C1, Bidi and invisible characters) become `\uXXXX`, so
/// the line stays valid JSON.
pub struct LogLine<W> {
    pub inner: W,
    pub json: bool,
}

impl<W: std::io::Write> std::io::Write for LogLine<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let (body, newline) = match text.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (&*text, ""),
        };
        let out = if self.json {
            let mut o = String::with_capacity(body.len());
            for c in body.chars() {
                if c != '\\' && needs_escape(c) {
                    // All of them are in the BMP.
                    o.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    o.push(c);
                }
            }
            o
        } else {
            escaped(body)
        };
        self.inner.write_all(out.as_bytes())?;
        self.inner.write_all(newline.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_cannot_be_split_or_repainted() {
        use std::io::Write;
        let event = "INFO approver sign-in refused approver=x\nINFO approver signed in approver=bob\x1b[2J\n";
        let mut text = LogLine {
            inner: Vec::new(),
            json: false,
        };
        text.write_all(event.as_bytes()).expect("write");
        let out = String::from_utf8(text.inner).expect("utf8");
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(!out.contains('\x1b'));
        let json = serde_json::json!({"approver": "x\nINFO forged\u{202e}\u{9b}"}).to_string() + "\n";
        let mut j = LogLine {
            inner: Vec::new(),
            json: true,
        };
        j.write_all(json.as_bytes()).expect("write");
        let out = String::from_utf8(j.inner).expect("utf8");
        assert_eq!(out.lines().count(), 1);
        assert!(!out.contains('\u{202e}') && !out.contains('\u{9b}'), "{out}");
        let back: serde_json::Value = serde_json::from_str(&out).expect("still JSON");
        assert_eq!(back["approver"], "x\nINFO forged\u{202e}\u{9b}");
    }

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
