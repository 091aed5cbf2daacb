#!/usr/bin/env python3
"""The performance targets, each with its measured value, ratio and verdict,
from the latest results of the three benchmark commands:

    bash benches/load/run.sh        -> benches/load/results.json
    bash benches/holds/run.sh       -> benches/holds/results.json
    cargo bench --bench core        -> $CARGO_TARGET_DIR/criterion/ (medians copied
                                       to benches/core-results.json by this script)

    python3 benches/targets.py                 # print the tables
    python3 benches/targets.py --readme docs/benchmarks.md   # and replace them there

In docs/benchmarks.md the tables sit between `<!-- bench:targets -->` /
`<!-- /bench:targets -->` and `<!-- bench:micro -->` / `<!-- /bench:micro -->`.
Standard library only; a missing result leaves its rows as "not measured".
"""

import argparse
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def criterion(target_dir):
    """full_id -> median ns, for every benchmark criterion has recorded."""
    out = {}
    base = os.path.join(target_dir, "criterion")
    for dirpath, _, files in os.walk(base):
        if os.path.basename(dirpath) != "new" or "benchmark.json" not in files:
            continue
        bench = load(os.path.join(dirpath, "benchmark.json"))
        est = load(os.path.join(dirpath, "estimates.json"))
        if bench and est:
            out[bench["full_id"]] = est["median"]["point_estimate"]
    return out


def perf_share(path, kind):
    """The share of samples a `PERF=...` profile gives a kind of work, e.g. "53.15%"."""
    try:
        with open(path) as f:
            for line in f:
                share = line.strip().split()[0] if line.strip() else ""
                if kind in line and share.endswith("%"):
                    return f"{float(share[:-1]):.0f}%"
    except FileNotFoundError:
        pass
    return None


def t(ns):
    if ns is None:
        return "–"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} µs" if ns < 1e5 else f"{ns / 1e3:.0f} µs"
    return f"{ns:.0f} ns"


def n(v, d=0):
    return "–" if v is None else f"{v:,.{d}f}"


def verdict(ok):
    return "met" if ok else "**missed**"


def targets(lr, hr, cr):
    rows = []  # (target, measured, ratio, verdict, why)
    sc = (lr or {}).get("scenarios", {})
    when = f"load run {lr['generated']}, load average {lr['machine']['load_before']}" if lr else ""

    def passthrough(key, target):
        s = sc.get(key)
        if not s:
            rows.append((target, "not measured", "", "", ""))
            return
        a, b = s["subject"], s["reference"]
        measured = f"{n(a['rps'])} vs {n(b['rps'])} req/s"
        if key.startswith("keepalive"):
            measured += f"; p99 {n(a['p99_ms'], 2)} vs {n(b['p99_ms'], 2)} ms"
        why = ""
        if not s["met"]:
            why = (f"CPU per request {n(a['cpu_us_per_req'], 1)} vs {n(b['cpu_us_per_req'], 1)} µs "
                   f"({n(s['cpu_ratio'], 2)}×); see *Why* below")
        rows.append((target, measured, f"{n(s['rps_ratio'], 2)}×", verdict(s["met"]), why))

    passthrough("keepalive", "Pass-through HTTPS, HTTP/1.1 keep-alive, 1 KiB: ≥ 1.0× nginx req/s, p99 ≤ nginx's")
    passthrough("keepalive-16k", "Pass-through HTTPS, HTTP/1.1 keep-alive, 16 KiB: ≥ 1.0× nginx req/s, p99 ≤ nginx's")
    passthrough("close", "Pass-through, new TLS connection per request: ≥ 1.0× nginx")
    passthrough("h2", "Pass-through, HTTP/2 (h2load, 10 streams per connection), 1 KiB: ≥ 1.2× nginx")
    passthrough("h2-16k", "Pass-through, HTTP/2 (h2load, 10 streams per connection), 16 KiB: ≥ 1.2× nginx")

    s = sc.get("token")
    target = "Sensitive route with a valid up-front `X-StepUp-Token`: ≥ 0.25× stepgate's own pass-through"
    if s:
        a, b = s["subject"], s["reference"]
        why = ""
        if not s["met"]:
            extra = None if a["cpu_us_per_req"] is None or b["cpu_us_per_req"] is None else a["cpu_us_per_req"] - b["cpu_us_per_req"]
            sign, verify = cr.get("assertion/sign"), cr.get("token/verify")
            ecdsa = perf_share(os.path.join(ROOT, "benches/load/perf-token.txt"), "ECDSA")
            why = (f"+{n(extra, 0)} µs CPU per request over pass-through; ECDSA P-256 takes "
                   f"{ecdsa or '?'} of stepgate's CPU on this route (perf, at the load run's commit), token verify {t(verify)} + assertion sign {t(sign)} "
                   f"(criterion); each request also waits for a durable "
                   f"audit write (mean {n(a['audit_ms'], 2)} ms)")
        rows.append((target, f"{n(a['rps'])} vs {n(b['rps'])} req/s", f"{n(s['rps_ratio'], 2)}×", verdict(s["met"]), why))
    else:
        rows.append((target, "not measured", "", "", ""))

    idle = []
    if lr:
        idle.append(("load run", lr["idle"]["stepgate_kib"]))
    for r in (hr or {}).get("runs", []):
        idle.append((f"hold bench N={r['holds']:,}", r["idle_rss_kib"]))
    if idle:
        worst = max(k for _, k in idle)
        rows.append(("Idle RSS ≤ 20 MiB", "; ".join(f"{k / 1024:.1f} MiB ({w})" for w, k in idle),
                     f"{worst / 1024 / 20:.2f}×", verdict(worst <= 20 * 1024), ""))
    else:
        rows.append(("Idle RSS ≤ 20 MiB", "not measured", "", "", ""))

    runs = {r["holds"]: r for r in (hr or {}).get("runs", [])}
    big = runs.get(10000) or (max(runs.values(), key=lambda r: r["holds"]) if runs else None)
    if big:
        N = f"N={big['holds']:,}"
        less = big["challenge_hold_bytes_less_body"]
        others = ", ".join(f"N={k:,}: {r['challenge_hold_bytes_less_body']:,.0f} B without the body" for k, r in sorted(runs.items()) if r is not big)
        note = ""
        if any(r["challenge_hold_bytes_less_body"] > 2560 for r in runs.values()):
            note = "the average at smaller N is higher: fixed costs spread over fewer holds (see *Hold memory* below)"
        rows.append((f"A pending `challenge` hold ≤ 2.5 KiB plus its body ({big['body_bytes']} B)",
                     f"{big['challenge_hold_bytes']:,.0f} B, {less:,.0f} B without the body ({N}" + (f"; {others}" if others else "") + ")",
                     f"{less / 2560:.2f}×", verdict(less <= 2560), note))
        w = big["waiting_connection_bytes"]
        others = ", ".join(f"N={k:,}: {r['waiting_connection_bytes'] / 1024:.1f} KiB" for k, r in sorted(runs.items()) if r is not big)
        why = ""
        if w > 16384:
            why = ("hyper allocates 8 KiB read and 8 KiB write buffers per HTTP/1.1 connection "
                   "before TLS state, the parked request and the task (see *Levers* below)")
        rows.append(("A waiting `hold`-mode TLS connection ≤ 16 KiB",
                     f"{w / 1024:.1f} KiB, its hold included ({N}" + (f"; {others}" if others else "") + ")",
                     f"{w / 16384:.2f}×", verdict(w <= 16384), why))
        a = big["approval"]
        p99 = a["to_upstream_ms"]["p99"]
        why = ""
        if p99 > 5:
            why = (f"two durable audit writes in series before the upstream sees the request "
                   f"(mean {a['audit_write_mean_ms']:.2f} ms, p99 ≤ {a['audit_write_p99_bucket_ms']:.1f} ms)")
        rows.append(("Approval-to-upstream p99 ≤ 5 ms with 10,000 holds pending",
                     f"p50 {a['to_upstream_ms']['p50']:.2f} ms, p99 {p99:.2f} ms over {a['samples']:,} approvals, "
                     f"{a['pending_first']:,}–{a['pending_last']:,} holds pending",
                     f"{p99 / 5:.2f}×", verdict(p99 <= 5), why))
    else:
        for target in ("A pending `challenge` hold ≤ 2.5 KiB plus its body", "A waiting `hold`-mode TLS connection ≤ 16 KiB",
                       "Approval-to-upstream p99 ≤ 5 ms with 10,000 holds pending"):
            rows.append((target, "not measured", "", "", ""))

    ids = [f"match/{case}/1000" for case in ("miss", "hit_last", "hit_params")]
    got = [(i, cr[i]) for i in ids if i in cr]
    if got:
        worst_id, worst = max(got, key=lambda x: x[1])
        rows.append(("Route matching with 1,000 regex routes ≤ 2 µs per request",
                     ", ".join(f"{i.split('/')[1]} {t(v)}" for i, v in got), f"{worst / 2000:.2f}×", verdict(worst <= 2000), ""))
    else:
        rows.append(("Route matching with 1,000 regex routes ≤ 2 µs per request", "not measured", "", "", ""))

    L = ["| target | measured | ratio to target | | why, where missed (measured) |", "|---|---|--:|:-:|---|"]
    for r in rows:
        L.append("| " + " | ".join(r) + " |")
    src = []
    if lr:
        src.append(f"load: {lr['generated']}, commit {lr['commit']}, {lr['rounds']} rounds × {lr['duration_s']} s, "
                   f"load average {lr['machine']['load_before']} → {lr['machine']['load_after']}")
    if hr:
        src.append(f"holds: {hr['generated']}, commit {hr['commit']}, load average {hr['machine']['load_before']} → {hr['machine']['load_after']}")
    L.append("")
    L.append("Ratio to target: the ratio column of the load table for throughput targets (the target is met at ≥ the")
    L.append("target ratio); measured ÷ limit for memory and latency (met at ≤ 1.00). Sources: " + "; ".join(src) + ".")
    if lr:
        m = lr["machine"]
        L.append(f"Machine: {m['nproc']} cores, {m['cpu']}, {m['memory']}, {m['kernel']}; {m['nginx']}, "
                 f"wrk {m['wrk']}, h2load {m['h2load']}, {m['rustc']}.")
    return "\n".join(L)


MICRO = [
    ("canonical path: typical (`/`, an API path, a static asset)", ["canonical/typical/root", "canonical/typical/api", "canonical/typical/static"]),
    ("canonical path: dot segments / encoded mix", ["canonical/hostile/dot_segments", "canonical/hostile/encoded_mix"]),
    ("canonical path: hostile 4 KiB of dot segments / 2 KiB of escapes", ["canonical/hostile/long_dots_4k", "canonical/hostile/long_escapes_2k"]),
    ("route match, 10 / 100 / 1,000 regex routes, miss", ["match/miss/10", "match/miss/100", "match/miss/1000"]),
    ("route match, 10 / 100 / 1,000 regex routes, hit on the last route", ["match/hit_last/10", "match/hit_last/100", "match/hit_last/1000"]),
    ("route match, 10 / 100 / 1,000 regex routes, hit with `;params`", ["match/hit_params/10", "match/hit_params/100", "match/hit_params/1000"]),
    ("condition evaluation: one `client_ip_not_in`, pass / fire", ["conditions/ip_only/pass", "conditions/ip_only/fire"]),
    ("condition evaluation: the SPEC's five conditions, pass (all evaluated) / fire on the JSON amount", ["conditions/five/pass", "conditions/five/fire_json"]),
    ("header hygiene, request / response", ["hygiene/request_headers", "hygiene/response_headers"]),
    ("assertion sign / verify (ES256 in aws-lc, with the JSON and base64)", ["assertion/sign", "assertion/verify"]),
    ("the bare ECDSA sign / verify in the pure-Rust p256 crate, for comparison", ["assertion/sign_p256_crate", "assertion/verify_p256_crate"]),
    ("step-up token verify (ES256, claims, binding)", ["token/verify"]),
    ("hold create + release (engine)", ["hold/create_release"]),
    ("TOTP verify, current step / previous step", ["totp/verify_current", "totp/verify_previous_step"]),
]


def micro(cr):
    L = ["| operation | median |", "|---|--:|"]
    for label, ids in MICRO:
        L.append(f"| {label} | {' / '.join(t(cr.get(i)) for i in ids)} |")
    return "\n".join(L)


def replace(text, name, body):
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        sys.exit(f"the file has no {start} ... {end} section")
    return pattern.sub(lambda _: f"{start}\n{body}\n{end}", text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--readme", help="replace the tables in this file")
    ap.add_argument("--target-dir", default=os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")))
    args = ap.parse_args()
    lr = load(os.path.join(ROOT, "benches/load/results.json"))
    hr = load(os.path.join(ROOT, "benches/holds/results.json"))
    cr = criterion(args.target_dir)
    # Criterion's own results live in the target directory; the medians are
    # kept in the repository so the tables can be rebuilt without a re-run.
    snapshot = os.path.join(ROOT, "benches/core-results.json")
    if cr:
        with open(snapshot, "w") as f:
            json.dump({"median_ns": dict(sorted(cr.items()))}, f, indent=2)
            f.write("\n")
    else:
        cr = (load(snapshot) or {}).get("median_ns", {})
    tt, mt = targets(lr, hr, cr), micro(cr)
    print(tt)
    print()
    print(mt)
    if args.readme:
        with open(args.readme) as f:
            text = f.read()
        text = replace(replace(text, "targets", tt), "micro", mt)
        with open(args.readme, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
