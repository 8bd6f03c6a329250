#!/usr/bin/env python3
"""Turns bench/results.jsonl into bench/RESULTS.md's generated section and
the SVG plots beside it. Standard library only.

usage: report.py RESULTS.jsonl OUT_DIR COMMAND
       report.py --facts     (prints the machine facts as one JSON line;
                              bench/run appends it to the results at the end
                              of the run, so the report shows the run's facts)
"""
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time

START, END = "<!-- generated:start -->", "<!-- generated:end -->"
COLORS = {"rill": "#d9480f", "rill-before": "#f59f00", "nchan": "#1c7ed6", "axum": "#2b8a3e"}
PEERS = ("rill", "rill-before", "nchan", "axum")


def sh(cmd):
    try:
        out = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except Exception:  # noqa: BLE001 - a missing tool just leaves the fact out
        return "?"


def machine():
    return [
        ("run ended (UTC)", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")),
        ("cores", str(os.cpu_count())),
        ("cpu", sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()),
        ("kernel", platform.release()),
        ("rustc", sh("rustc --version")),
        ("nginx", sh("nginx -v")),
        ("nchan", sh("dpkg-query -W -f='${Version}' libnginx-mod-nchan")),
        ("load average at end", sh("cut -d' ' -f1-3 /proc/loadavg")),
    ]


def fmt(v, digits=1):
    if v is None:
        return "–"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def table(rows):
    by = {}
    for r in rows:
        by.setdefault(r["peer"], {})[r["scenario"]] = r
    peers = [p for p in PEERS if p in by]
    metrics = [
        ("idle: connections held", "idle", "connections", 0),
        ("idle: server RSS per connection (bytes)", "idle", "bytes_per_conn", 0),
        ("fan-out: subscribers", "fanout", "subscribers", 0),
        ("fan-out: delivered / expected", "fanout", None, 0),
        ("fan-out: wall time for the run (s; schedule: events / rate)", "fanout", "wall_s", 1),
        ("fan-out: server CPU per delivered event (µs)", "fanout", "cpu_us_per_event", 2),
        ("  of which user (µs)", "fanout", "user_us_per_event", 2),
        ("  of which kernel (µs)", "fanout", "sys_us_per_event", 2),
        ("fan-out: deliveries per server CPU-second", "fanout", "events_per_cpu_s", 0),
        ("fan-out: latency p50 (ms)", "fanout", "latency_p50_us", 1),
        ("fan-out: latency p90 (ms)", "fanout", "latency_p90_us", 1),
        ("fan-out: latency p99 (ms)", "fanout", "latency_p99_us", 1),
        ("fan-out: latency max (ms)", "fanout", "latency_max_us", 1),
        ("publish: publishes/s over HTTP", "publish", "publishes_per_s", 0),
        ("publish: server CPU per publish (µs)", "publish", "cpu_us_per_publish", 1),
        ("catch-up: delivered / expected", "replay", None, 0),
        ("catch-up: server CPU per replayed event (µs)", "replay", "cpu_us_per_event", 2),
        ("tokens: generations completed", "tokens", "completed", 0),
        ("tokens: added latency p50 (ms)", "tokens", "added_p50_us", 2),
        ("tokens: added latency p99 (ms)", "tokens", "added_p99_us", 2),
        ("tokens: runtime timer floor p99 (ms)", "tokens", "timer_floor_p99_us", 2),
        ("tokens: server CPU per token (µs)", "tokens", "cpu_us_per_token", 1),
    ]
    lines = ["| metric | " + " | ".join(peers) + " |", "|---" * (len(peers) + 1) + "|"]
    for label, scen, key, digits in metrics:
        cells = []
        for p in peers:
            r = by[p].get(scen)
            if r is None:
                cells.append("n/a")
            elif key is None:
                cells.append(f"{fmt(r['delivered'], 0)} / {fmt(r['expected'], 0)}")
            else:
                v = r.get(key)
                if v is not None and key.endswith("_us") and "per" not in key:
                    v = v / 1000.0
                cells.append(fmt(v, digits))
        if any(c != "n/a" for c in cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines), by


def svg_open(w, h, title):
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
            f'<rect width="{w}" height="{h}" fill="white"/>',
            f'<text x="{w/2}" y="20" text-anchor="middle" font-size="14">{title}</text>']


def svg_write(out, path):
    with open(path, "w") as f:
        f.write("\n".join(out + ["</svg>"]) + "\n")


def svg_cdf(series, title, xlabel, path):
    """Latency distribution: x = latency (ms, log scale), y = percentile."""
    import math

    w, h, ml, mb, mt, mr = 640, 380, 60, 50, 40, 130
    pts = [v for _, cdf in series for v in cdf if v > 0]
    if not pts:
        return
    lo = max(min(pts), 10) / 1000.0
    hi = max(pts) / 1000.0 * 1.2
    lx0, lx1 = math.log10(lo), math.log10(max(hi, lo * 10))

    def x(ms):
        ms = max(ms, lo)
        return ml + (math.log10(ms) - lx0) / (lx1 - lx0) * (w - ml - mr)

    def y(p):
        return mt + (1 - p / 100.0) * (h - mt - mb)

    out = svg_open(w, h, title)
    for p in (0, 50, 90, 99, 100):
        out.append(f'<line x1="{ml}" x2="{w-mr}" y1="{y(p)}" y2="{y(p)}" stroke="#ddd"/>')
        out.append(f'<text x="{ml-6}" y="{y(p)+4}" text-anchor="end">p{p}</text>')
    e = math.floor(lx0)
    while e <= lx1:
        for m in (1, 2, 5):
            v = m * 10 ** e
            if lo <= v <= 10 ** lx1:
                out.append(f'<line x1="{x(v)}" x2="{x(v)}" y1="{mt}" y2="{h-mb}" stroke="#eee"/>')
                out.append(f'<text x="{x(v)}" y="{h-mb+16}" text-anchor="middle">{v:g}</text>')
        e += 1
    out.append(f'<text x="{(ml+w-mr)/2}" y="{h-12}" text-anchor="middle">{xlabel}</text>')
    for i, (name, cdf) in enumerate(series):
        d = " ".join(f"{x(v/1000.0):.1f},{y(p):.1f}" for p, v in enumerate(cdf))
        c = COLORS.get(name, "#555")
        out.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{d}"/>')
        out.append(f'<rect x="{w-mr+10}" y="{mt+i*20}" width="12" height="12" fill="{c}"/>')
        out.append(f'<text x="{w-mr+28}" y="{mt+i*20+11}">{name}</text>')
    svg_write(out, path)


def svg_bars(values, title, unit, path):
    w, h, ml, mb, mt = 520, 320, 60, 40, 40
    if not values:
        return
    top = max(v for _, v in values) * 1.15 or 1
    bw = (w - ml - 20) / len(values)
    out = svg_open(w, h, title)
    out.append(f'<line x1="{ml}" x2="{w-20}" y1="{h-mb}" y2="{h-mb}" stroke="#333"/>')
    for i, (name, v) in enumerate(values):
        bh = v / top * (h - mt - mb)
        x0 = ml + i * bw + bw * 0.15
        c = COLORS.get(name, "#555")
        out.append(f'<rect x="{x0:.1f}" y="{h-mb-bh:.1f}" width="{bw*0.7:.1f}" height="{bh:.1f}" fill="{c}"/>')
        out.append(f'<text x="{x0+bw*0.35:.1f}" y="{h-mb-bh-6:.1f}" text-anchor="middle">{v:,.0f} {unit}</text>')
        out.append(f'<text x="{x0+bw*0.35:.1f}" y="{h-mb+16}" text-anchor="middle">{name}</text>')
    svg_write(out, path)


REDIS_START, REDIS_END = "<!-- redis:start -->", "<!-- redis:end -->"


def redis_section(src, md):
    """Writes the Redis probe's lines (bench/redis-latency.sh) into RESULTS.md."""
    rows = []
    setup = ""
    for line in open(src):
        if line.startswith("== "):
            setup = re.sub(r", \d+ events$", "", line[3:].strip())
            continue
        m = re.match(r"(.+): n=(\d+) p50=(\d+)us p90=(\d+)us p99=(\d+)us max=(\d+)us", line.strip())
        if m:
            what, n, *us = m.groups()
            rows.append(f"| {setup}: {what} | {n} | " + " | ".join(f"{int(v) / 1000:.2f}" for v in us) + " |")
    if not rows:
        sys.exit(f"no latency lines in {src}")
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    gen = f"""{REDIS_START}
## Many nodes: publish → deliver latency over Redis

Run ended {when} UTC, by `bench/redis-latency.sh` within `bench/run`: one
event at a time is published over HTTP and timed until a subscriber (SSE)
receives it; the same run measures one node on the memory store as the
baseline.

| setup | events | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) |
|---|---|---|---|---|---|
{chr(10).join(rows)}
{REDIS_END}"""
    text = open(md).read()
    if REDIS_START in text and REDIS_END in text:
        text = text[: text.index(REDIS_START)] + gen + text[text.index(REDIS_END) + len(REDIS_END):]
    else:
        text = text.replace(END, END + "\n\n" + gen, 1) if END in text else text + "\n" + gen + "\n"
    with open(md, "w") as f:
        f.write(text)


def main():
    if sys.argv[1:] == ["--facts"]:
        print(json.dumps({"scenario": "machine", "facts": machine()}))
        return
    if sys.argv[1] == "--redis":
        redis_section(sys.argv[2], sys.argv[3])
        return
    src, out_dir, command = sys.argv[1], sys.argv[2], sys.argv[3]
    rows = [json.loads(l) for l in open(src) if l.strip().startswith("{")]
    facts_rows = [r for r in rows if r.get("scenario") == "machine"]
    rows = [r for r in rows if r.get("scenario") != "machine"]
    run_facts = facts_rows[-1]["facts"] if facts_rows else machine()
    tbl, by = table(rows)
    idle = [(p, by[p]["idle"]["bytes_per_conn"]) for p in by if "idle" in by[p]]
    svg_bars(idle, "Server RSS per idle SSE connection", "B", os.path.join(out_dir, "memory-per-connection.svg"))
    fan = [(p, by[p]["fanout"]["latency_cdf_us"]) for p in by if "fanout" in by[p]]
    tok = [(p, by[p]["tokens"]["added_cdf_us"]) for p in by if "tokens" in by[p]]
    svg_cdf(fan, "Fan-out delivery latency", "latency (ms, log scale)", os.path.join(out_dir, "fanout-latency.svg"))
    svg_cdf(tok, "Token streams: latency added per token", "added latency (ms, log scale)",
            os.path.join(out_dir, "token-latency.svg"))
    facts = "\n".join(f"- {k}: {v}" for k, v in run_facts)
    gen = f"""{START}
## Latest run

Command: `{command}` (from the repository root). Raw lines: `bench/results.jsonl`.

{facts}

{tbl}

![Fan-out latency](fanout-latency.svg) ![Memory per connection](memory-per-connection.svg)
![Token latency](token-latency.svg)
{END}"""
    md = os.path.join(out_dir, "RESULTS.md")
    text = open(md).read() if os.path.exists(md) else "# Benchmark results\n\n" + START + "\n" + END + "\n"
    if START in text and END in text:
        text = text[: text.index(START)] + gen + text[text.index(END) + len(END):]
    else:
        text += "\n" + gen + "\n"
    with open(md, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
