//! Display fields: values taken from the held request itself and shown to
//! whoever proves or approves it. They come from the exact bytes the `txn`
//! covers, so an approval is bound to what the approver saw.

use crate::policy::body::Reading;
use crate::policy::DisplaySource;
use crate::route::canonical::CanonicalPath;
use crate::route::Route;
use http::{header, HeaderMap};

/// Longest value shown; a display field is for a person to read.
const MAX_LEN: usize = 200;

/// `body` is the body as the route read it (by its declared type, one copy
/// of every field), the same reading its conditions saw.
pub fn values(route: &Route, path: &CanonicalPath, body: Option<&Reading>) -> Vec<(String, String)> {
    if route.display.is_empty() {
        return Vec::new();
    }
    let captures = route
        .path
        .regex
        .captures(path.match_form())
        .or_else(|| path.without_params().and_then(|p| route.path.regex.captures(p)));
    route
        .display
        .iter()
        .map(|d| {
            let value = match &d.source {
                DisplaySource::Capture(n) => captures.as_ref().and_then(|c| c.get(*n)).map(|m| m.as_str().to_owned()),
                DisplaySource::Json(ptr) => body.and_then(|b| b.pointer(ptr)).map(scalar),
                DisplaySource::Form(field) => body.and_then(|b| b.field(field)).map(str::to_owned),
            };
            (
                d.label.clone(),
                clip(visible(&value.unwrap_or_else(|| "(missing)".into()))),
            )
        })
        .collect()
}

fn scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The value with every character that does not show as itself written
/// as `\u{XXXX}`: controls, Bidi overrides and isolates, zero-width and
/// other format characters, fillers, variation selectors, tags, and
/// spaces other than U+0020. An approver must see "ACME\u{202E}" rather
/// than text that a Bidi override has turned around. Escaped here, at the
/// source, the pages, the approvals API and notifications all agree.
pub(crate) fn visible(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if invisible(c) {
            let _ = write!(out, "\\u{{{:04X}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

fn invisible(c: char) -> bool {
    let u = c as u32;
    c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(
            u,
            0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
                | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x2800 | 0x3164
                | 0xFE00..=0xFE0F | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFFB | 0x1D173..=0x1D17A
                | 0xE0000..=0xE0FFF
        )
        // Private use: no agreed glyph, so no agreed reading.
        || matches!(u, 0xE000..=0xF8FF | 0xF0000..=0x10FFFF)
}

fn clip(mut s: String) -> String {
    if s.len() > MAX_LEN {
        let mut end = MAX_LEN;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// An `application/x-www-form-urlencoded` body, as the gateway reads its
/// own forms and display fields.
pub(super) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

#[cfg(test)]
mod tests {
    use super::visible;

    #[test]
    fn invisible_characters_are_shown_escaped() {
        assert_eq!(visible("ACME\u{202E}gnp.exe"), "ACME\\u{202E}gnp.exe");
        assert_eq!(
            visible("a\u{200B}b\u{FEFF}c\u{2066}d"),
            "a\\u{200B}b\\u{FEFF}c\\u{2066}d"
        );
        assert_eq!(
            visible("x\ty\u{7}\u{A0}z\u{E0041}"),
            "x\\u{0009}y\\u{0007}\\u{00A0}z\\u{E0041}"
        );
        assert_eq!(visible("Müller & Søn 5 000 €"), "Müller & Søn 5 000 €");
    }
}
