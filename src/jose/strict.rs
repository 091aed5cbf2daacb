//! Strict JSON for JOSE: serde_json keeps the last of two members with the
//! same name, while other parsers keep the first. A token whose meaning
//! depends on which parser reads it is refused instead, at every depth.

use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrictError {
    /// Not JSON at all.
    Syntax,
    /// Valid JSON, but some object names a member twice.
    Duplicate,
}

const DUPLICATE_MEMBER: &str = "duplicate member name";

/// Parses any JSON value, refusing duplicate member names anywhere in it.
pub fn parse(bytes: &[u8]) -> Result<Value, StrictError> {
    match serde_json::from_slice::<StrictValue>(bytes) {
        Ok(v) => Ok(v.0),
        // serde_json reports syntax as syntax errors; "data" errors come only
        // from the visitor below.
        Err(e) if e.is_data() && e.to_string().starts_with(DUPLICATE_MEMBER) => Err(StrictError::Duplicate),
        Err(_) => Err(StrictError::Syntax),
    }
}

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // serde_json's recursion limit still applies through deserialize_any.
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = StrictValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Number(v.into())))
    }

    fn visit_u64<E>(self, v: u64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Number(v.into())))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<StrictValue, E> {
        // serde_json never yields a non-finite number; this is defensive.
        serde_json::Number::from_f64(v)
            .map(|n| StrictValue(Value::Number(n)))
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(StrictValue(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<StrictValue, A::Error> {
        let mut map = Map::new();
        // Names are compared after unescaping, so "sub" and "s\u0075b" collide.
        while let Some(name) = access.next_key::<String>()? {
            if map.contains_key(&name) {
                return Err(A::Error::custom(DUPLICATE_MEMBER));
            }
            let StrictValue(value) = access.next_value()?;
            map.insert(name, value);
        }
        Ok(StrictValue(Value::Object(map)))
    }
}
