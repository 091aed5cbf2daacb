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
            (d.label.clone(), clip(value.unwrap_or_else(|| "(missing)".into())))
        })
        .collect()
}

fn scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
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
