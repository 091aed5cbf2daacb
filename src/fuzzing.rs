//! Entry points for the fuzz targets in `fuzz/` (a separate workspace run
//! with `cargo fuzz`). Each takes arbitrary bytes and must never panic;
//! where a property is cheap to check it is asserted here too.

use crate::route::canonical::canonicalize;

/// The canonical path is idempotent on whatever it accepts.
pub fn canonical_path(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(c) = canonicalize(s) {
        let again = canonicalize(c.as_str());
        assert_eq!(again.as_ref().ok(), Some(&c), "canonicalize is not idempotent on {s:?}");
        assert!(!c.as_str().contains("//"));
    }
}

/// Compact JWS decoding and ES256 verification against a fixed key.
pub fn jws_decode(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(d) = crate::jose::jws::decode(s) {
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).map(|k| *k.verifying_key());
        if let Ok(k) = key {
            let _ = crate::jose::jws::verify_es256(&d, &k);
        }
    }
}

/// Config parsing with arbitrary text, routes included.
pub fn config_parse(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let _ = crate::config::from_str(s, "fuzz.yaml");
}

/// Route matching on arbitrary paths against a fixed table.
pub fn route_match(data: &[u8]) {
    use std::sync::OnceLock;
    static TABLE: OnceLock<Option<crate::config::Config>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        crate::config::from_str(
            "listen: 127.0.0.1:1\ntls: { cert: c, key: k }\nupstream: http://127.0.0.1:2\nsession: { cookie: S }\n\
             assertion: { key: a, issuer: i, audience: a }\nroutes:\n\
             - { name: a, match: { path: '/admin/users/([^/]+)(/delete)?', methods: [POST] } }\n\
             - { name: b, match: { prefix: /ops, case_insensitive: true } }\n",
            "fuzz.yaml",
        )
        .ok()
    });
    let (Some(cfg), Ok(s)) = (table, std::str::from_utf8(data)) else {
        return;
    };
    let Ok(path) = canonicalize(s) else { return };
    let headers = http::HeaderMap::new();
    let _ = cfg.routes.find(&crate::route::MatchRequest {
        host: "h",
        methods: &[http::Method::POST],
        path: &path,
        query: None,
        headers: &headers,
        workload: false,
    });
}

#[cfg(test)]
mod tests {
    /// A smoke run of every entry point over a few hostile inputs, so the
    /// targets stay compiling and panic-free even where cargo-fuzz is not
    /// installed.
    #[test]
    fn entry_points_survive_hostile_inputs() {
        let inputs: [&[u8]; 8] = [
            b"",
            b"/a/../../b",
            b"/%2e%2e/%252f/;x/..;/",
            b"e30.e30.",
            b"eyJhbGciOiJub25lIn0.e30.",
            b"routes: [ { name: x, match: { path: '(' } } ]",
            &[0xff, 0xfe, 0x00],
            b"listen: [\n",
        ];
        for i in inputs {
            super::canonical_path(i);
            super::jws_decode(i);
            super::config_parse(i);
            super::route_match(i);
        }
    }
}
