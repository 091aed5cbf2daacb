//! The canonical request path: the one path the route matcher sees and the
//! upstream receives.
//!
//! An auth proxy is bypassed whenever it and the upstream disagree about which
//! resource a request names (`/public/..%2fadmin`, `/admin/..;/x`, `/%61dmin`,
//! `//admin`). So the gateway computes a single canonical form, matches it and
//! forwards exactly it; any input whose meaning depends on who decodes it is
//! rejected instead of guessed at, and the caller answers 400 `bad_request`.

/// A request path in canonical form. Build one with [`canonicalize`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath {
    path: String,
    /// Length of `path` minus the trailing slash, if any; kept as a length so
    /// `match_form` borrows instead of allocating.
    match_len: usize,
    without_params: Option<String>,
}

impl CanonicalPath {
    /// The form forwarded upstream (keeps one trailing slash if the request had one).
    pub fn as_str(&self) -> &str {
        &self.path
    }

    /// The form the matcher sees: [`as_str`](Self::as_str) with one trailing
    /// slash removed (unless the path is `/`).
    pub fn match_form(&self) -> &str {
        self.path.get(..self.match_len).unwrap_or(&self.path)
    }

    /// [`match_form`](Self::match_form) with the `;params` of every segment
    /// removed (`/a;jsessionid=x/b` → `/a/b`), or `None` when the path has no
    /// parameters. A route matches if it matches either form.
    ///
    /// Both a raw `;` and an encoded `%3B` start the parameters here: an
    /// upstream that decodes before it strips parameters reads `%3B` as `;`,
    /// and an extra form can only make a route match more, never less.
    /// Segments left empty are dropped, as a servlet container does
    /// (`/;x/admin` → `/admin`).
    pub fn without_params(&self) -> Option<&str> {
        self.without_params.as_deref()
    }
}

/// Why a path was rejected. Every variant means "ambiguous": some upstream
/// could read the path differently from the matcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// Empty, `*`, or a relative path (e.g. an HTTP/2 `:path` without `/`).
    #[error("path does not start with '/'")]
    NotAbsolute,
    #[error("'%' not followed by two hex digits")]
    MalformedEscape,
    /// `%2F` or `%5C`: a separator the matcher would not see but an upstream might.
    #[error("encoded '/' or '\\' in path")]
    EncodedSeparator,
    /// `%25` followed by two hex digits: decoding twice yields another escape.
    #[error("double percent-encoding in path")]
    DoubleEncoding,
    /// 0x00-0x1F or 0x7F, raw or encoded.
    #[error("control character in path")]
    ControlChar,
    #[error("path is not valid UTF-8 after percent-decoding")]
    InvalidUtf8,
    /// Windows and IIS upstreams treat `\` as `/`.
    #[error("backslash in path")]
    Backslash,
    #[error("raw non-ASCII byte in path")]
    NonAscii,
    /// The caller splits off query and fragment; one left in the path would
    /// be re-split by the upstream after matching.
    #[error("raw '?' or '#' in path")]
    QueryOrFragment,
    #[error("'..' segment above the root")]
    AboveRoot,
    /// `/..;x/`, `/.;x/`: Tomcat strips the parameters and then resolves the dots.
    #[error("'.' or '..' segment with ';' parameters")]
    DotSegmentWithParams,
    /// `/a/;p=1/../b`: a reader that keeps `;p=1` as a segment pops it and
    /// reads `/a/b`; a servlet container strips it to an empty segment,
    /// drops that, and pops `a` instead, reading `/b`.
    #[error("'..' over a segment of only ';' parameters")]
    DotsOverParams,
}

/// Canonicalizes the path component of a request target (no query, no
/// fragment). Accepts any `&str` and never panics; see [`PathError`] for what
/// is rejected.
pub fn canonicalize(raw_path: &str) -> Result<CanonicalPath, PathError> {
    let Some(rest) = raw_path.strip_prefix('/') else {
        return Err(PathError::NotAbsolute);
    };
    let bytes = rest.as_bytes();
    let mut b = Builder::with_capacity(raw_path.len());
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        match c {
            b'/' => b.slash()?,
            b'%' => {
                let v = match bytes.get(i + 1..i + 3) {
                    Some(&[h, l]) => match (hex_value(h), hex_value(l)) {
                        (Some(h), Some(l)) => (h << 4) | l,
                        _ => return Err(PathError::MalformedEscape),
                    },
                    _ => return Err(PathError::MalformedEscape),
                };
                i += 2;
                b.escape(v)?;
            }
            b'\\' => return Err(PathError::Backslash),
            0x00..=0x1F | 0x7F => return Err(PathError::ControlChar),
            0x80..=0xFF => return Err(PathError::NonAscii),
            b'?' | b'#' => return Err(PathError::QueryOrFragment),
            b';' => b.raw_semicolon()?,
            _ if is_plain(c) && b.pct25 == 0 => {
                // Most of a real path is plain runs: copy each run at once.
                // Dots may join a run that did not start with one: its
                // segment can no longer be a dot segment.
                let len = bytes
                    .get(i..)
                    .map_or(0, |tail| tail.iter().take_while(|&&c| is_plain(c) || c == b'.').count());
                // Plain bytes are ASCII, so the run ends on a char boundary.
                let run = rest.get(i..i + len).ok_or(PathError::NonAscii)?;
                b.plain_run(run)?;
                i += len;
                continue;
            }
            _ => b.literal(c)?,
        }
        i += 1;
    }
    b.finish()
}

/// `dots` value once a segment's base holds anything but one or two dots.
const NOT_DOTS: u8 = 3;

/// One pass, one output buffer. Dot segments are resolved as soon as they end
/// by truncating `out`, so nothing is ever re-scanned except the popped segment.
struct Builder {
    out: String,
    /// A segment is open: its leading `/` is already in `out`.
    open: bool,
    /// Index in `out` of the open segment's leading `/`.
    seg_start: usize,
    /// Dots seen in the open segment's base (the part before any `;`), or
    /// `NOT_DOTS`. Counted on decoded bytes, so `%2e%2e` counts as two.
    dots: u8,
    /// The open segment has reached its `;params`.
    in_params: bool,
    /// Some segment had parameters, so `without_params` must be computed.
    any_params: bool,
    /// The path ends in a slash: explicit, or left by a resolved dot segment.
    trailing: bool,
    /// Progress through `%25` + hex + hex in the decoded output (0, 1 or 2).
    /// Tracked on output, not input, so `%25%34%31` is caught as well.
    pct25: u8,
    utf8: Utf8,
}

impl Builder {
    fn with_capacity(len: usize) -> Self {
        Builder {
            // Decoding only shrinks and hex normalisation keeps length, so
            // this never reallocates.
            out: String::with_capacity(len),
            open: false,
            seg_start: 0,
            dots: 0,
            in_params: false,
            any_params: false,
            trailing: true,
            pct25: 0,
            utf8: Utf8::default(),
        }
    }

    fn open_segment(&mut self) {
        if !self.open {
            self.open = true;
            self.seg_start = self.out.len();
            self.dots = 0;
            self.in_params = false;
            self.pct25 = 0;
            self.out.push('/');
        }
    }

    fn escape(&mut self, v: u8) -> Result<(), PathError> {
        match v {
            b'/' | b'\\' => Err(PathError::EncodedSeparator),
            0x00..=0x1F | 0x7F => Err(PathError::ControlChar),
            _ if is_unreserved(v) => self.literal(v),
            _ => self.kept_escape(v),
        }
    }

    /// A byte written as itself: raw printable ASCII or a decoded unreserved escape.
    fn literal(&mut self, c: u8) -> Result<(), PathError> {
        self.utf8.ascii()?;
        self.open_segment();
        self.pct25 = match (self.pct25, c.is_ascii_hexdigit()) {
            (2, true) => return Err(PathError::DoubleEncoding),
            (1, true) => 2,
            _ => 0,
        };
        if !self.in_params {
            self.dots = match (self.dots, c) {
                (0, b'.') => 1,
                (1, b'.') => 2,
                _ => NOT_DOTS,
            };
        }
        self.out.push(char::from(c));
        Ok(())
    }

    /// Bytes that need no per-byte bookkeeping (see `is_plain`), while no
    /// `%25` is waiting for hex digits.
    fn plain_run(&mut self, run: &str) -> Result<(), PathError> {
        self.utf8.ascii()?;
        self.open_segment();
        if !self.in_params {
            self.dots = NOT_DOTS;
        }
        self.out.push_str(run);
        Ok(())
    }

    fn raw_semicolon(&mut self) -> Result<(), PathError> {
        self.utf8.ascii()?;
        self.open_segment();
        self.pct25 = 0;
        self.in_params = true;
        self.any_params = true;
        self.out.push(';');
        Ok(())
    }

    /// An escape that stays encoded, in upper-case hex so equal paths compare equal.
    fn kept_escape(&mut self, v: u8) -> Result<(), PathError> {
        if v.is_ascii() {
            self.utf8.ascii()?;
        } else {
            self.utf8.feed(v)?;
        }
        self.open_segment();
        if v == b';' {
            self.in_params = true;
            self.any_params = true;
        } else if !self.in_params {
            self.dots = NOT_DOTS;
        }
        self.out.push('%');
        self.out.push(hex_digit(v >> 4));
        self.out.push(hex_digit(v & 0x0F));
        self.pct25 = u8::from(v == b'%');
        Ok(())
    }

    fn slash(&mut self) -> Result<(), PathError> {
        // A multi-byte character split by `/` is invalid.
        self.utf8.ascii()?;
        self.end_segment()?;
        self.trailing = true;
        Ok(())
    }

    fn end_segment(&mut self) -> Result<(), PathError> {
        if !self.open {
            return Ok(());
        }
        self.open = false;
        // A resolved dot segment leaves `trailing` as the slash before it set
        // it (true), so `/a/b/..` ends in `/a/` as in RFC 3986.
        match (self.dots, self.in_params) {
            (1, false) => self.out.truncate(self.seg_start),
            (2, false) => {
                self.out.truncate(self.seg_start);
                // Rejecting rather than clamping: upstreams disagree on what
                // `/../x` means, and clamping would hide a probe from the audit.
                let parent = self.out.rfind('/').ok_or(PathError::AboveRoot)?;
                let popped = self.out.get(parent + 1..).unwrap_or("");
                if param_start(popped.as_bytes()) == 0 {
                    return Err(PathError::DotsOverParams);
                }
                self.out.truncate(parent);
            }
            (1 | 2, true) => return Err(PathError::DotSegmentWithParams),
            _ => self.trailing = false,
        }
        Ok(())
    }

    fn finish(mut self) -> Result<CanonicalPath, PathError> {
        self.utf8.ascii()?;
        self.end_segment()?;
        let mut path = self.out;
        let match_len = if path.is_empty() {
            path.push('/');
            1
        } else if self.trailing {
            path.push('/');
            path.len() - 1
        } else {
            path.len()
        };
        let without_params = if self.any_params {
            strip_params(path.get(..match_len).unwrap_or(&path))
        } else {
            None
        };
        Ok(CanonicalPath {
            path,
            match_len,
            without_params,
        })
    }
}

/// Removes `;params` (raw `;` or `%3B`) from every segment of a canonical
/// path, dropping segments left empty; `None` if there were none (they may
/// all have been popped by `..`).
fn strip_params(path: &str) -> Option<String> {
    let mut out = String::with_capacity(path.len());
    let mut found = false;
    for seg in path.split('/').skip(1) {
        let base_len = param_start(seg.as_bytes());
        found |= base_len < seg.len();
        let base = seg.get(..base_len).unwrap_or(seg);
        if !base.is_empty() {
            out.push('/');
            out.push_str(base);
        }
    }
    if !found {
        return None;
    }
    if out.is_empty() {
        out.push('/');
    }
    Some(out)
}

/// Offset of the first `;` or `%3B` in a canonical segment (escapes there are
/// already upper-case), or its length.
fn param_start(seg: &[u8]) -> usize {
    let mut i = 0;
    while let Some(&c) = seg.get(i) {
        if c == b';' || (c == b'%' && seg.get(i + 1..i + 3) == Some(b"3B")) {
            return i;
        }
        i += 1;
    }
    i
}

/// Printable ASCII that is neither a dot nor a byte with a rule of its own.
fn is_plain(c: u8) -> bool {
    c.is_ascii_graphic() && !matches!(c, b'/' | b'%' | b'\\' | b'?' | b'#' | b';' | b'.')
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn hex_digit(n: u8) -> char {
    let n = n & 0x0F;
    char::from(if n < 10 { b'0' + n } else { b'A' + n - 10 })
}

/// Incremental UTF-8 check over the decoded bytes. Raw input is ASCII, so only
/// runs of escapes can form multi-byte characters; the ranges exclude overlong
/// forms (`%C0%AE` would otherwise be a second spelling of `.`), surrogates
/// and code points above U+10FFFF.
#[derive(Default)]
struct Utf8 {
    /// Continuation bytes still expected.
    need: u8,
    /// Allowed range of the next continuation byte.
    lo: u8,
    hi: u8,
}

impl Utf8 {
    fn ascii(&self) -> Result<(), PathError> {
        if self.need == 0 {
            Ok(())
        } else {
            Err(PathError::InvalidUtf8)
        }
    }

    fn feed(&mut self, b: u8) -> Result<(), PathError> {
        if self.need > 0 {
            if b < self.lo || b > self.hi {
                return Err(PathError::InvalidUtf8);
            }
            self.need -= 1;
            self.lo = 0x80;
            self.hi = 0xBF;
            return Ok(());
        }
        let (need, lo, hi) = match b {
            0xC2..=0xDF => (1, 0x80, 0xBF),
            0xE0 => (2, 0xA0, 0xBF),
            0xE1..=0xEC | 0xEE..=0xEF => (2, 0x80, 0xBF),
            0xED => (2, 0x80, 0x9F),
            0xF0 => (3, 0x90, 0xBF),
            0xF1..=0xF3 => (3, 0x80, 0xBF),
            0xF4 => (3, 0x80, 0x8F),
            _ => return Err(PathError::InvalidUtf8),
        };
        *self = Utf8 { need, lo, hi };
        Ok(())
    }
}

#[cfg(test)]
mod tests;
