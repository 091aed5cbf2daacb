//! Request bodies, read once and by their declared type.
//!
//! Display fields, `json`/`form` conditions and the body's `_method`
//! override all read a body through this module, so no two of them can see
//! different requests. The reading is refused (400) wherever an upstream
//! framework could read the same bytes differently:
//!
//! - the body is read only as the type its single `Content-Type` declares,
//!   and only as the type the route reads (`json:` or `form:`); a missing,
//!   repeated or other type, a comma-separated list of types, a charset
//!   other than UTF-8 or a `Content-Encoding` is refused. (Rack reads a body
//!   without a type as a form, the Werkzeug server keeps the last of two
//!   types, Express inflates gzip bodies.) An empty body has no fields.
//! - a JSON body with a repeated key anywhere (compared case-insensitively)
//!   is refused: `serde_json` keeps the last copy, other parsers the first.
//! - a form field the route reads must occur once, under its own name (any
//!   ASCII case). Another copy is refused, and so is a spelling that some
//!   framework folds into the same field: `amount[]` or `amount[x]` (qs,
//!   Rack, PHP arrays), `amo.unt` or ` amount` (PHP), other Unicode case.
//!   Pairs are split on `&` and, separately, on `&` and `;` (older Rack and
//!   Python parsers); the two readings must agree on every field read.
//!
//! No I/O: the caller buffers the body.

use http::{header, HeaderMap, Method};
use serde_json::Value as Json;
use std::fmt;

/// The one type a route reads its body as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/json` or `application/*+json`.
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
}

impl BodyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BodyKind::Json => "json",
            BodyKind::Form => "form",
        }
    }
}

/// What a route reads from its body; built once from its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reader {
    pub kind: BodyKind,
    /// Form fields the route reads, `_method` always among them.
    fields: Vec<String>,
}

/// The method-override field frameworks read from a body.
const METHOD_FIELD: &str = "_method";

impl Reader {
    pub fn new<'a>(kind: BodyKind, fields: impl IntoIterator<Item = &'a str>) -> Reader {
        let mut out: Vec<String> = vec![METHOD_FIELD.to_owned()];
        for f in fields {
            if !out.iter().any(|o| key(o) == key(f)) {
                out.push(f.to_owned());
            }
        }
        Reader { kind, fields: out }
    }
}

/// A method name as frameworks read an override: trimmed, any case.
pub fn parse_method(v: &[u8]) -> Option<http::Method> {
    let v = v.trim_ascii();
    if !v.iter().any(u8::is_ascii_lowercase) {
        return http::Method::from_bytes(v).ok();
    }
    http::Method::from_bytes(&v.to_ascii_uppercase()).ok()
}

/// Why a body cannot be read unambiguously. Each is a 400 `bad_request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("the request body has no Content-Type")]
    NoType,
    #[error("the request has more than one Content-Type")]
    ManyTypes,
    #[error("the request body's Content-Type is not the one this route reads")]
    WrongType,
    #[error("the request body's charset is not UTF-8")]
    Charset,
    #[error("the request body is encoded (Content-Encoding)")]
    Encoded,
    #[error("the request body is not valid JSON")]
    InvalidJson,
    #[error("the request body repeats a JSON key")]
    DuplicateKey,
    #[error("a form field this route reads is repeated or spelled ambiguously")]
    Ambiguous,
    #[error("a form field this route reads is not valid UTF-8")]
    Utf8,
}

impl ReadError {
    /// The client-facing message: names the rule, never request data.
    pub fn message(self) -> &'static str {
        match self {
            ReadError::NoType => "the request body has no Content-Type",
            ReadError::ManyTypes => "the request has more than one Content-Type",
            ReadError::WrongType => "the request body's Content-Type is not the one this route reads",
            ReadError::Charset => "the request body's charset is not UTF-8",
            ReadError::Encoded => "the request body is encoded (Content-Encoding)",
            ReadError::InvalidJson => "the request body is not valid JSON",
            ReadError::DuplicateKey => "the request body repeats a JSON key",
            ReadError::Ambiguous => "a form field this route reads is repeated or spelled ambiguously",
            ReadError::Utf8 => "a form field this route reads is not valid UTF-8",
        }
    }
}

/// A body as the route reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    doc: Doc,
}

#[derive(Debug, Clone, PartialEq)]
enum Doc {
    /// No bytes, or a JSON body of only whitespace: no fields at all.
    Empty,
    Json(Json),
    /// The fields the reader asked for that are present: (config name, value).
    Form(Vec<(String, String)>),
}

impl Reading {
    /// A reading with no fields (no body).
    pub fn empty() -> Reading {
        Reading { doc: Doc::Empty }
    }

    /// Reads `body` as `reader` says, or refuses it.
    pub fn read(reader: &Reader, headers: &HeaderMap, body: &[u8]) -> Result<Reading, ReadError> {
        let mut types = headers.get_all(header::CONTENT_TYPE).iter();
        let declared = match (types.next(), types.next()) {
            (_, Some(_)) => return Err(ReadError::ManyTypes),
            (t, None) => t,
        };
        if body.is_empty() {
            return Ok(Reading::empty());
        }
        let declared = declared.ok_or(ReadError::NoType)?;
        if encoded(headers) {
            return Err(ReadError::Encoded);
        }
        let media = media_type(declared.as_bytes())?;
        match reader.kind {
            BodyKind::Json if is_json(&media) => {
                if body.iter().all(u8::is_ascii_whitespace) {
                    return Ok(Reading::empty());
                }
                Ok(Reading {
                    doc: Doc::Json(parse_strict_json(body)?),
                })
            }
            BodyKind::Form if media == URLENCODED => {
                let mut found = Vec::new();
                for field in &reader.fields {
                    if let Some(v) = form_field(body, field)? {
                        found.push((field.clone(), v));
                    }
                }
                Ok(Reading { doc: Doc::Form(found) })
            }
            _ => Err(ReadError::WrongType),
        }
    }

    /// The value at an RFC 6901 pointer of a JSON body.
    pub fn pointer(&self, pointer: &str) -> Option<&Json> {
        match &self.doc {
            Doc::Json(v) => v.pointer(pointer),
            _ => None,
        }
    }

    /// A form field the reader was built with (by its configured name,
    /// compared without regard to ASCII case).
    pub fn field(&self, name: &str) -> Option<&str> {
        match &self.doc {
            Doc::Form(fields) => fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }

    /// The `_method` override this body carries, as the route read it.
    pub fn method_override(&self) -> Vec<Method> {
        match &self.doc {
            Doc::Json(v) => json_methods(v),
            Doc::Form(_) => self
                .field(METHOD_FIELD)
                .and_then(|m| parse_method(m.as_bytes()))
                .into_iter()
                .collect(),
            Doc::Empty => Vec::new(),
        }
    }
}

const URLENCODED: &str = "application/x-www-form-urlencoded";

fn is_json(media: &str) -> bool {
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// A `Content-Encoding` other than `identity`: the bytes are not what the
/// upstream will parse once it has inflated them.
fn encoded(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"identity"))
}

/// The lower-cased `type/subtype` of one `Content-Type` value, with a
/// charset (if any) of UTF-8. A list (`a/b, c/d`) is refused: Rack takes
/// the first item, others the whole value.
fn media_type(value: &[u8]) -> Result<String, ReadError> {
    let text = std::str::from_utf8(value).map_err(|_| ReadError::WrongType)?;
    if text.contains(',') {
        return Err(ReadError::WrongType);
    }
    let mut parts = text.split(';');
    let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let valid = media.split_once('/').is_some_and(|(t, s)| is_token(t) && is_token(s));
    if !valid {
        return Err(ReadError::WrongType);
    }
    let mut charset = None;
    for param in parts {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("charset") {
            if charset.is_some() {
                return Err(ReadError::Charset);
            }
            let v = value.trim();
            charset = Some(v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v));
        }
    }
    match charset {
        None => Ok(media),
        Some(c) if c.eq_ignore_ascii_case("utf-8") || c.eq_ignore_ascii_case("utf8") => Ok(media),
        Some(_) => Err(ReadError::Charset),
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// How frameworks fold a form field name: case (ASP.NET), `.` and spaces
/// to `_` (PHP), surrounding whitespace.
fn key(name: &str) -> String {
    name.trim().to_lowercase().replace(['.', ' '], "_")
}

/// Whether a body name `name` is a reading of field `want` (whose folded
/// form is `wanted`), and whether it is the field's own spelling.
fn occurrence(name: &str, want: &str, wanted: &str) -> Option<bool> {
    let k = key(name);
    let same = k == wanted || k.strip_prefix(wanted).is_some_and(|rest| rest.starts_with('['));
    same.then(|| name.eq_ignore_ascii_case(want))
}

/// The value of form field `want`, which must occur once, in its own
/// spelling, identically whether `;` separates pairs or not.
fn form_field(body: &[u8], want: &str) -> Result<Option<String>, ReadError> {
    let amp = occurrences(body, b"&", want)?;
    let semi = occurrences(body, b"&;", want)?;
    if amp != semi {
        return Err(ReadError::Ambiguous);
    }
    let mut it = amp.into_iter();
    match (it.next(), it.next()) {
        (None, _) => Ok(None),
        (Some((true, v)), None) => Ok(Some(v)),
        _ => Err(ReadError::Ambiguous),
    }
}

/// Every pair whose name reads as `want`: (own spelling, value).
fn occurrences(body: &[u8], separators: &[u8], want: &str) -> Result<Vec<(bool, String)>, ReadError> {
    let wanted = key(want);
    let mut out = Vec::new();
    for pair in body.split(|b| separators.contains(b)) {
        if pair.is_empty() {
            continue;
        }
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        let name = decode(name);
        let name = String::from_utf8_lossy(&name);
        if let Some(own) = occurrence(&name, want, &wanted) {
            let value = String::from_utf8(decode(value)).map_err(|_| ReadError::Utf8)?;
            if name.contains('\u{FFFD}') {
                return Err(ReadError::Utf8);
            }
            out.push((own, value));
        }
    }
    Ok(out)
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a
/// byte; a `%` not followed by two hex digits stays as it is (WHATWG).
fn decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |j: usize| s.get(j).and_then(|c| (*c as char).to_digit(16));
                if let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2)) {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            _ => out.push(b),
        }
        i += 1;
    }
    out
}

/// `_method` in a form body, for matching before the route is known: the
/// same field rules as a route's reading.
pub fn form_method(body: &[u8]) -> Result<Vec<Method>, ReadError> {
    let amp = occurrences(body, b"&", METHOD_FIELD)?;
    let semi = occurrences(body, b"&;", METHOD_FIELD)?;
    if amp != semi || amp.len() > 1 {
        return Err(ReadError::Ambiguous);
    }
    // A variant spelling (`_method[]`) is still read here: matching may
    // only widen.
    Ok(amp.iter().filter_map(|(_, v)| parse_method(v.as_bytes())).collect())
}

/// `_method` in a JSON body, for matching before the route is known.
/// Unparsable JSON carries no override (the upstream cannot read it
/// either); a repeated key is refused.
pub fn json_method(body: &[u8]) -> Result<Vec<Method>, ReadError> {
    match parse_strict_json(body) {
        Ok(v) => Ok(json_methods(&v)),
        Err(ReadError::DuplicateKey) => Err(ReadError::DuplicateKey),
        Err(_) => Ok(Vec::new()),
    }
}

/// A top-level `_method` string, or any string in a `_method` array
/// (Express's method-override takes the first).
fn json_methods(doc: &Json) -> Vec<Method> {
    let Json::Object(doc) = doc else {
        return Vec::new();
    };
    let items = match doc.get(METHOD_FIELD) {
        Some(Json::Array(items)) => items.iter().collect(),
        Some(v) => vec![v],
        None => Vec::new(),
    };
    items
        .into_iter()
        .filter_map(Json::as_str)
        .filter_map(|s| parse_method(s.as_bytes()))
        .collect()
}

fn parse_strict_json(body: &[u8]) -> Result<Json, ReadError> {
    use serde::Deserialize as _;
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = StrictJson::deserialize(&mut de).map_err(|e| {
        if e.to_string().starts_with(DUPLICATE) {
            ReadError::DuplicateKey
        } else {
            ReadError::InvalidJson
        }
    })?;
    de.end().map_err(|_| ReadError::InvalidJson)?;
    Ok(value.0)
}

const DUPLICATE: &str = "duplicate key";

/// A JSON value that rejects objects with duplicate keys (compared
/// case-insensitively), which `serde_json::Value` would silently resolve
/// to the last one.
struct StrictJson(Json);

impl<'de> serde::Deserialize<'de> for StrictJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictJson)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::from(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Json, E> {
        serde_json::Number::from_f64(v)
            .map(Json::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictJson(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut object = serde_json::Map::new();
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.to_lowercase()) {
                // The key itself stays out of the error: it is request data.
                return Err(serde::de::Error::custom(DUPLICATE));
            }
            let StrictJson(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Json::Object(object))
    }
}

#[cfg(test)]
mod tests;
