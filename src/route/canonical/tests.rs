use super::*;
use proptest::prelude::*;
use PathError::*;

/// What a table case expects: `Ok(as_str, match_form, without_params)` or an error.
type Want = Result<(&'static str, &'static str, Option<&'static str>), PathError>;

const fn ok(s: &'static str, m: &'static str, wp: Option<&'static str>) -> Want {
    Ok((s, m, wp))
}

#[rustfmt::skip]
const CASES: &[(&str, Want)] = &[
    // Rule 1: absolute paths only.
    ("",                        Err(NotAbsolute)),
    ("*",                       Err(NotAbsolute)),
    ("admin",                   Err(NotAbsolute)),
    ("admin/",                  Err(NotAbsolute)),
    ("%2Fadmin",                Err(NotAbsolute)),
    ("/",                       ok("/", "/", None)),
    ("/admin",                  ok("/admin", "/admin", None)),
    // Published auth-proxy bypass shapes.
    ("/admin/../admin",         ok("/admin", "/admin", None)),
    ("/public/../admin",        ok("/admin", "/admin", None)),
    ("/%2e%2e/admin",           Err(AboveRoot)),
    ("/.%2e/",                  Err(AboveRoot)),
    ("/%2E/admin",              ok("/admin", "/admin", None)),
    ("/admin%2fusers",          Err(EncodedSeparator)),
    ("/admin%2Fusers",          Err(EncodedSeparator)),
    ("/admin%5Cusers",          Err(EncodedSeparator)),
    ("/admin%5cusers",          Err(EncodedSeparator)),
    ("/admin\\users",           Err(Backslash)),
    ("/admin/..;/x",            Err(DotSegmentWithParams)),
    ("/.;x/",                   Err(DotSegmentWithParams)),
    ("/..;/admin",              Err(DotSegmentWithParams)),
    ("/a/%2e%2e;x/b",           Err(DotSegmentWithParams)),
    ("/a/.;/b",                 Err(DotSegmentWithParams)),
    ("/a/..%3Bx/b",             Err(DotSegmentWithParams)),
    ("/a/.%3b/b",               Err(DotSegmentWithParams)),
    // Found by the `route_variants` fuzz target (a Tomcat reader pops `zz`).
    ("/%2e/admin/users///alice/zz///;p=1/../delete/", Err(DotsOverParams)),
    ("/a/;p=1/../b",            Err(DotsOverParams)),
    ("/a/%3Bp/../b",            Err(DotsOverParams)),
    ("/a/b;p/../c",             ok("/a/c", "/a/c", None)),
    ("/;x/admin",               ok("/;x/admin", "/;x/admin", Some("/admin"))),
    ("/;/admin",                ok("/;/admin", "/;/admin", Some("/admin"))),
    ("//admin",                 ok("/admin", "/admin", None)),
    ("/admin//users///1",       ok("/admin/users/1", "/admin/users/1", None)),
    ("///",                     ok("/", "/", None)),
    ("/admin/",                 ok("/admin/", "/admin", None)),
    ("/admin//",                ok("/admin/", "/admin", None)),
    ("/%61dmin",                ok("/admin", "/admin", None)),
    ("/%41%44MIN",              ok("/ADMIN", "/ADMIN", None)),
    ("/admin%252fusers",        Err(DoubleEncoding)),
    ("/%252e%252e/",            Err(DoubleEncoding)),
    ("/a%2541",                 Err(DoubleEncoding)),
    ("/a%2525",                 Err(DoubleEncoding)),
    ("/a%25%34%31",             Err(DoubleEncoding)),
    ("/a%25%34x",               ok("/a%254x", "/a%254x", None)),
    ("/a%25",                   ok("/a%25", "/a%25", None)),
    ("/a%25zz",                 ok("/a%25zz", "/a%25zz", None)),
    ("/a%25/41",                ok("/a%25/41", "/a%25/41", None)),
    ("/a%25%2041",              ok("/a%25%2041", "/a%25%2041", None)),
    ("/a%25%25",                ok("/a%25%25", "/a%25%25", None)),
    // Control characters, raw and encoded.
    ("/a%00b",                  Err(ControlChar)),
    ("/a%0ab",                  Err(ControlChar)),
    ("/a%1F",                   Err(ControlChar)),
    ("/a%7f",                   Err(ControlChar)),
    ("/a\0b",                   Err(ControlChar)),
    ("/a\tb",                   Err(ControlChar)),
    ("/a\x7f",                  Err(ControlChar)),
    // Malformed escapes.
    ("/a%",                     Err(MalformedEscape)),
    ("/a%4",                    Err(MalformedEscape)),
    ("/a%g1",                   Err(MalformedEscape)),
    ("/a%1g",                   Err(MalformedEscape)),
    ("/a%%41",                  Err(MalformedEscape)),
    ("/a%u002e",                Err(MalformedEscape)),
    ("/a%+1",                   Err(MalformedEscape)),
    // UTF-8 after decoding.
    ("/a%C3",                   Err(InvalidUtf8)),
    ("/a%FF",                   Err(InvalidUtf8)),
    ("/a%A9",                   Err(InvalidUtf8)),
    ("/a%C3a",                  Err(InvalidUtf8)),
    ("/a%C3/%A9",               Err(InvalidUtf8)),
    ("/a%C3b%A9",               Err(InvalidUtf8)),
    ("/a%C0%AE",                Err(InvalidUtf8)),
    ("/a%E0%80%AE",             Err(InvalidUtf8)),
    ("/a%ED%A0%80",             Err(InvalidUtf8)),
    ("/a%F4%90%80%80",          Err(InvalidUtf8)),
    ("/a%C3%A9",                ok("/a%C3%A9", "/a%C3%A9", None)),
    ("/a%c3%a9",                ok("/a%C3%A9", "/a%C3%A9", None)),
    ("/%F0%9F%98%80/",          ok("/%F0%9F%98%80/", "/%F0%9F%98%80", None)),
    ("/%ef%bf%bf",              ok("/%EF%BF%BF", "/%EF%BF%BF", None)),
    // Raw bytes.
    ("/caf\u{e9}",              Err(NonAscii)),
    ("/a?b",                    Err(QueryOrFragment)),
    ("/a#b",                    Err(QueryOrFragment)),
    ("/a b",                    ok("/a b", "/a b", None)),
    ("/a:b@c!$&'()*+,=",        ok("/a:b@c!$&'()*+,=", "/a:b@c!$&'()*+,=", None)),
    // Kept and decoded escapes.
    ("/a%20b",                  ok("/a%20b", "/a%20b", None)),
    ("/a%7e",                   ok("/a~", "/a~", None)),
    ("/%2D%2e%5F%7E%30",        ok("/-._~0", "/-._~0", None)),
    ("/a%3Bb",                  ok("/a%3Bb", "/a%3Bb", Some("/a"))),
    ("/a%3bb",                  ok("/a%3Bb", "/a%3Bb", Some("/a"))),
    ("/a%3f%23%2b",             ok("/a%3F%23%2B", "/a%3F%23%2B", None)),
    // Segment parameters.
    ("/a;jsessionid=1/b;x=y",   ok("/a;jsessionid=1/b;x=y", "/a;jsessionid=1/b;x=y", Some("/a/b"))),
    ("/a;x;y/b",                ok("/a;x;y/b", "/a;x;y/b", Some("/a/b"))),
    ("/a;x/",                   ok("/a;x/", "/a;x", Some("/a"))),
    ("/a/;x",                   ok("/a/;x", "/a/;x", Some("/a"))),
    ("/;x",                     ok("/;x", "/;x", Some("/"))),
    ("/a;x/../b",               ok("/b", "/b", None)),
    ("/a;x/..",                 ok("/", "/", None)),
    ("/a;../b",                 ok("/a;../b", "/a;../b", Some("/a/b"))),
    ("/a/b;.",                  ok("/a/b;.", "/a/b;.", Some("/a/b"))),
    // Dot segments.
    ("/..",                     Err(AboveRoot)),
    ("/../",                    Err(AboveRoot)),
    ("/a/../..",                Err(AboveRoot)),
    ("/./..",                   Err(AboveRoot)),
    ("/a/b/../../..",           Err(AboveRoot)),
    ("/.",                      ok("/", "/", None)),
    ("/./",                     ok("/", "/", None)),
    ("/a/..",                   ok("/", "/", None)),
    ("/a/b/..",                 ok("/a/", "/a", None)),
    ("/a/b/../",                ok("/a/", "/a", None)),
    ("/a/.",                    ok("/a/", "/a", None)),
    ("/a/./b/.",                ok("/a/b/", "/a/b", None)),
    ("/a/./../b",               ok("/b", "/b", None)),
    ("/a/.%2e/b",               ok("/b", "/b", None)),
    ("/a/%2E./b",               ok("/b", "/b", None)),
    ("/a/b/%2e",                ok("/a/b/", "/a/b", None)),
    ("/a//..//b",               ok("/b", "/b", None)),
    ("/...",                    ok("/...", "/...", None)),
    ("/a/.../b",                ok("/a/.../b", "/a/.../b", None)),
    ("/.a/a./..a",              ok("/.a/a./..a", "/.a/a./..a", None)),
    ("/a/%2e%2e%2e",            ok("/a/...", "/a/...", None)),
    ("/a/..%20",                ok("/a/..%20", "/a/..%20", None)),
    // First error in left-to-right order wins.
    ("/..%2f",                  Err(EncodedSeparator)),
    ("/%00%2f",                 Err(ControlChar)),
];

#[test]
fn table() {
    assert!(CASES.len() >= 60);
    let mut failures = Vec::new();
    for &(input, want) in CASES {
        let got = canonicalize(input);
        let got_view = got
            .as_ref()
            .map(|c| (c.as_str(), c.match_form(), c.without_params()))
            .map_err(|e| *e);
        if got_view != want {
            failures.push(format!("{input:?}: got {got_view:?}, want {want:?}"));
        }
        // Every accepted case must also be a fixed point.
        if let Ok(c) = &got {
            if canonicalize(c.as_str()).as_ref() != Ok(c) {
                failures.push(format!("{input:?}: not idempotent"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn each_error_has_its_own_message() {
    let mut seen = std::collections::HashSet::new();
    for e in [
        NotAbsolute,
        MalformedEscape,
        EncodedSeparator,
        DoubleEncoding,
        ControlChar,
        InvalidUtf8,
        Backslash,
        NonAscii,
        QueryOrFragment,
        AboveRoot,
        DotSegmentWithParams,
        DotsOverParams,
    ] {
        let msg = e.to_string();
        assert!(!msg.is_empty(), "{e:?}");
        assert!(seen.insert(msg), "{e:?} shares its message");
    }
}

// ---- independent model -------------------------------------------------------
//
// A deliberately naive reading of the same rules (split, decode, resolve, in
// separate passes over owned strings) that the one-pass implementation must
// agree with on acceptance and on the resulting path.

#[derive(Clone, Copy)]
enum Tok {
    Raw(u8),
    Kept(u8),
}

fn model(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return None;
    }
    let mut toks = Vec::new();
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        if c == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            if !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
                return None;
            }
            let v = u8::from_str_radix(hex, 16).ok()?;
            if v == b'/' || v == b'\\' || v < 0x20 || v == 0x7F {
                return None;
            }
            toks.push(if v.is_ascii_alphanumeric() || b"-._~".contains(&v) {
                Tok::Raw(v)
            } else {
                Tok::Kept(v)
            });
            i += 3;
        } else {
            if c == b'\\' || !(0x20..0x7F).contains(&c) || c == b'?' || c == b'#' {
                return None;
            }
            toks.push(Tok::Raw(c));
            i += 1;
        }
    }
    let decoded: Vec<u8> = toks
        .iter()
        .map(|t| match *t {
            Tok::Raw(v) | Tok::Kept(v) => v,
        })
        .collect();
    std::str::from_utf8(&decoded).ok()?;
    let mut rendered = String::new();
    for t in &toks {
        match *t {
            Tok::Raw(v) => rendered.push(char::from(v)),
            Tok::Kept(v) => rendered.push_str(&format!("%{v:02X}")),
        }
    }
    if has_double_encoding(&rendered) {
        return None;
    }
    let mut stack: Vec<&str> = Vec::new();
    let mut trailing = false;
    for seg in rendered.split('/').skip(1) {
        let base = seg.split(';').next().unwrap_or("");
        let base = base.split("%3B").next().unwrap_or("");
        match seg {
            "" => trailing = true,
            "." => trailing = true,
            ".." => {
                let popped = stack.pop()?;
                let popped_base = popped.split(';').next().unwrap_or("");
                if popped_base.split("%3B").next().unwrap_or("").is_empty() {
                    return None;
                }
                trailing = true;
            }
            _ if base == "." || base == ".." => return None,
            _ => {
                stack.push(seg);
                trailing = false;
            }
        }
    }
    let mut out = String::new();
    for seg in &stack {
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    Some(out)
}

fn has_double_encoding(s: &str) -> bool {
    s.as_bytes()
        .windows(5)
        .any(|w| w.starts_with(b"%25") && w.iter().skip(3).all(u8::is_ascii_hexdigit))
}

/// Decodes every valid `%HH` once, as a typical upstream does.
fn decode_once(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let pair = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match pair.filter(|h| h.bytes().all(|x| x.is_ascii_hexdigit())) {
            Some(h) if c == b'%' => {
                out.push(u8::from_str_radix(h, 16).unwrap_or(0));
                i += 3;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn strip_segment_params(seg: &str) -> &str {
    seg.split(';').next().unwrap_or("")
}

// ---- proptest strategies -----------------------------------------------------

/// Pieces that exercise the accepting rules: separators, dots (raw and
/// encoded), params, escapes that are decoded or kept, and hex digits that can
/// complete a `%25`.
#[rustfmt::skip]
const BENIGN: &[&str] = &[
    "/", "/", "/", "//", ".", ".", "..", "..", ";", ";x=1", "%2e", "%2E", "%25", "%41", "%61",
    "%3B", "%3b", "%7e", "%20", "%c3%a9", "%F0%9F%98%80", "a", "b", "admin", "A", "2", "5",
    "e", "F", "41", "2e", " ", "~", ":",
];

/// Pieces that each rule rejects.
#[rustfmt::skip]
const HOSTILE: &[&str] = &[
    "%2F", "%2f", "%5C", "%5c", "%00", "%0a", "%7F", "%C3", "%A9", "%C0%AE", "%ED%A0%80", "%",
    "%g", "%4", "\\", "\0", "\n", "\x7f", "?", "#", "é",
];

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => prop::sample::select(BENIGN).prop_map(String::from),
        1 => prop::sample::select(HOSTILE).prop_map(String::from),
        1 => any::<u8>().prop_map(|b| format!("%{b:02x}")),
        1 => any::<u8>().prop_map(|b| format!("%{b:02X}")),
        1 => any::<char>().prop_map(String::from),
    ]
}

fn path() -> impl Strategy<Value = String> {
    (
        prop::sample::select(&["/", "/", "/", "/", "/", "/", "/", "/", "", "."][..]),
        prop::collection::vec(token(), 0..16),
    )
        .prop_map(|(lead, toks)| {
            let mut s = String::from(lead);
            s.extend(toks);
            s
        })
}

/// High bytes, biased to the edges of the UTF-8 lead and continuation ranges.
#[rustfmt::skip]
const UTF8_EDGES: &[u8] = &[
    0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE,
    0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF,
];

fn high_byte() -> impl Strategy<Value = u8> {
    prop_oneof![3 => prop::sample::select(UTF8_EDGES), 1 => 0x80u8..=0xFF]
}

/// Every 1- to 4-byte sequence of UTF-8 range edges, against std.
#[test]
fn utf8_edges_exhaustive() {
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut seq = Vec::with_capacity(4);
    let mut check = |seq: &[u8]| {
        let path: String = seq.iter().map(|b| format!("%{b:02X}")).collect();
        let path = format!("/{path}");
        let want = std::str::from_utf8(seq).map(|_| ()).map_err(|_| InvalidUtf8);
        let got = canonicalize(&path).map(|_| ());
        if got != want {
            failures.push(format!("{path}: got {got:?}, want {want:?}"));
        }
        checked += 1;
    };
    for &a in UTF8_EDGES {
        check(&[a]);
        for &b in UTF8_EDGES {
            check(&[a, b]);
            for &c in UTF8_EDGES {
                check(&[a, b, c]);
                for &d in UTF8_EDGES {
                    seq.clear();
                    seq.extend_from_slice(&[a, b, c, d]);
                    check(&seq);
                }
            }
        }
    }
    assert!(checked > 200_000);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn never_panics_on_any_string(s in any::<String>()) {
        let _ = canonicalize(&s);
        let _ = canonicalize(&format!("/{s}"));
    }

    #[test]
    fn agrees_with_model(s in path()) {
        let got = canonicalize(&s);
        let want = model(&s);
        prop_assert_eq!(got.as_ref().ok().map(|c| c.as_str()), want.as_deref(), "{:?}: {:?}", s, got);
    }

    #[test]
    fn idempotent(s in path()) {
        if let Ok(c) = canonicalize(&s) {
            prop_assert_eq!(canonicalize(c.as_str()), Ok(c));
        }
    }

    #[test]
    fn accepted_shape(s in path()) {
        if let Ok(c) = canonicalize(&s) {
            let p = c.as_str();
            prop_assert!(p.starts_with('/'));
            prop_assert!(!p.contains("//"), "{:?}", p);
            prop_assert!(!p.contains('\\'));
            for seg in p.split('/').skip(1) {
                let base = strip_segment_params(seg);
                prop_assert!(seg != "." && seg != "..", "{:?}", p);
                prop_assert!(base != "." && base != "..", "{:?}", p);
            }
        }
    }

    /// An upstream that decodes the path once sees the structure the matcher saw.
    #[test]
    fn decoded_form_has_same_structure(s in path()) {
        if let Ok(c) = canonicalize(&s) {
            let p = c.as_str();
            let decoded = decode_once(p);
            let text = std::str::from_utf8(&decoded);
            prop_assert!(text.is_ok(), "{:?}", p);
            let text = text.unwrap_or_default();
            prop_assert_eq!(text.split('/').count(), p.split('/').count(), "{:?}", p);
            prop_assert!(!text.contains('\\'));
            prop_assert!(!text.chars().any(|ch| ch.is_ascii_control()), "{:?}", p);
            for seg in text.split('/').skip(1) {
                let base = strip_segment_params(seg);
                prop_assert!(base != "." && base != "..", "{:?}", p);
            }
            // Decoding again changes nothing: no escape survives a first decode.
            prop_assert_eq!(decode_once(text), decoded, "{:?}", p);
        }
    }

    #[test]
    fn match_form_and_without_params(s in path()) {
        if let Ok(c) = canonicalize(&s) {
            let p = c.as_str();
            let m = c.match_form();
            prop_assert!(m == p || (p.len() > 1 && format!("{m}/") == p), "{:?} {:?}", p, m);
            prop_assert!(!m.ends_with('/') || m == "/");
            let has_params = m.contains(';') || m.contains("%3B");
            prop_assert_eq!(c.without_params().is_some(), has_params, "{:?}", p);
            if let Some(wp) = c.without_params() {
                prop_assert!(wp.starts_with('/'));
                prop_assert!(!wp.contains(';') && !wp.contains("%3B") && !wp.contains("//"), "{:?}", wp);
                prop_assert!(wp == "/" || !wp.ends_with('/'));
            }
        }
    }

    /// The incremental UTF-8 check agrees with std on runs of escaped high
    /// bytes interrupted by raw ASCII (`None`).
    #[test]
    fn utf8_check_matches_std(parts in prop::collection::vec(prop::option::weighted(0.9, high_byte()), 0..12)) {
        let mut path = String::from("/");
        let mut decoded = vec![b'/'];
        for part in &parts {
            match part {
                Some(b) => path.push_str(&format!("%{b:02X}")),
                None => path.push('a'),
            }
            decoded.push(part.unwrap_or(b'a'));
        }
        let want_ok = std::str::from_utf8(&decoded).is_ok();
        let got = canonicalize(&path);
        prop_assert_eq!(got.is_ok(), want_ok, "{:?}: {:?}", path, got);
        if !want_ok {
            prop_assert_eq!(got, Err(InvalidUtf8));
        }
    }
}
