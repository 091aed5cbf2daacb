#![allow(clippy::expect_used, clippy::unwrap_used)]

use super::*;
use crate::policy::route_reader;
use http::HeaderValue;

fn headers(types: &[&'static str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for t in types {
        h.append(header::CONTENT_TYPE, HeaderValue::from_static(t));
    }
    h
}

fn form(fields: &[&str]) -> Reader {
    Reader::new(BodyKind::Form, fields.iter().copied())
}

fn json() -> Reader {
    Reader::new(BodyKind::Json, [])
}

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";

#[test]
fn a_body_is_read_by_its_one_declared_type() {
    let smuggled = br#"{"amount":5,"payee":"x","z":"&amount=1000000&payee=mallory&y="}"#;
    // Issue 20 #1: a JSON display over a body declared as a form.
    assert_eq!(
        Reading::read(&json(), &headers(&[FORM]), smuggled),
        Err(ReadError::WrongType)
    );
    // The same bytes read as the form they claim to be show what Flask reads.
    let r = Reading::read(&form(&["amount", "payee"]), &headers(&[FORM]), smuggled).expect("form");
    assert_eq!(r.field("amount"), Some("1000000"));
    assert_eq!(r.field("payee"), Some("mallory"));
    assert_eq!(r.pointer("/amount"), None);

    let ok = br#"{"amount":5}"#;
    assert_eq!(Reading::read(&json(), &headers(&[]), ok), Err(ReadError::NoType));
    assert_eq!(
        Reading::read(&json(), &headers(&[JSON, FORM]), ok),
        Err(ReadError::ManyTypes)
    );
    assert_eq!(
        Reading::read(&json(), &headers(&[JSON, JSON]), ok),
        Err(ReadError::ManyTypes)
    );
    for bad in [
        "application/json, application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded, application/vnd+json",
        "text/plain",
        "application/jsonx",
        "application json",
        "multipart/form-data; boundary=x",
    ] {
        let h = {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(bad).expect("hv"));
            h
        };
        assert_eq!(Reading::read(&json(), &h, ok), Err(ReadError::WrongType), "{bad}");
        assert!(Reading::read(&form(&["amount"]), &h, b"amount=1").is_err(), "{bad}");
    }
    for good in [
        "application/json",
        "Application/JSON; charset=\"utf-8\"",
        "application/problem+json",
    ] {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(good).expect("hv"));
        let r = Reading::read(&json(), &h, ok).expect(good);
        assert_eq!(r.pointer("/amount"), Some(&Json::from(5)));
    }
    let mut h = headers(&["application/json; charset=utf-16"]);
    assert_eq!(Reading::read(&json(), &h, ok), Err(ReadError::Charset));
    h = headers(&[JSON]);
    h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    assert_eq!(Reading::read(&json(), &h, ok), Err(ReadError::Encoded));
    // An empty body has nothing to read, whatever it says it is; two types
    // are refused even then.
    assert_eq!(Reading::read(&json(), &headers(&[]), b""), Ok(Reading::empty()));
    assert_eq!(
        Reading::read(&form(&[]), &headers(&["text/plain"]), b""),
        Ok(Reading::empty())
    );
    assert_eq!(
        Reading::read(&json(), &headers(&[JSON, JSON]), b""),
        Err(ReadError::ManyTypes)
    );
}

#[test]
fn json_keys_occur_once() {
    let read = |b: &str| Reading::read(&json(), &headers(&[JSON]), b.as_bytes());
    assert_eq!(read(r#"{"a":1,"a":2}"#), Err(ReadError::DuplicateKey));
    assert_eq!(read(r#"{"a":1,"A":2}"#), Err(ReadError::DuplicateKey));
    assert_eq!(read(r#"{"x":{"a":1,"a":2}}"#), Err(ReadError::DuplicateKey));
    assert_eq!(
        read(r#"[{"a":1},{"a":2}]"#).map(|r| r.pointer("/1/a").cloned()),
        Ok(Some(Json::from(2)))
    );
    assert_eq!(read(r#"{"a":1"#), Err(ReadError::InvalidJson));
    assert_eq!(read("\u{feff}{}"), Err(ReadError::InvalidJson));
    assert_eq!(read(r#"{"a":1e400}"#), Err(ReadError::InvalidJson));
    let deep = "[".repeat(10_000);
    assert_eq!(read(&deep), Err(ReadError::InvalidJson));
    assert_eq!(read(" \n"), Ok(Reading::empty()));
}

#[test]
fn form_fields_read_occur_once_in_their_own_spelling() {
    let read = |fields: &[&str], b: &str| Reading::read(&form(fields), &headers(&[FORM]), b.as_bytes());
    // Issue 13 #3: ACME to the approver, Mallory to the upstream.
    assert_eq!(
        read(&["payee"], "payee=ACME&amount=5&payee=Mallory"),
        Err(ReadError::Ambiguous)
    );
    for body in [
        "amount=1&AMOUNT=2",
        "amount=1;amount=2",
        "amount[]=1",
        "amount[x]=1&other=2",
        "amo.unt=1",
        "amo+unt=1",
        "+amount=1",
        "amount=1&amount",
        "am%6Funt=1&amount=2",
        "\u{212A}ey=1",
    ] {
        let fields: &[&str] = if body.starts_with('\u{212A}') {
            &["key"]
        } else {
            &["amo_unt", "amount"]
        };
        assert_eq!(read(fields, body), Err(ReadError::Ambiguous), "{body}");
    }
    // The method override is always read, so a repeated one is refused too.
    assert_eq!(
        read(&["amount"], "amount=1&_method=GET&_method=DELETE"),
        Err(ReadError::Ambiguous)
    );
    assert_eq!(read(&["amount"], "amount=%FF"), Err(ReadError::Utf8));
    // A raw `;` in a value read: older parsers end the value there.
    assert_eq!(read(&["memo"], "memo=x;y"), Err(ReadError::Ambiguous));
    // Fields the route does not read may repeat or hold a `;`.
    let r = read(&["amount", "memo"], "tag=a&tag=b;c&memo=x%3By&Amount=7&_method=put").expect("form");
    assert_eq!(r.field("amount"), Some("7"));
    assert_eq!(r.field("memo"), Some("x;y"));
    assert_eq!(r.field("tag"), None);
    assert_eq!(r.method_override(), vec![Method::PUT]);
    let r = read(&["note"], "note=a+b%20c%2").expect("form");
    assert_eq!(r.field("note"), Some("a b c%2"));
    // A bracketed field is its own name, and its array spelling is a copy.
    assert_eq!(
        read(&["t[amount]"], "t[amount]=1&t[amount][]=2"),
        Err(ReadError::Ambiguous)
    );
    let r = read(&["t[amount]"], "t=x&t[amount]=1").expect("form");
    assert_eq!(r.field("t[amount]"), Some("1"));
}

#[test]
fn a_route_reads_one_type() {
    use crate::policy::{DisplayField, DisplaySource};
    let d = |source| DisplayField {
        label: "x".into(),
        source,
    };
    assert_eq!(route_reader(&[d(DisplaySource::Capture(1))], &[]), Ok(None));
    let r = route_reader(&[d(DisplaySource::Json("/a".into()))], &[]).expect("json");
    assert_eq!(r.map(|r| r.kind), Some(BodyKind::Json));
    assert!(route_reader(
        &[d(DisplaySource::Json("/a".into())), d(DisplaySource::Form("a".into()))],
        &[]
    )
    .is_err());
}
