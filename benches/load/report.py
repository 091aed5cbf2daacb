#!/usr/bin/env python3
"""Turns one load run (raw.tsv + meta.json from benches/load/run.sh) into
results.json and results.md, and prints the comparison table.

    python3 benches/load/report.py WORK_DIR OUT_DIR

Standard library only. Medians over rounds for rates, latencies and CPU;
errors are summed; peak RSS is the largest VmHWM of any round.
"""

import csv
import json
import math
import os
import statistics
import sys
import time

# What each scenario compares, and the target for it.
SCENARIOS = {
    "keepalive": {
        "label": "HTTPS HTTP/1.1 keep-alive",
        "pair": ("stepgate", "nginx"),
        "target": 1.0,
        "target_text": "≥ 1.0× nginx req/s, p99 ≤ nginx's",
    },
    "close": {
        "label": "new TLS connection per request",
        "pair": ("stepgate", "nginx"),
        "target": 1.0,
        "target_text": "≥ 1.0× nginx req/s",
    },
    "h2": {
        "label": "HTTP/2, 10 streams per connection",
        "pair": ("stepgate", "nginx"),
        "target": 1.2,
        "target_text": "≥ 1.2× nginx req/s",
    },
    "keepalive-16k": {
        "label": "HTTPS HTTP/1.1 keep-alive, 16 KiB body",
        "pair": ("stepgate", "nginx"),
        "target": 1.0,
        "target_text": "≥ 1.0× nginx req/s, p99 ≤ nginx's",
    },
    "h2-16k": {
        "label": "HTTP/2, 10 streams per connection, 16 KiB body",
        "pair": ("stepgate", "nginx"),
        "target": 1.2,
        "target_text": "≥ 1.2× nginx req/s",
    },
    "token": {
        "label": "sensitive route, up-front token",
        "pair": ("stepgate", "stepgate pass-through"),
        "target": 0.25,
        "target_text": "≥ 0.25× stepgate's own pass-through req/s",
    },
}


def num(v):
    try:
        return float(v)
    except ValueError:
        return math.nan


def median(values):
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def load_rows(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    for r in rows:
        for k in ("rps", "p50_ms", "p99_ms", "errors", "peak_rss_kib", "cpu_us_per_req", "requests", "conns_per_req", "audit_ms"):
            r[k] = num(r[k])
    return rows


def summarize(rows, scenario, proxy):
    """Medians of one (scenario, proxy) over rounds; rounds whose tokens ran out do not count."""
    mine = [r for r in rows if r["scenario"] == scenario and r["proxy"] == proxy]
    good = [r for r in mine if not r["note"]]
    return {
        "rounds": len(good),
        "rounds_discarded": len(mine) - len(good),
        "rps": median([r["rps"] for r in good]),
        "p50_ms": median([r["p50_ms"] for r in good]),
        "p99_ms": median([r["p99_ms"] for r in good]),
        "errors": sum(r["errors"] for r in good if not math.isnan(r["errors"])),
        "peak_rss_kib": max((r["peak_rss_kib"] for r in mine), default=math.nan),
        "cpu_us_per_req": median([r["cpu_us_per_req"] for r in good]),
        "conns_per_req": median([r["conns_per_req"] for r in good]),
        "audit_ms": median([r["audit_ms"] for r in good]),
    }


def ratio(a, b):
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def build(work):
    meta = json.load(open(os.path.join(work, "meta.json")))
    rows = load_rows(os.path.join(work, "raw.tsv"))
    present = {r["scenario"] for r in rows}
    scenarios = {}
    for key, spec in SCENARIOS.items():
        if key not in present:
            continue
        if key == "token":
            a, b = summarize(rows, "token", "stepgate"), summarize(rows, "token-base", "stepgate")
        else:
            a, b = summarize(rows, key, "stepgate"), summarize(rows, key, "nginx")
        s = {
            "label": spec["label"],
            "compared": list(spec["pair"]),
            "target_text": spec["target_text"],
            "target_ratio": spec["target"],
            "subject": a,
            "reference": b,
            "rps_ratio": ratio(a["rps"], b["rps"]),
            "cpu_ratio": ratio(a["cpu_us_per_req"], b["cpu_us_per_req"]),
            "p99_delta_ms": a["p99_ms"] - b["p99_ms"],
        }
        met = s["rps_ratio"] >= spec["target"]
        if key.startswith("keepalive"):
            met = met and s["p99_delta_ms"] <= 0.0
        s["met"] = bool(met)
        scenarios[key] = s
    if "token" in scenarios and "keepalive" in scenarios:
        # For scale: the token path against the plain keep-alive GET run too.
        scenarios["token"]["rps_vs_keepalive_passthrough"] = ratio(
            scenarios["token"]["subject"]["rps"], scenarios["keepalive"]["subject"]["rps"]
        )
    idle = meta["idle_rss_kib"]
    doc = {
        "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        **meta,
        "idle": {"stepgate_kib": idle["stepgate"], "nginx_kib": idle["nginx"],
                 "target_mib": 20, "met": idle["stepgate"] <= 20 * 1024},
        "scenarios": scenarios,
        "raw": rows,
    }
    return doc


def fmt(v, digits=2):
    if isinstance(v, float) and math.isnan(v):
        return "–"
    return f"{v:,.{digits}f}"


def command_lines(meta):
    p = meta["params"]
    d = meta["duration_s"]
    return [
        f"(keepalive) wrk -t {p['wrk_threads']} -c {p['keepalive_conns']} -d {d}s --latency https://127.0.0.1:PORT/static/1k",
        f"(close)     wrk -t {p['wrk_threads']} -c {p['close_conns']} -d {d}s --latency -H 'Connection: close' https://127.0.0.1:PORT/static/1k",
        f"(h2)        h2load -t 1 -c {p['h2_conns']} -m {p['h2_streams']} -D {d} --warm-up-time=1 --log-file=LOG https://127.0.0.1:PORT/static/1k",
        f"(keepalive-16k, h2-16k: the same with /static/16k)",
        f"(token)     wrk -t {p['wrk_threads']} -c {p['token_conns']} -d {d}s --latency -s benches/load/token.lua https://127.0.0.1:SG_PORT/api/write -- /api/write TOKENS {p['wrk_threads']} COOKIE BODY",
        f"(token-base, the same with /api/pass: a path no route matches)",
    ]


def markdown(doc, work):
    sc = doc["scenarios"]
    m = doc["machine"]
    L = []
    L.append("# stepgate vs nginx: TLS reverse proxy load comparison")
    L.append("")
    L.append(f"Generated by `bash benches/load/run.sh` on {doc['generated']}, stepgate commit {doc['commit']}.")
    L.append(f"Median of {doc['rounds']} alternating rounds, {doc['duration_s']} s per run. "
             f"Load average before / after: {m['load_before']} / {m['load_after']} on {m['nproc']} cores.")
    L.append("")
    L.append("| scenario | compared | req/s | ratio | target | met | p50 ms | p99 ms | CPU µs/req | CPU ratio | peak RSS MiB | errors |")
    L.append("|---|---|--:|--:|---|:-:|--:|--:|--:|--:|--:|--:|")
    for key, s in sc.items():
        a, b = s["subject"], s["reference"]
        met = "yes" if s["met"] else "**no**"
        L.append(f"| {s['label']} | {s['compared'][0]} | {fmt(a['rps'], 0)} | **{fmt(s['rps_ratio'])}×** | {s['target_text']} | {met} "
                 f"| {fmt(a['p50_ms'], 3)} | {fmt(a['p99_ms'], 3)} | {fmt(a['cpu_us_per_req'], 1)} | {fmt(s['cpu_ratio'])}× "
                 f"| {fmt(a['peak_rss_kib'] / 1024, 1)} | {a['errors']:.0f} |")
        L.append(f"| | {s['compared'][1]} | {fmt(b['rps'], 0)} | | | | {fmt(b['p50_ms'], 3)} | {fmt(b['p99_ms'], 3)} "
                 f"| {fmt(b['cpu_us_per_req'], 1)} | | {fmt(b['peak_rss_kib'] / 1024, 1)} | {b['errors']:.0f} |")
    idle = doc["idle"]
    L.append("")
    L.append(f"Idle RSS after start-up (VmRSS, no traffic yet): stepgate {idle['stepgate_kib'] / 1024:.1f} MiB "
             f"(target ≤ 20 MiB: {'met' if idle['met'] else 'missed'}), nginx {idle['nginx_kib'] / 1024:.1f} MiB (master + workers).")
    L.append("")
    L.append("How to read it:")
    L.append("- Ratio is stepgate / reference for req/s (higher is better for stepgate) and for CPU per request (lower is better).")
    L.append("- CPU µs/req is the proxy's own user + system time over the run divided by the requests completed (all its processes).")
    L.append("  On a shared 2-core machine the load generator, the upstream and the proxy share the cores, so req/s moves with")
    L.append("  outside load from run to run; CPU per request is the steadier measure of a proxy's efficiency.")
    L.append("- Peak RSS is VmHWM per run (reset with clear_refs before each run), the largest over the rounds; for nginx the sum")
    L.append("  over master and workers (an upper bound: shared pages count more than once).")
    if "close" in sc:
        c = sc["close"]
        L.append(f"- New connection per request: wrk sends `Connection: close`, the proxy closes after the answer, and wrk opens")
        L.append(f"  a new TCP connection and TLS session for the next request. TCP connections accepted per request on the")
        L.append(f"  machine during the run (PassiveOpens): stepgate {fmt(c['subject']['conns_per_req'], 3)}, "
                 f"nginx {fmt(c['reference']['conns_per_req'], 3)}. wrk offers the")
        L.append(f"  previous connection's TLS 1.3 ticket, so with both proxies nearly every handshake is a resumption (PSK with")
        L.append(f"  X25519, no certificate or signature), as a returning client's would be: checked once with nginx's")
        L.append(f"  `$ssl_session_reused` (525 of 527 reused) and rustls' trace log (2 of 112 handshakes sent a certificate).")
        L.append(f"  The client's handshakes, not the proxy, set the pace here.")
    if "token" in sc:
        t = sc["token"]
        extra = t["subject"]["cpu_us_per_req"] - t["reference"]["cpu_us_per_req"]
        L.append("- Sensitive route with an up-front token: every request carries a different, valid `X-StepUp-Token`")
        L.append("  (ES256, bound to the session's sid and the request's txn, minted just before the run; a jti is accepted")
        L.append("  once). Per request stepgate buffers the body, hashes the txn, verifies the token's signature, claims its jti,")
        L.append("  signs the assertion, waits for the write-ahead `token.accepted` audit record to be durable (fdatasync,")
        L.append("  group commit across connections), then forwards. The reference is the same wrk script, headers and body")
        L.append("  sent to a path no route matches (stepgate's pass-through of the same traffic; the token header is stripped).")
        L.append(f"  The token path costs {fmt(extra, 1)} µs more CPU per request; the mean durable audit write took "
                 f"{fmt(t['subject']['audit_ms'], 3)} ms. Against the plain keep-alive GET run the token path reaches "
                 f"{fmt(t.get('rps_vs_keepalive_passthrough', math.nan))}×.")
    L.append("")
    L.append("### Per-round raw numbers")
    L.append("")
    L.append("```")
    cols = ["round", "scenario", "proxy", "rps", "p50_ms", "p99_ms", "errors", "peak_rss_kib", "cpu_us_per_req", "requests", "conns_per_req", "audit_ms", "note"]
    table = [cols] + [[str(r[c]) if not isinstance(r[c], float) else (f"{r[c]:g}" if not math.isnan(r[c]) else "-") for c in cols] for r in doc["raw"]]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    for row in table:
        L.append("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    L.append("```")
    L.append("")
    L.append("### Commands")
    L.append("")
    L.append("```")
    L.append(f"ROUNDS={doc['rounds']} DURATION={doc['duration_s']} bash benches/load/run.sh")
    L.append("upstream: nginx, 1 worker: GET /static/1k a 1 KiB file, POST /api/* a 11-byte JSON answer (127.0.0.1)")
    L.append("stepgate: stepgate serve --config stepgate.yaml (release build)")
    L.append("nginx:    nginx -c nginx.conf (worker_processes auto)")
    L.extend(command_lines(doc))
    L.append("```")
    L.append("")
    L.append("stepgate config:")
    L.append("")
    L.append("```yaml")
    L.append(open(os.path.join(work, "stepgate-config.txt")).read().rstrip())
    L.append("```")
    L.append("")
    L.append("nginx proxy config:")
    L.append("")
    L.append("```nginx")
    L.append(open(os.path.join(work, "nginx-config.txt")).read().rstrip())
    L.append("```")
    L.append("")
    L.append("### Machine")
    L.append("")
    L.append("```")
    for k in ("nproc", "cpu", "kernel", "memory", "nginx", "wrk", "h2load", "rustc"):
        L.append(f"{k}: {m[k]}")
    L.append(f"load average before / after: {m['load_before']} / {m['load_after']}")
    L.append("```")
    return "\n".join(L) + "\n"


def no_nan(v):
    """JSON has no NaN: a value that could not be measured is null."""
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, dict):
        return {k: no_nan(x) for k, x in v.items()}
    if isinstance(v, list):
        return [no_nan(x) for x in v]
    return v


def main():
    work, out = sys.argv[1], sys.argv[2]
    doc = build(work)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(no_nan(doc), f, indent=2, allow_nan=False)
        f.write("\n")
    md = markdown(doc, work)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(md)
    # The comparison table and its notes, on the terminal.
    print(md.split("### Per-round raw numbers")[0])


if __name__ == "__main__":
    main()
