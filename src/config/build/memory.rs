//! The limits that bound the gateway's memory beyond the hold counts: the
//! budget for buffered request bodies, and how long ended holds are kept.

use super::{opt_duration, problem, Res};
use crate::config::raw::{RawLimits, Scalar};
use crate::config::units::parse_size;
use crate::config::Limits;
use std::time::Duration;

/// A day: ended holds kept longer only cost memory; nobody asks that late.
const LONGEST_KEEP: Duration = Duration::from_secs(24 * 3600);

/// Fills the memory limits of `limits` (whose other fields are already
/// built) from `raw`.
pub(super) fn limits(raw: &RawLimits, limits: &mut Limits) -> Res<()> {
    // Unset, a share is at least one whole body: a larger `max_body`
    // alone must not make every such body refused.
    let per_client = size(
        raw.max_buffered_bytes_per_client.as_ref(),
        "limits.max_buffered_bytes_per_client",
        limits.max_buffered_bytes_per_client.max(limits.max_body),
    )?;
    let total = size(
        raw.max_buffered_bytes.as_ref(),
        "limits.max_buffered_bytes",
        limits.max_buffered_bytes.max(per_client),
    )?;
    if per_client < limits.max_body {
        return problem(
            "limits.max_buffered_bytes_per_client",
            "must be at least limits.max_body, or no client could send a body of that size",
        );
    }
    if total < per_client {
        return problem(
            "limits.max_buffered_bytes",
            "must be at least limits.max_buffered_bytes_per_client",
        );
    }
    limits.max_buffered_bytes_per_client = per_client;
    limits.max_buffered_bytes = total;

    let keep = opt_duration(
        raw.keep_ended_holds.as_ref(),
        "limits.keep_ended_holds",
        limits.keep_ended_holds,
    )?;
    if keep < Duration::from_secs(1) || keep > LONGEST_KEEP {
        return problem("limits.keep_ended_holds", "must be between 1s and 24h");
    }
    limits.keep_ended_holds = keep;
    Ok(())
}

fn size(v: Option<&Scalar>, path: &str, default: u64) -> Res<u64> {
    match v {
        None => Ok(default),
        Some(v) => parse_size(&v.text()).or_else(|m| problem(path, m)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::BASE;
    use crate::config::{from_str, Config};

    fn build(limits: &str) -> Result<Config, String> {
        let text = format!("{BASE}{limits}routes:\n  - name: a\n    match: {{ path: /a }}\n");
        from_str(&text, "routes.yaml").map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_set_values() {
        let c = build("").expect("builds");
        assert_eq!(c.limits.max_buffered_bytes, 256 << 20);
        assert_eq!(c.limits.max_buffered_bytes_per_client, 16 << 20);
        assert_eq!(c.limits.keep_ended_holds.as_secs(), 300);
        let c =
            build("limits: { max_buffered_bytes: 2MiB, max_buffered_bytes_per_client: 1MiB, keep_ended_holds: 90s }\n")
                .expect("builds");
        assert_eq!(c.limits.max_buffered_bytes, 2 << 20);
        assert_eq!(c.limits.max_buffered_bytes_per_client, 1 << 20);
        assert_eq!(c.limits.keep_ended_holds.as_secs(), 90);
    }

    #[test]
    fn a_large_max_body_raises_the_unset_shares_with_it() {
        let c = build("limits: { max_body: 64MiB }\n").expect("builds");
        assert_eq!(c.limits.max_buffered_bytes_per_client, 64 << 20);
        assert_eq!(c.limits.max_buffered_bytes, 256 << 20);
    }

    #[test]
    fn hostile_or_contradictory_values_are_refused_by_name() {
        for (yaml, at) in [
            ("limits: { max_buffered_bytes: lots }\n", "limits.max_buffered_bytes"),
            (
                "limits: { max_buffered_bytes_per_client: -1MiB }\n",
                "limits.max_buffered_bytes_per_client",
            ),
            (
                "limits: { max_buffered_bytes_per_client: 512KiB }\n",
                "at least limits.max_body",
            ),
            (
                "limits: { max_buffered_bytes: 4MiB, max_buffered_bytes_per_client: 8MiB }\n",
                "at least limits.max_buffered_bytes_per_client",
            ),
            ("limits: { keep_ended_holds: 0s }\n", "limits.keep_ended_holds"),
            ("limits: { keep_ended_holds: 2d }\n", "between 1s and 24h"),
            ("limits: { keep_ended_holds: later }\n", "limits.keep_ended_holds"),
        ] {
            let e = build(yaml).expect_err(yaml);
            assert!(e.contains(at), "{yaml} -> {e}");
        }
    }
}
