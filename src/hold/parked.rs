//! The request a hold parks, and the packed form it waits in.
//!
//! A pending hold may wait for minutes, and a gateway may keep tens of
//! thousands of them. As a `HeaderMap` its headers cost a hash table sized
//! to the next power of two (about 100 bytes a slot) plus one allocation per
//! value; packed, they are one exact-sized buffer (in the format the shared
//! store keeps), and the `HeaderMap` is built again only for the one
//! release that forwards it. The body is kept as it was read: its bytes own
//! their charge against the buffered-bytes budget (`hold::budget`), so a
//! parked body counts against its client until the hold ends.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

/// The request itself, as it will be forwarded.
#[derive(Debug)]
pub struct Parked {
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A parked request: its headers in one buffer (per header its name and
/// value with their lengths and whether the value is sensitive), then its
/// body. In the store's form the body follows the headers in the same
/// buffer; in the memory engine's it is the `Bytes` that was read.
#[derive(Debug, Clone)]
pub struct Packed {
    head: Box<[u8]>,
    body: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    #[error("parked request cut short")]
    Short,
    #[error("parked header name is not a header name")]
    Name,
    #[error("parked header value is not a header value")]
    Value,
}

impl Packed {
    pub fn pack(p: &Parked) -> Packed {
        let headers: usize = p.headers.iter().map(|(n, v)| 9 + n.as_str().len() + v.len()).sum();
        let mut out = Vec::with_capacity(4 + headers);
        out.extend_from_slice(&(p.headers.len() as u32).to_be_bytes());
        for (name, value) in &p.headers {
            out.extend_from_slice(&(name.as_str().len() as u32).to_be_bytes());
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(&(value.len() as u32).to_be_bytes());
            out.extend_from_slice(value.as_bytes());
            out.push(u8::from(value.is_sensitive()));
        }
        Packed {
            head: out.into_boxed_slice(),
            body: p.body.clone(),
        }
    }

    /// The store's form read back (headers, then the body), checked when
    /// unpacked.
    pub fn from_bytes(bytes: Vec<u8>) -> Packed {
        Packed {
            head: bytes.into_boxed_slice(),
            body: Bytes::new(),
        }
    }

    /// The store's form: the headers, then the body, in one buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.head.len() + self.body.len());
        out.extend_from_slice(&self.head);
        out.extend_from_slice(&self.body);
        out
    }

    /// The request again, every name and value checked as it is read.
    pub fn unpack(&self) -> Result<Parked, PackError> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], PackError> {
            if b.len() < n {
                return Err(PackError::Short);
            }
            let (head, rest) = b.split_at(n);
            *b = rest;
            Ok(head)
        }
        fn len(b: &mut &[u8]) -> Result<usize, PackError> {
            let raw = take(b, 4)?;
            Ok(u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize)
        }
        let mut b: &[u8] = &self.head;
        let count = len(&mut b)?;
        // Bounded by what the buffer can hold, not by what it claims.
        let mut headers = HeaderMap::with_capacity(count.min(b.len() / 9));
        for _ in 0..count {
            let n = len(&mut b)?;
            let name = HeaderName::from_bytes(take(&mut b, n)?).map_err(|_| PackError::Name)?;
            let n = len(&mut b)?;
            let mut value = HeaderValue::from_bytes(take(&mut b, n)?).map_err(|_| PackError::Value)?;
            value.set_sensitive(take(&mut b, 1)?[0] == 1);
            headers.append(name, value);
        }
        // What follows the headers is the body (the store's form); packed
        // here, nothing follows and the body was kept as read.
        let body = if b.is_empty() {
            self.body.clone()
        } else {
            Bytes::copy_from_slice(b)
        };
        Ok(Parked { headers, body })
    }
}

#[cfg(test)]
mod tests {
    use super::{PackError, Packed, Parked};
    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue};

    #[test]
    fn a_packed_request_unpacks_to_the_same_headers_repeats_sensitivity_and_body() {
        let mut headers = HeaderMap::new();
        headers.append("x-list", HeaderValue::from_static("a"));
        headers.append("content-type", HeaderValue::from_static("application/json"));
        headers.append("x-list", HeaderValue::from_static("b"));
        let mut secret = HeaderValue::from_static("Bearer t");
        secret.set_sensitive(true);
        headers.append("authorization", secret);
        let body = Bytes::from_static(b"{\"amount\": 10}");
        let packed = Packed::pack(&Parked {
            headers: headers.clone(),
            body: body.clone(),
        });
        let back = packed.unpack().expect("unpacks");
        assert_eq!(back.headers, headers);
        let repeats: Vec<_> = back.headers.get_all("x-list").iter().collect();
        assert_eq!(repeats, ["a", "b"], "repeats in order");
        assert!(back.headers["authorization"].is_sensitive());
        assert!(!back.headers["content-type"].is_sensitive());
        assert_eq!(back.body, body);
        assert_eq!(
            packed.to_bytes().len(),
            4 + headers
                .iter()
                .map(|(n, v)| 9 + n.as_str().len() + v.len())
                .sum::<usize>()
                + body.len(),
            "exact-sized"
        );
        let stored = Packed::from_bytes(packed.to_bytes())
            .unpack()
            .expect("the store's form unpacks");
        assert_eq!(
            (stored.headers, stored.body),
            (headers, body),
            "the same request from the store"
        );
    }

    #[test]
    fn damaged_bytes_are_refused_not_trusted() {
        let packed = Packed::pack(&Parked {
            headers: HeaderMap::from_iter([(http::header::HOST, HeaderValue::from_static("admin.example"))]),
            body: Bytes::new(),
        });
        let bytes = packed.to_bytes();
        for cut in 1..bytes.len() {
            // Any prefix short of the header is cut short, never a panic.
            assert!(Packed::from_bytes(bytes[..cut].to_vec()).unpack().is_err(), "{cut}");
        }
        let mut bad = bytes.clone();
        bad[8] = b' ';
        assert_eq!(Packed::from_bytes(bad).unpack().err(), Some(PackError::Name));
        let mut bad = bytes;
        let value_at = 4 + 4 + 4 + 4;
        bad[value_at] = b'\n';
        assert_eq!(Packed::from_bytes(bad).unpack().err(), Some(PackError::Value));
        // A length past the end is cut short, never read beyond.
        let mut long = Packed::pack(&Parked {
            headers: HeaderMap::from_iter([(http::header::HOST, HeaderValue::from_static("admin.example"))]),
            body: Bytes::from_static(b"body"),
        })
        .to_bytes();
        long[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(Packed::from_bytes(long).unpack().err(), Some(PackError::Short));
        let huge = [0xff, 0xff, 0xff, 0xff];
        assert_eq!(Packed::from_bytes(huge.to_vec()).unpack().err(), Some(PackError::Short));
    }
}
