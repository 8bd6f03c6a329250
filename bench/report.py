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
COLORS = {"rill": "#d9480f", "rill-send": "#e8590c", "rill-hyper": "#9c36b5", "rill-before": "#f59f00", "floor": "#495057",
          "nchan": "#1c7ed6", "axum": "#2b8a3e"}
PEERS = ("rill", "rill-send", "rill-hyper", "rill-before", "floor", "nchan", "axum")


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


def median(vs):
    vs = sorted(vs)
    n = len(vs)
    return vs[n // 2] if n % 2 else (vs[n // 2 - 1] + vs[n // 2]) / 2


def spread(vs, digits, scale=1.0):
    """One value, or the median of several runs with their min–max."""
    vs = [v / scale for v in vs if v is not None]
    if not vs:
        return "–"
    if len(vs) == 1 or min(vs) == max(vs):
        return fmt(vs[0], digits)
    return f"{fmt(median(vs), digits)} ({fmt(min(vs), digits)}–{fmt(max(vs), digits)})"


class Runs:
    """Result lines grouped by peer and scenario, one line per run."""

    def __init__(self, rows):
        self.by = {}
        # (peer, scenario, run) where bench/run found the server gone at the end.
        self.exited = [(r["peer"], r["scenario"], int(r.get("run", 1))) for r in rows if "server_exited" in r]
        for r in rows:
            if "server_exited" not in r:
                self.by.setdefault(r["peer"], {}).setdefault(r["scenario"], {})[int(r.get("run", 1))] = r
        self.peers = [p for p in PEERS if p in self.by]
        self.count = max((len(runs) for s in self.by.values() for runs in s.values()), default=0)

    def runs(self, peer, scen):
        return self.by.get(peer, {}).get(scen, {})

    def values(self, peer, scen, key):
        return [r[key] for r in self.runs(peer, scen).values() if r.get(key) is not None]

    def med(self, peer, scen, key):
        vs = self.values(peer, scen, key)
        return median(vs) if vs else None

    def ratios(self, a, b, scen, key):
        """a ÷ b within each run that measured both."""
        ra, rb = self.runs(a, scen), self.runs(b, scen)
        return [ra[k][key] / rb[k][key] for k in sorted(ra) if k in rb
                and ra[k].get(key) is not None and rb[k].get(key)]

    def typical(self, peer, scen, key):
        """The run whose `key` is the median one (for plots of a distribution)."""
        runs = sorted(self.runs(peer, scen).values(), key=lambda r: r.get(key, 0))
        return runs[(len(runs) - 1) // 2] if runs else None


# (label, scenario, key, digits, scale); key None means delivered / expected.
METRICS = [
    ("idle: connections held", "idle", "connections", 0, 1),
    ("idle: server RSS per connection (bytes)", "idle", "bytes_per_conn", 0, 1),
    ("idle over TLS: connections held", "idle-tls", "connections", 0, 1),
    ("idle over TLS: server RSS per connection (bytes)", "idle-tls", "bytes_per_conn", 0, 1),
    ("idle over h2c: connections held", "idle-h2c", "connections", 0, 1),
    ("idle over h2c: server RSS per connection (bytes)", "idle-h2c", "bytes_per_conn", 0, 1),
    ("fan-out: subscribers", "fanout", "subscribers", 0, 1),
    ("fan-out: delivered / expected", "fanout", None, 0, 1),
    ("fan-out: wall time for the run (s; schedule: events / rate)", "fanout", "wall_s", 1, 1),
    ("fan-out: server CPU per delivered event (µs)", "fanout", "cpu_us_per_event", 2, 1),
    ("  of which user (µs)", "fanout", "user_us_per_event", 2, 1),
    ("  of which kernel (µs)", "fanout", "sys_us_per_event", 2, 1),
    ("fan-out: deliveries per server CPU-second", "fanout", "events_per_cpu_s", 0, 1),
    ("fan-out: latency p50 (ms)", "fanout", "latency_p50_us", 1, 1000),
    ("fan-out: latency p90 (ms)", "fanout", "latency_p90_us", 1, 1000),
    ("fan-out: latency p99 (ms)", "fanout", "latency_p99_us", 1, 1000),
    ("fan-out: latency max (ms)", "fanout", "latency_max_us", 1, 1000),
    ("burst: subscribers", "burst", "subscribers", 0, 1),
    ("burst: delivered / expected", "burst", None, 0, 1),
    ("burst: publishes/s achieved (schedule: rate)", "burst", "publish_rate_achieved", 0, 1),
    ("burst: wall time to the last delivery (s)", "burst", "wall_s", 1, 1),
    ("burst: deliveries per server CPU-second", "burst", "events_per_cpu_s", 0, 1),
    ("burst: server CPU per delivered event (µs)", "burst", "cpu_us_per_event", 2, 1),
    ("burst: latency p50 (ms)", "burst", "latency_p50_us", 1, 1000),
    ("burst: latency p99 (ms)", "burst", "latency_p99_us", 1, 1000),
    ("publish: publishes/s over HTTP", "publish", "publishes_per_s", 0, 1),
    ("publish: server CPU per publish (µs)", "publish", "cpu_us_per_publish", 1, 1),
    ("publish: load client CPU per publish (µs)", "publish", "client_cpu_us_per_publish", 1, 1),
    ("storm: subscribers", "storm", "subscribers", 0, 1),
    ("storm: established", "storm", "established", 0, 1),
    ("storm: closed before headers", "storm", "closed_before_headers", 0, 1),
    ("storm: refused (other status) / connect failed", "storm", ("refused", "connect_failed"), 0, 1),
    ("storm: resumed exactly", "storm", "resumed_exact", 0, 1),
    ("storm: got a reset / another event / none", "storm", ("resumed_reset", "resumed_other", "no_event"), 0, 1),
    ("storm: time until every head (s)", "storm", "all_heads_s", 2, 1),
    ("storm: response head p99 (ms)", "storm", "head_p99_us", 1, 1000),
    ("storm: server CPU per subscriber (µs)", "storm", "cpu_us_per_subscriber", 0, 1),
    ("catch-up: delivered / expected", "replay", None, 0, 1),
    ("catch-up: server CPU per replayed event (µs)", "replay", "cpu_us_per_event", 2, 1),
    ("tokens: generations completed", "tokens", "completed", 0, 1),
    ("tokens: added latency p50 (ms)", "tokens", "added_p50_us", 2, 1000),
    ("tokens: added latency p99 (ms)", "tokens", "added_p99_us", 2, 1000),
    ("tokens: runtime timer floor p99 (ms)", "tokens", "timer_floor_p99_us", 2, 1000),
    ("tokens: server CPU per token (µs)", "tokens", "cpu_us_per_token", 1, 1),
]


def cell(runs, peer, scen, key, digits, scale):
    mark = " (server exited)" if any(p == peer and s == scen for p, s, _ in runs.exited) else ""
    return plain_cell(runs, peer, scen, key, digits, scale) + mark


def plain_cell(runs, peer, scen, key, digits, scale):
    if not runs.runs(peer, scen):
        return "n/a"
    if key is None:
        return f"{spread(runs.values(peer, scen, 'delivered'), 0)} / {spread(runs.values(peer, scen, 'expected'), 0)}"
    if isinstance(key, tuple):
        return " / ".join(spread(runs.values(peer, scen, k), digits, scale) for k in key)
    return spread(runs.values(peer, scen, key), digits, scale)


def table(runs):
    peers = runs.peers
    lines = ["| metric | " + " | ".join(peers) + " |", "|---" * (len(peers) + 1) + "|"]
    for label, scen, key, digits, scale in METRICS:
        cells = [cell(runs, p, scen, key, digits, scale) for p in peers]
        if any(c != "n/a" for c in cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratio_row(runs, what, a, b, scen, key, op=None, bound=None):
    """A row comparing peer a with peer b within each run: the median ratio
    and its min–max, and whether the median meets `op bound`."""
    rs = runs.ratios(a, b, scen, key)
    if not rs:
        return f"| {what} | {a} ÷ {b}{f' {op} {bound}' if op else ''} | n/a | {'not measured' if op else '–'} |"
    m = median(rs)
    if op is None:
        met = "–"
    else:
        met = "met" if (m <= bound if op == "≤" else m >= bound) else "not met"
    crit = f"{a} ÷ {b} {op} {bound}" if op else f"{a} ÷ {b}"
    return f"| {what} | {crit} | {spread(rs, 2)} | {met} |"


def storm_row(runs, peer, required):
    rs = list(runs.runs(peer, "storm").values())
    what = f"reconnect storm ({peer})"
    crit = "all established, 0 closed before headers, all resumed exactly"
    if not rs:
        return f"| {what} | {crit} | n/a | {'not measured' if required else '–'} |"
    ok = all(r["established"] == r["subscribers"] and r["closed_before_headers"] == 0
             and r["resumed_exact"] == r["subscribers"] for r in rs)
    worst = min(rs, key=lambda r: r["resumed_exact"])
    val = (f"{fmt(worst['established'], 0)} / {fmt(worst['subscribers'], 0)} established, "
           f"{fmt(worst['closed_before_headers'], 0)} closed, {fmt(worst['resumed_exact'], 0)} resumed"
           + (" (worst run)" if len(rs) > 1 else ""))
    return f"| {what} | {crit} | {val} | {('met' if ok else 'not met') if required else '–'} |"


def targets(runs):
    """The targets of the parked path, as ratios to columns of the same run."""
    rows = ["| target | criterion | median ratio or value (min–max over runs) | met? |", "|---|---|---|---|"]
    idle = runs.values("rill", "idle", "bytes_per_conn")
    held = runs.med("rill", "idle", "connections")
    if idle:
        m = median(idle)
        rows.append(f"| RSS per idle HTTP/1.1 subscriber at 19,000 | rill ≤ 4,096 bytes | "
                    f"{spread(idle, 0)} bytes at {fmt(held, 0)} | {'met' if m <= 4096 else 'not met'} |")
    else:
        rows.append("| RSS per idle HTTP/1.1 subscriber at 19,000 | rill ≤ 4,096 bytes | n/a | not measured |")
    rows.append(ratio_row(runs, "", "rill", "nchan", "idle", "bytes_per_conn"))
    rows.append(ratio_row(runs, "", "rill", "rill-hyper", "idle", "bytes_per_conn"))
    what = "server CPU per delivered event, fan-out"
    rows.append(ratio_row(runs, what, "rill", "floor", "fanout", "cpu_us_per_event", "≤", 1.25))
    rows.append(ratio_row(runs, "", "rill", "nchan", "fanout", "cpu_us_per_event", "≤", 0.6))
    # What one write per socket per event costs against nchan: how far
    # below nchan any server can go on this machine.
    rows.append(ratio_row(runs, "", "floor", "nchan", "fanout", "cpu_us_per_event"))
    rows.append(ratio_row(runs, "", "rill", "rill-send", "fanout", "cpu_us_per_event"))
    rows.append(ratio_row(runs, "", "rill", "rill-hyper", "fanout", "cpu_us_per_event"))
    what = "burst: deliveries per server CPU-second"
    rows.append(ratio_row(runs, what, "rill", "nchan", "burst", "events_per_cpu_s", "≥", 3))
    rows.append(ratio_row(runs, "", "rill", "floor", "burst", "events_per_cpu_s"))
    rows.append(ratio_row(runs, "", "rill", "rill-send", "burst", "events_per_cpu_s"))
    rows.append(ratio_row(runs, "", "rill", "rill-hyper", "burst", "events_per_cpu_s"))
    what = "p99 delivery latency, fan-out"
    rows.append(ratio_row(runs, what, "rill", "floor", "fanout", "latency_p99_us", "≤", 1.5))
    rows.append(ratio_row(runs, "", "rill", "nchan", "fanout", "latency_p99_us", "≤", 1))
    rows.append(ratio_row(runs, "", "rill", "rill-hyper", "fanout", "latency_p99_us"))
    rows.append(storm_row(runs, "rill", True))
    for p in ("rill-hyper", "nchan"):
        if runs.runs(p, "storm"):
            rows.append(storm_row(runs, p, False))
    what = "publishes/s over HTTP, 16 connections"
    rows.append(ratio_row(runs, what, "rill", "nchan", "publish", "publishes_per_s", "≥", 2))
    # The floor answers each publish with one recv and one send from one
    # epoll loop: with the same load client on the same cores, how far
    # above nchan any server can go on this machine.
    rows.append(ratio_row(runs, "", "floor", "nchan", "publish", "publishes_per_s"))
    rows.append(ratio_row(runs, "", "rill", "floor", "publish", "publishes_per_s"))
    rows.append(ratio_row(runs, "", "rill", "rill-hyper", "publish", "publishes_per_s"))
    rows.append(ratio_row(runs, "RSS per idle TLS subscriber (no regression)", "rill", "rill-hyper",
                          "idle-tls", "bytes_per_conn", "≤", 1.1))
    rows.append(ratio_row(runs, "RSS per idle h2c subscriber (no regression)", "rill", "rill-hyper",
                          "idle-h2c", "bytes_per_conn", "≤", 1.1))
    return "\n".join(rows)


def svg_open(w, h, title):
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
            f'<rect width="{w}" height="{h}" fill="white"/>',
            f'<text x="{w/2}" y="20" text-anchor="middle" font-size="14">{title}</text>']


def drop(path):
    """A plot this run has no data for is removed, not left stale."""
    if os.path.exists(path):
        os.remove(path)


def svg_write(out, path):
    with open(path, "w") as f:
        f.write("\n".join(out + ["</svg>"]) + "\n")


def svg_cdf(series, title, xlabel, path):
    """Latency distribution: x = latency (ms, log scale), y = percentile."""
    import math

    w, h, ml, mb, mt, mr = 640, 380, 60, 50, 40, 130
    pts = [v for _, cdf in series for v in cdf if v > 0]
    if not pts:
        drop(path)
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
    w, h, ml, mb, mt = 120 + 110 * max(len(values), 1), 320, 60, 40, 40
    if not values:
        drop(path)
        return
    top = max(v for _, v in values) * 1.15 or 1
    bw = (w - ml - 20) / len(values)
    out = svg_open(w, h, title)
    out.append(f'<line x1="{ml}" x2="{w-20}" y1="{h-mb}" y2="{h-mb}" stroke="#333"/>')
    for i, (name, v) in enumerate(values):
        bh = v / top * (h - mt - mb)
        x0 = ml + i * bw + bw * 0.15
        c = COLORS.get(name.split()[0], "#555")
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


# The sizes the targets name: (scenario, field, size, what).
TARGET_SIZES = [
    ("idle", "connections", 19000, "idle subscribers"),
    ("fanout", "subscribers", 10000, "fan-out subscribers"),
    ("fanout", "rate", 10, "fan-out events/s"),
    ("burst", "subscribers", 1000, "burst subscribers"),
    ("burst", "rate", 1000, "burst events/s"),
    ("storm", "subscribers", 19000, "storm subscribers"),
    ("publish", "connections", 16, "publish connections"),
]


def caveats(runs):
    """Generated notes on what the met column can be trusted for."""
    notes = []
    off = []
    for scen, key, want, what in TARGET_SIZES:
        got = runs.med("rill", scen, key)
        if got is not None and got != want:
            off.append(f"{what} {fmt(got, 0)} (target: {want:,})")
    if off:
        notes.append("- Sizes differ from the targets': " + "; ".join(off)
                     + ". The met column says how this run compares, not whether the target is met.")
    for peer, scen, run in runs.exited:
        notes.append(f"- The {peer} server exited during {scen} (run {run}): those figures are void.")
    if runs.count < 3:
        notes.append(f"- {runs.count} run(s) per peer; the targets are judged on medians of at least 3 "
                     "alternating runs (`bench/run --repeat 3`).")
    return "\n".join(notes)


def plots(runs, out_dir):
    med = lambda p, s, k: [(p, runs.med(p, s, k))] if runs.runs(p, s) else []  # noqa: E731
    idle = [x for p in runs.peers for x in med(p, "idle", "bytes_per_conn")]
    svg_bars(idle, "Server RSS per idle SSE connection (HTTP/1.1)", "B",
             os.path.join(out_dir, "memory-per-connection.svg"))
    secure = [(f"{p} {t}", v) for t, s in (("tls", "idle-tls"), ("h2c", "idle-h2c"))
              for p in runs.peers for _, v in med(p, s, "bytes_per_conn")]
    svg_bars(secure, "Server RSS per idle connection over TLS and h2c", "B",
             os.path.join(out_dir, "memory-tls-h2c.svg"))
    burst = [x for p in runs.peers for x in med(p, "burst", "events_per_cpu_s")]
    svg_bars(burst, "Burst: deliveries per server CPU-second", "/s", os.path.join(out_dir, "burst-throughput.svg"))
    for scen, key, title, xlabel, name in (
        ("fanout", "latency", "Fan-out delivery latency", "latency (ms, log scale)", "fanout-latency.svg"),
        ("burst", "latency", "Burst delivery latency", "latency (ms, log scale)", "burst-latency.svg"),
        ("tokens", "added", "Token streams: latency added per token", "added latency (ms, log scale)",
         "token-latency.svg"),
    ):
        series = []
        for p in runs.peers:
            r = runs.typical(p, scen, f"{key}_p99_us")
            if r is not None:
                series.append((p, r[f"{key}_cdf_us"]))
        svg_cdf(series, title, xlabel, os.path.join(out_dir, name))


PLOTS = [
    ("Fan-out latency", "fanout-latency.svg"),
    ("Burst latency", "burst-latency.svg"),
    ("Memory per connection", "memory-per-connection.svg"),
    ("Memory over TLS and h2c", "memory-tls-h2c.svg"),
    ("Burst deliveries per CPU-second", "burst-throughput.svg"),
    ("Token latency", "token-latency.svg"),
]


def images(out_dir):
    shown = [f"![{alt}]({name})" for alt, name in PLOTS if os.path.exists(os.path.join(out_dir, name))]
    return "\n".join(" ".join(shown[i:i + 2]) for i in range(0, len(shown), 2))


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
    runs = Runs(rows)
    plots(runs, out_dir)
    facts = "\n".join(f"- {k}: {v}" for k, v in run_facts)
    many = runs.count > 1
    how = (f"Each cell is the median of {runs.count} alternating runs, with their min–max in brackets."
           if many else "One run per peer.")
    gen = f"""{START}
## Latest run

Command: `{command}` (from the repository root). Raw lines: `bench/results.jsonl`.
{how}

{facts}

{table(runs)}

### Targets of the parked path

Ratios are taken within each run (rill's figure over the other column's
figure of the same run), then the median over runs; rows without a bound
are for reading, not judged.

{targets(runs)}

{caveats(runs)}

{images(out_dir)}
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
