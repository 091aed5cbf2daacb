//! Parsing `when:` from YAML, with sub-paths for located errors.

use super::*;

const CONDITION_KEYS: &str = "client_ip_in, client_ip_not_in, outside_hours, header, json, form, \
                              session_age_over, new_device, all_of, any_of, not";
const VALUE_PREDS: [&str; 7] = ["gt", "gte", "lt", "lte", "eq", "in", "regex"];
const STR_PREDS: [&str; 3] = ["regex", "in", "not_in"];
/// Deep enough for any policy a person writes; shallow enough that evaluation's
/// recursion cannot exhaust the stack.
pub(super) const MAX_DEPTH: usize = 16;

/// Parses the YAML under `when:`. An empty list is an error: it would never step up,
/// which is what omitting the route does, not what omitting `when:` does.
pub fn parse_when(value: &Yaml) -> Result<Vec<Condition>, CondError> {
    let items = match value {
        Yaml::Sequence(items) => items,
        other => {
            return Err(CondError::new(
                "",
                format!("expected a list of conditions, found {}", kind(other)),
            ))
        }
    };
    if items.is_empty() {
        return Err(CondError::new(
            "",
            "an empty `when` list never steps up; omit `when` to always step up",
        ));
    }
    parse_list(items, "", 1)
}

fn parse_list(items: &[Yaml], path: &str, depth: usize) -> Result<Vec<Condition>, CondError> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_condition(item, &format!("{path}[{i}]"), depth))
        .collect()
}

fn parse_condition(value: &Yaml, path: &str, depth: usize) -> Result<Condition, CondError> {
    if depth > MAX_DEPTH {
        return Err(CondError::new(
            path,
            format!("conditions nest deeper than {MAX_DEPTH} levels"),
        ));
    }
    let map = mapping(value, path)?;
    let mut entries = map.iter();
    let (key, value) = match (entries.next(), entries.next()) {
        (Some(entry), None) => entry,
        (None, _) => {
            return Err(CondError::new(
                path,
                format!("empty condition; expected one of {CONDITION_KEYS}"),
            ))
        }
        (Some(_), Some(_)) => {
            let keys: Vec<String> = map.keys().map(key_text).collect();
            return Err(CondError::new(
                path,
                format!(
                    "a condition has exactly one key, found {} ({}); combine them with all_of or any_of",
                    keys.len(),
                    keys.join(", ")
                ),
            ));
        }
    };
    let key = key_str(key, path)?;
    let path = format!("{path}.{key}");
    let path = path.as_str();
    Ok(match key {
        "client_ip_in" => Condition::ClientIpIn(parse_nets(value, path)?),
        "client_ip_not_in" => Condition::ClientIpNotIn(parse_nets(value, path)?),
        "outside_hours" => parse_outside_hours(value, path)?,
        "header" => parse_header(value, path)?,
        "json" => {
            let fields = fields(value, path, &["pointer"], &VALUE_PREDS)?;
            let pointer = string(required(&fields, "pointer", path)?, &format!("{path}.pointer"))?;
            check_pointer(pointer, &format!("{path}.pointer"))?;
            Condition::Json {
                pointer: pointer.to_owned(),
                pred: parse_value_pred(&fields, path)?,
            }
        }
        "form" => {
            let fields = fields(value, path, &["field"], &VALUE_PREDS)?;
            let field = string(required(&fields, "field", path)?, &format!("{path}.field"))?;
            if field.is_empty() {
                return Err(CondError::new(&format!("{path}.field"), "must not be empty"));
            }
            Condition::Form {
                field: field.to_owned(),
                pred: parse_value_pred(&fields, path)?,
            }
        }
        "session_age_over" => {
            Condition::SessionAgeOver(parse_duration(string(value, path)?).map_err(|m| CondError::new(path, m))?)
        }
        "new_device" => match value {
            Yaml::Bool(true) => Condition::NewDevice,
            // `false` would be a condition that never fires: almost certainly a mistake.
            _ => {
                return Err(CondError::new(
                    path,
                    "expected `true` (omit the condition to ignore devices)",
                ))
            }
        },
        "all_of" => Condition::AllOf(parse_children(value, path, depth)?),
        "any_of" => Condition::AnyOf(parse_children(value, path, depth)?),
        "not" => Condition::Not(Box::new(parse_condition(value, path, depth + 1)?)),
        other => {
            return Err(CondError::new(
                path,
                format!("unknown condition `{other}`; expected one of {CONDITION_KEYS}"),
            ))
        }
    })
}

fn parse_children(value: &Yaml, path: &str, depth: usize) -> Result<Vec<Condition>, CondError> {
    match value {
        Yaml::Sequence(items) if !items.is_empty() => parse_list(items, path, depth + 1),
        Yaml::Sequence(_) => Err(CondError::new(path, "expected at least one condition")),
        other => Err(CondError::new(
            path,
            format!("expected a list of conditions, found {}", kind(other)),
        )),
    }
}

fn parse_nets(value: &Yaml, path: &str) -> Result<Vec<IpNet>, CondError> {
    let items = non_empty_list(value, path)?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let item_path = format!("{path}[{i}]");
            let text = string(item, &item_path)?.trim();
            let net = match text.parse::<IpNet>() {
                Ok(net) => net.trunc(),
                Err(_) => match text.parse::<IpAddr>() {
                    Ok(addr) => IpNet::from(addr),
                    Err(_) => {
                        return Err(CondError::new(
                            &item_path,
                            format!("`{text}` is not an IP address or CIDR network"),
                        ))
                    }
                },
            };
            Ok(canonical_net(net))
        })
        .collect()
}

/// `::ffff:10.0.0.0/104` is `10.0.0.0/8`: requests are matched as IPv4, so networks are too.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if let (Some(v4), Some(len)) = (v6.addr().to_ipv4_mapped(), v6.prefix_len().checked_sub(96)) {
            if let Ok(v4net) = Ipv4Net::new(v4, len) {
                return IpNet::V4(v4net);
            }
        }
    }
    net
}

fn parse_outside_hours(value: &Yaml, path: &str) -> Result<Condition, CondError> {
    let fields = fields(value, path, &["days", "from", "to", "tz"], &[])?;
    let days = match fields.iter().find(|(k, _)| *k == "days") {
        None => DaySet::ALL,
        Some((_, v)) => parse_days(v, &format!("{path}.days"))?,
    };
    let from_path = format!("{path}.from");
    let from = parse_clock(string(required(&fields, "from", path)?, &from_path)?, false)
        .map_err(|m| CondError::new(&from_path, m))?;
    let to_path = format!("{path}.to");
    let to = parse_clock(string(required(&fields, "to", path)?, &to_path)?, true)
        .map_err(|m| CondError::new(&to_path, m))?;
    if from == to {
        return Err(CondError::new(
            path,
            "`from` and `to` are equal, so the window is empty",
        ));
    }
    let tz_path = format!("{path}.tz");
    let tz_name = string(required(&fields, "tz", path)?, &tz_path)?;
    let tz = TimeZone::get(tz_name).map_err(|_| {
        CondError::new(
            &tz_path,
            format!("unknown time zone `{tz_name}`; use an IANA name such as Europe/Berlin"),
        )
    })?;
    Ok(Condition::OutsideHours { days, from, to, tz })
}

fn parse_days(value: &Yaml, path: &str) -> Result<DaySet, CondError> {
    let parsed = match value {
        Yaml::String(s) => DaySet::parse(s),
        Yaml::Sequence(items) if !items.is_empty() => {
            let mut bits = 0u8;
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                bits |= DaySet::parse(string(item, &item_path)?)
                    .map_err(|m| CondError::new(&item_path, m))?
                    .0;
            }
            Ok(DaySet(bits))
        }
        other => Err(format!("expected days like `Mon-Fri`, found {}", kind(other))),
    };
    parsed.map_err(|m| CondError::new(path, m))
}

/// `HH:MM`, 24-hour. `24:00` is allowed as an end, meaning midnight at the end of the day.
fn parse_clock(text: &str, is_end: bool) -> Result<(u8, u8), String> {
    let bad = || format!("expected a time like \"08:00\", found `{text}`");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u8 = h.parse().map_err(|_| bad())?;
    let m: u8 = m.parse().map_err(|_| bad())?;
    let valid = (h < 24 && m < 60) || (is_end && h == 24 && m == 0);
    if !valid {
        return Err(format!(
            "`{text}` is not a time of day (00:00 to 23:59{})",
            if is_end { ", or 24:00" } else { "" }
        ));
    }
    Ok((h, m))
}

/// `500ms`, `30s`, `15m`, `8h`, `7d`.
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("expected a duration like `8h` (units ms, s, m, h, d), found `{text}`");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    let millis = n
        .checked_mul(millis_per_unit)
        .ok_or_else(|| format!("`{text}` is too long"))?;
    Ok(Duration::from_millis(millis))
}

/// The largest unit that divides the duration exactly, so a reason reads `8h`, not `28800s`.
pub(super) fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms != 0 && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

fn parse_header(value: &Yaml, path: &str) -> Result<Condition, CondError> {
    let fields = fields(value, path, &["name"], &STR_PREDS)?;
    let name_path = format!("{path}.name");
    let text = string(required(&fields, "name", path)?, &name_path)?;
    let name = HeaderName::from_bytes(text.as_bytes())
        .map_err(|_| CondError::new(&name_path, format!("`{text}` is not a valid header name")))?;
    if text.contains('_') {
        // The gateway answers 400 to any request header with `_`, so this could never match.
        return Err(CondError::new(&name_path, "header names with `_` never reach a route"));
    }
    let (pred_key, pred_value) = one_pred(&fields, &STR_PREDS, path)?;
    let pred_path = format!("{path}.{pred_key}");
    let pred = match pred_key {
        "regex" => StrPred::Regex(anchored_regex(string(pred_value, &pred_path)?, &pred_path)?),
        "in" => StrPred::In(string_list(pred_value, &pred_path)?),
        _ => StrPred::NotIn(string_list(pred_value, &pred_path)?),
    };
    Ok(Condition::Header { name, pred })
}

fn parse_value_pred(fields: &[(&str, &Yaml)], path: &str) -> Result<ValuePred, CondError> {
    let (key, value) = one_pred(fields, &VALUE_PREDS, path)?;
    let path = format!("{path}.{key}");
    let path = path.as_str();
    Ok(match key {
        "gt" => ValuePred::Gt(number(value, path)?),
        "gte" => ValuePred::Gte(number(value, path)?),
        "lt" => ValuePred::Lt(number(value, path)?),
        "lte" => ValuePred::Lte(number(value, path)?),
        "eq" => ValuePred::Eq(scalar(value, path)?),
        "in" => ValuePred::In(
            non_empty_list(value, path)?
                .iter()
                .enumerate()
                .map(|(i, v)| scalar(v, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        _ => ValuePred::Regex(anchored_regex(string(value, path)?, path)?),
    })
}

/// Exactly one predicate key: two (`gt` and `lt`) would leave it unclear whether both
/// or either must hold; `all_of`/`any_of` say it explicitly.
fn one_pred<'y>(fields: &[(&'y str, &'y Yaml)], preds: &[&str], path: &str) -> Result<(&'y str, &'y Yaml), CondError> {
    let found: Vec<&(&str, &Yaml)> = fields.iter().filter(|(k, _)| preds.contains(k)).collect();
    match found.as_slice() {
        [(key, value)] => Ok((key, value)),
        [] => Err(CondError::new(path, format!("expected one of {}", preds.join(", ")))),
        many => Err(CondError::new(
            path,
            format!(
                "expected exactly one of {}, found {}; combine them with all_of or any_of",
                preds.join(", "),
                many.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(" and ")
            ),
        )),
    }
}

fn check_pointer(pointer: &str, path: &str) -> Result<(), CondError> {
    if !pointer.starts_with('/') {
        return Err(CondError::new(
            path,
            "a JSON pointer starts with `/`, like /amount or /payee/iban",
        ));
    }
    // RFC 6901: `~` only as `~0` (`~`) or `~1` (`/`); serde_json would read others literally.
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(CondError::new(path, "in a JSON pointer `~` must be followed by 0 or 1"));
        }
    }
    Ok(())
}

fn anchored_regex(pattern: &str, path: &str) -> Result<Regex, CondError> {
    let invalid = |e: regex::Error| {
        // The regex crate's message spans several lines; config errors are one line each.
        let detail = e
            .to_string()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        CondError::new(path, format!("invalid regex: {detail}"))
    };
    // Compiling the pattern alone first proves its groups balance, so wrapping it cannot
    // be escaped by a `)|(` inside it.
    Regex::new(pattern).map_err(invalid)?;
    Regex::new(&format!(r"\A(?:{pattern})\z")).map_err(invalid)
}

// --- small YAML readers, each naming the path it failed at ---------------------------

fn kind(value: &Yaml) -> &'static str {
    match value {
        Yaml::Null => "nothing",
        Yaml::Bool(_) => "a boolean",
        Yaml::Number(_) => "a number",
        Yaml::String(_) => "a string",
        Yaml::Sequence(_) => "a list",
        Yaml::Mapping(_) => "a mapping",
        Yaml::Tagged(_) => "a tagged value",
    }
}

fn mapping<'y>(value: &'y Yaml, path: &str) -> Result<&'y serde_yaml::Mapping, CondError> {
    match value {
        Yaml::Mapping(map) => Ok(map),
        other => Err(CondError::new(
            path,
            format!("expected a mapping, found {}", kind(other)),
        )),
    }
}

fn key_text(key: &Yaml) -> String {
    match key {
        Yaml::String(s) => s.clone(),
        other => kind(other).to_owned(),
    }
}

fn key_str<'y>(key: &'y Yaml, path: &str) -> Result<&'y str, CondError> {
    match key {
        Yaml::String(s) => Ok(s),
        other => Err(CondError::new(
            path,
            format!("expected a string key, found {}", kind(other)),
        )),
    }
}

/// The entries of a mapping whose keys must all be in `names` or `preds`.
fn fields<'y>(
    value: &'y Yaml,
    path: &str,
    names: &[&str],
    preds: &[&str],
) -> Result<Vec<(&'y str, &'y Yaml)>, CondError> {
    mapping(value, path)?
        .iter()
        .map(|(k, v)| {
            let key = key_str(k, path)?;
            if names.contains(&key) || preds.contains(&key) {
                Ok((key, v))
            } else {
                let expected: Vec<&str> = names.iter().chain(preds).copied().collect();
                Err(CondError::new(
                    &format!("{path}.{key}"),
                    format!("unknown key; expected {}", expected.join(", ")),
                ))
            }
        })
        .collect()
}

fn required<'y>(fields: &[(&str, &'y Yaml)], name: &str, path: &str) -> Result<&'y Yaml, CondError> {
    fields
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| *v)
        .ok_or_else(|| CondError::new(path, format!("missing `{name}`")))
}

fn string<'y>(value: &'y Yaml, path: &str) -> Result<&'y str, CondError> {
    match value {
        Yaml::String(s) => Ok(s),
        other => Err(CondError::new(
            path,
            format!("expected a string, found {} (quote it)", kind(other)),
        )),
    }
}

fn number(value: &Yaml, path: &str) -> Result<f64, CondError> {
    match value.as_f64() {
        Some(n) if n.is_finite() => Ok(n),
        _ => Err(CondError::new(
            path,
            format!("expected a number, found {}", kind(value)),
        )),
    }
}

fn scalar(value: &Yaml, path: &str) -> Result<Scalar, CondError> {
    match value {
        Yaml::Bool(b) => Ok(Scalar::Bool(*b)),
        Yaml::String(s) => Ok(Scalar::String(s.clone())),
        Yaml::Number(_) => number(value, path).map(Scalar::Number),
        other => Err(CondError::new(
            path,
            format!("expected a number, string or boolean, found {}", kind(other)),
        )),
    }
}

fn non_empty_list<'y>(value: &'y Yaml, path: &str) -> Result<&'y [Yaml], CondError> {
    match value {
        Yaml::Sequence(items) if !items.is_empty() => Ok(items),
        Yaml::Sequence(_) => Err(CondError::new(path, "expected a non-empty list")),
        other => Err(CondError::new(path, format!("expected a list, found {}", kind(other)))),
    }
}

fn string_list(value: &Yaml, path: &str) -> Result<Vec<String>, CondError> {
    non_empty_list(value, path)?
        .iter()
        .enumerate()
        .map(|(i, v)| string(v, &format!("{path}[{i}]")).map(str::to_owned))
        .collect()
}
