#!/usr/bin/env python3
"""Draws benches/load/results.json as an SVG: per scenario, stepgate's
requests/s and CPU time per request relative to its reference (nginx, or
stepgate's own pass-through for the token scenario), with the target.

    python3 benches/load/chart.py benches/load/results.json benches/load/chart.svg

Standard library only.
"""

import json
import sys
from xml.sax.saxutils import escape

SUBJECT = "#0f766e"
REFERENCE = "#a8b1bd"
TARGET = "#c2410c"
TEXT = "#1f2937"
MUTED = "#6b7280"
GRID = "#e5e7eb"

LEFT = 300          # scenario labels
PANEL_W = 260
GAP = 190           # room for the bar labels
W = LEFT + 2 * PANEL_W + GAP + 180
ROW_H = 64
BAR_H = 18
TOP = 118


def f(v, unit="", digits=0):
    if v is None:
        return "–"
    return f"{v:,.{digits}f}{unit}"


def text(x, y, s, size=12, anchor="start", color=TEXT, weight="normal"):
    # A white halo keeps a label readable where it crosses a line.
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'fill="{color}" font-weight="{weight}" stroke="#ffffff" stroke-width="3" '
            f'paint-order="stroke">{escape(s)}</text>')


def tick_step(scale_max):
    for step in (0.25, 0.5, 1, 2, 5, 10):
        if scale_max / step <= 6:
            return step
    return 20


def panel(out, x0, title, subtitle, rows, scale_max, value_of, label_of, target_of):
    """One panel of horizontal bars: per row a subject bar and a reference bar (= 1.0)."""
    out.append(text(x0, TOP - 40, title, 13, weight="bold"))
    out.append(text(x0, TOP - 24, subtitle, 11, color=MUTED))
    px = PANEL_W / scale_max
    bottom = TOP + ROW_H * len(rows)
    step = tick_step(scale_max)
    for tick in [i * step for i in range(int(scale_max / step) + 1)]:
        x = x0 + tick * px
        out.append(f'<line x1="{x:.1f}" y1="{TOP - 8}" x2="{x:.1f}" y2="{bottom}" stroke="{GRID}"/>')
        out.append(text(x, bottom + 16, f"{tick:g}×", 10, "middle", MUTED))
    out.append(f'<line x1="{x0}" y1="{TOP - 8}" x2="{x0}" y2="{bottom}" stroke="{MUTED}"/>')
    for i, (key, s) in enumerate(rows):
        y = TOP + i * ROW_H
        ratio = value_of(s)
        sub_label, ref_label = label_of(s)
        t = target_of(s)
        if t is not None:
            tx = x0 + t * px
            out.append(f'<line x1="{tx:.1f}" y1="{y - 4:.1f}" x2="{tx:.1f}" y2="{y + 2 * BAR_H + 8:.1f}" '
                       f'stroke="{TARGET}" stroke-width="2" stroke-dasharray="4 3"/>')
        if ratio is not None:
            w = min(ratio, scale_max) * px
            out.append(f'<rect x="{x0}" y="{y:.1f}" width="{w:.1f}" height="{BAR_H}" fill="{SUBJECT}" rx="2"/>')
            if ratio > scale_max:
                # Off the scale: the bar is cut, and the label says by how much.
                cut = x0 + w - 10
                out.append(f'<path d="M{cut:.1f} {y - 1:.1f} l6 {BAR_H + 2} M{cut + 5:.1f} {y - 1:.1f} l6 {BAR_H + 2}" '
                           f'stroke="#ffffff" stroke-width="2.5"/>')
            out.append(text(x0 + w + 5, y + 13, f"{ratio:.2f}×  {sub_label}", 11))
        out.append(f'<rect x="{x0}" y="{y + BAR_H + 4:.1f}" width="{px:.1f}" height="{BAR_H}" fill="{REFERENCE}" rx="2"/>')
        out.append(text(x0 + px + 5, y + BAR_H + 17, ref_label, 11, color=MUTED))


def main():
    src, dst = sys.argv[1], sys.argv[2]
    doc = json.load(open(src))
    rows = list(doc["scenarios"].items())
    h = TOP + ROW_H * len(rows) + 70
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" '
           f'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif">',
           f'<rect width="{W}" height="{h}" fill="#ffffff"/>']
    m = doc["machine"]
    out.append(text(16, 24, "stepgate vs nginx as TLS reverse proxies, same upstream, same load generator", 15, weight="bold"))
    out.append(text(16, 42, f"{m['nproc']}-core {m['cpu']}, medians of {doc['rounds']} alternating rounds of {doc['duration_s']} s; "
                            f"commit {doc['commit']}, {doc['generated']}; load average {m['load_before']}", 11, color=MUTED))
    for i, (key, s) in enumerate(rows):
        y = TOP + i * ROW_H
        out.append(text(16, y + 14, s["label"], 12, weight="bold"))
        out.append(text(16, y + 30, f"stepgate vs {s['compared'][1]}", 11, color=MUTED))
        out.append(text(16, y + 45, f"target {s['target_text']}", 10, color=TARGET))

    def rps_labels(s):
        return f(s["subject"]["rps"], " req/s"), f"{s['compared'][1]} {f(s['reference']['rps'], ' req/s')}"

    def cpu_labels(s):
        return f(s["subject"]["cpu_us_per_req"], " µs", 1), f"{s['compared'][1]} {f(s['reference']['cpu_us_per_req'], ' µs', 1)}"

    rps_max = max([1.25] + [s["rps_ratio"] * 1.05 for _, s in rows if s["rps_ratio"] is not None])
    # Past 3× the bars are cut, so one costly scenario does not flatten the rest.
    cpu_max = max([1.25] + [min(s["cpu_ratio"], 3.0) * 1.05 for _, s in rows if s["cpu_ratio"] is not None])
    panel(out, LEFT, "Requests per second (higher is better)", "stepgate relative to the reference bar (= 1.0×)",
          rows, rps_max, lambda s: s["rps_ratio"], rps_labels, lambda s: s["target_ratio"])
    panel(out, LEFT + PANEL_W + GAP, "CPU time per request (lower is better)",
          "the proxy's user + system time / requests", rows, cpu_max, lambda s: s["cpu_ratio"], cpu_labels, lambda s: None)
    ly = TOP + ROW_H * len(rows) + 40
    out.append(f'<rect x="{LEFT}" y="{ly}" width="14" height="10" fill="{SUBJECT}"/>')
    out.append(text(LEFT + 20, ly + 9, "stepgate", 11))
    out.append(f'<rect x="{LEFT + 90}" y="{ly}" width="14" height="10" fill="{REFERENCE}"/>')
    out.append(text(LEFT + 110, ly + 9, "reference (nginx; for the token route, stepgate's own pass-through)", 11))
    out.append(f'<line x1="{LEFT + 520}" y1="{ly + 5}" x2="{LEFT + 540}" y2="{ly + 5}" stroke="{TARGET}" stroke-width="2" stroke-dasharray="4 3"/>')
    out.append(text(LEFT + 546, ly + 9, "target", 11))
    out.append("</svg>")
    with open(dst, "w") as fh:
        fh.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
