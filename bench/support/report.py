#!/usr/bin/env python3
"""Turns bench/results/latest.jsonl (one JSON line per run, from bench/run.sh) into the
markdown tables of bench/results/latest.md: every workload per target with its ratio to
Riffle, the machine's physical limits, and the issue-4 targets met or missed.

Usage: python3 bench/support/report.py bench/results/latest.jsonl > bench/results/latest.md
"""

import json
import sys
from collections import defaultdict

PEERS = ["kinesalite", "kinesis-mock", "moto", "ferrokinesis"]
TARGETS = ["riffle"] + PEERS


def load(path):
    lines = []
    with open(path) as f:
        for raw in f:
            raw = raw.strip()
            if raw:
                try:
                    lines.append(json.loads(raw))
                except json.JSONDecodeError:
                    pass
    return lines


def key_of(d):
    """Which table row a run belongs to."""
    w, p = d.get("workload"), d.get("params") or {}
    if w == "put-records":
        if "record_size" not in p:
            return (w, None)
        return (w, p["record_size"], p["concurrency"], d.get("http", "1.1"))
    if w == "propagation":
        return (w, p.get("poll_mode"))
    return (w,)


def fmt_num(x, unit=""):
    if x is None:
        return "—"
    if isinstance(x, (int, float)):
        if abs(x) >= 1000:
            s = f"{x:,.0f}"
        elif abs(x) >= 100:
            s = f"{x:.0f}"
        elif abs(x) >= 10:
            s = f"{x:.1f}"
        else:
            s = f"{x:.2f}"
        return s + unit
    return str(x)


def fmt_ratio(r):
    if r is None:
        return ""
    if r >= 10:
        return f" (×{r:,.0f})"
    return f" (×{r:.1f})"


def short(reason, n=70):
    reason = (reason or "").replace("|", "/").replace("\n", " ")
    return reason if len(reason) <= n else reason[: n - 1] + "…"


class Table:
    def __init__(self, lines):
        self.by_key = defaultdict(dict)
        self.whole_failures = defaultdict(dict)  # workload -> target -> line
        self.physical = []
        self.meta = []
        for d in lines:
            w = d.get("workload")
            if w == "meta":
                self.meta.append(d)
            elif w == "physical":
                self.physical.append(d)
            else:
                k = key_of(d)
                if d.get("status") != "ok" and (len(k) == 1 or k[1] is None):
                    self.whole_failures[w][d["target"]] = d
                if k[1:] != (None,):
                    self.by_key[k][d["target"]] = d

    def get(self, key, target):
        d = self.by_key.get(key, {}).get(target)
        if d is None:
            d = self.whole_failures.get(key[0], {}).get(target)
        return d

    def row(self, label, key, value, higher_better=True, ratio=True, targets=TARGETS, suffix=""):
        """One markdown row: `value(d)` per target, peers with their ratio to riffle."""
        cells = []
        base = None
        rd = self.get(key, "riffle")
        if rd is not None and rd.get("status") == "ok":
            base = value(rd)
        for t in TARGETS:
            if t not in targets:
                cells.append("—")
                continue
            d = self.get(key, t)
            if d is None:
                cells.append("not run")
                continue
            if d.get("status") != "ok":
                cells.append(f"{d.get('status')}: {short(d.get('reason'))}")
                continue
            v = value(d)
            if v is None:
                cells.append("n/a")
                continue
            cell = fmt_num(v, suffix)
            if d.get("errors"):
                cell += " †"
            if d.get("compilers_seen"):
                cell += " ‡"
            if t != "riffle" and ratio and isinstance(base, (int, float)) and isinstance(v, (int, float)):
                r = None
                if higher_better and v > 0:
                    r = base / v
                elif not higher_better and base > 0:
                    r = v / base
                cell += fmt_ratio(r)
            cells.append(cell)
        return f"| {label} | " + " | ".join(cells) + " |"


def lat(p):
    return lambda d: (d.get("latency_ms") or {}).get(p)


def extra(k):
    return lambda d: (d.get("extra") or {}).get(k)


def main():
    lines = load(sys.argv[1])
    t = Table(lines)
    out = []
    meta = next((m for m in t.meta if m.get("target") == "machine"), {})
    end = next((m for m in t.meta if m.get("target") == "end"), {})
    out.append(f"## Results ({meta.get('mode', '?')} run, git {meta.get('git', '?')})")
    out.append("")
    out.append(
        f"Machine: {meta.get('nproc', '?')} cores ({meta.get('cpu_model', '?')}), "
        f"{meta.get('mem_gib', '?')} GiB, kernel {meta.get('kernel', '?')}, "
        f"data filesystem `{meta.get('disk', '?')}`."
    )
    busy = meta.get("compiler_processes_at_start", 0)
    cpu = meta.get("cpu_busy_percent_at_start", 0) or 0
    if not busy and cpu < 15:
        quiet = f"no compiler running and {cpu}% CPU busy when measuring started"
    else:
        quiet = (
            f"**the machine was busy when measuring started ({busy} compiler processes, {cpu}% CPU; "
            f"top: {meta.get('top_processes_at_start', '?')}) after waiting "
            f"{meta.get('waited_for_quiet_s', '?')} s; numbers are pessimistic**"
        )
    per_target = [m for m in t.meta if str(m.get("target", "")).startswith("before-")]
    if per_target:
        quiet += "; CPU busy before each target: " + ", ".join(
            f"{m['target'][7:]} {m.get('cpu_busy_percent')}%"
            + (f" ({m.get('compiler_processes')} compilers)" if m.get("compiler_processes") else "")
            for m in per_target
        )
    out.append(
        f"Quiet machine: {quiet}; load average at start {meta.get('loadavg_at_start')}, "
        f"at end {end.get('loadavg_at_end')}, compiler processes at end {end.get('compiler_processes_at_end')}."
    )
    out.append("")
    out.append(
        "Each peer cell shows its figure and, in parentheses, how many times better Riffle is "
        "(×2 = Riffle twice the throughput or half the latency; ×0.5 = the peer is better). "
        "† = the run counted errors (see latest.jsonl). ‡ = another engineer's compiler was running "
        "at the start or end of that run (the figure is pessimistic). Riffle runs with `fsync = \"always\"` "
        "(every acknowledged record is on disk); every peer keeps records in memory only."
    )
    out.append("")
    out.append("| workload | " + " | ".join(TARGETS) + " |")
    out.append("|---|" + "---|" * len(TARGETS))
    rps = lambda d: d.get("records_per_s")
    mbs = lambda d: d.get("mb_per_s")
    for c in (1, 4, 16):
        out.append(t.row(f"PutRecords 100 B ×500, 4 shards, {c} in flight (records/s)",
                         ("put-records", 100, c, "1.1"), rps))
    out.append(t.row("PutRecords 100 B ×500, 16 in flight, h2c (records/s)",
                     ("put-records", 100, 16, "2"), rps, targets=["riffle"]))
    for c in (1, 4, 16):
        out.append(t.row(f"PutRecords 10 KiB ×500, 4 shards, {c} in flight (MB/s)",
                         ("put-records", 10240, c, "1.1"), mbs))
    for p, name in (("p50", "p50"), ("p99", "p99"), ("p99_9", "p99.9")):
        out.append(t.row(f"PutRecord at 200/s, latency {name} (ms)", ("put-record-latency",),
                         lat(p), higher_better=False))
    out.append(t.row("Read from TRIM_HORIZON, 100 B records, Limit 10000, shards in parallel (records/s)",
                     ("read",), rps))
    out.append(t.row("… records filled before the read (bounded fill time)", ("read",),
                     extra("filled_records"), ratio=False))
    out.append(t.row("… fill rate, PutRecords 100 B, 4 in flight (records/s)", ("read",),
                     extra("fill_records_per_s")))
    for mode, name in (("interval", "sleep 200 ms after each answer"),
                       ("max-rate", "5 calls/s/shard grid")):
        out.append(t.row(f"Propagation put-ack → in hand, {name}: p50 (ms)", ("propagation", mode),
                         lat("p50"), higher_better=False))
        out.append(t.row(f"Propagation, {name}: p99 (ms)", ("propagation", mode),
                         lat("p99"), higher_better=False))
        out.append(t.row(f"Propagation, {name}: p99 minus the interval (ms)", ("propagation", mode),
                         extra("added_p99_ms"), ratio=False))
    out.append(t.row("SubscribeToShard put-ack → event in hand, 100 rec/s: p50 (ms)", ("subscribe",),
                     lat("p50"), higher_better=False))
    out.append(t.row("SubscribeToShard, 100 rec/s: p99 (ms)", ("subscribe",),
                     lat("p99"), higher_better=False))
    burst = t.get(("burst",), "riffle") or {}
    bp = burst.get("params") or {}
    def never_set(d):
        return (d.get("extra") or {}).get("peak_millis_behind") == 0

    out.append(t.row(
        f"Burst {bp.get('burst_factor', 3):g}× a {bp.get('consumer_rate', 1000):g} rec/s consumer for "
        f"{bp.get('burst_secs', '?'):g} s: peak MillisBehindLatest (ms)",
        ("burst",), lambda d: "always 0" if never_set(d) else extra("peak_millis_behind")(d),
        ratio=False))
    out.append(t.row("… recovery: MillisBehindLatest back to 0 after the burst (s)", ("burst",),
                     lambda d: "n/a" if never_set(d) else extra("recovery_s")(d), ratio=False))
    out.append(t.row("… records the producer got acknowledged (it falls behind a slow endpoint)",
                     ("burst",), extra("produced"), ratio=False))
    out.append(t.row("… consumer reached the tip after the burst (s)", ("burst",),
                     extra("caught_up_s"), ratio=False))
    out.append(t.row("Scale: RSS before creating streams (MB)", ("scale",),
                     extra("rss_baseline_mb"), higher_better=False))
    out.append(t.row("Scale: RSS idle with 1 × 1000-shard + 100 × 1-shard streams (MB)", ("scale",),
                     extra("rss_idle_mb"), higher_better=False))
    out.append(t.row("Scale: RSS max under PutRecords over the 1000 shards (MB)", ("scale",),
                     extra("rss_load_max_mb"), higher_better=False))
    out.append(t.row("Scale: PutRecords 100 B over 1000 shards, 16 in flight (records/s)", ("scale",), rps))
    out.append(t.row("Scale: creating the 101 streams (s)", ("scale",), extra("create_s"),
                     higher_better=False))
    st = t.get(("startup",), "riffle") or {}
    gb = (st.get("extra") or {}).get("data_dir_gb")
    out.append(t.row(f"Start-up with a {fmt_num(gb)} GB data directory: until the first answer (s)",
                     ("startup",), extra("startup_s"), targets=["riffle"]))
    out.append("")
    out.append("Peers keep no data directory, so start-up is measured for Riffle only.")
    out.append("")

    # Load generator CPU.
    out.append("### Load generator CPU (cores busy during the measured phase)")
    out.append("")
    out.append("| run | " + " | ".join(TARGETS) + " |")
    out.append("|---|" + "---|" * len(TARGETS))
    cores = lambda d: (d.get("loadgen_cpu") or {}).get("cores")
    for size, c in ((100, 16), (10240, 16)):
        out.append(t.row(f"PutRecords {size} B, {c} in flight", ("put-records", size, c, "1.1"),
                         cores, ratio=False))
    out.append(t.row("Read", ("read",), cores, ratio=False))
    out.append("")

    # Physical limits.
    out.append("### Physical limits (same run)")
    out.append("")
    out.append("| measurement | MB/s | IOPS | fdatasync latency p50 / p99 (ms) |")
    out.append("|---|---|---|---|")
    for d in t.physical:
        if d.get("status") != "ok":
            out.append(f"| {d.get('target')} | {d.get('status')}: {short(d.get('reason'))} | | |")
            continue
        fl = d.get("fsync_latency_ms") or {}
        fls = f"{fl.get('p50')} / {fl.get('p99')}" if fl else "—"
        label = d.get("target")
        if d.get("gbit_per_s"):
            label += f" ({d['gbit_per_s']} Gbit/s)"
        out.append(f"| {label} | {fmt_num(d.get('mb_per_s'))} | {fmt_num(d.get('iops'))} | {fls} |")
    out.append("")

    # Issue 4 targets.
    out.append("### Issue 4 targets")
    out.append("")
    out.append("| target | measured | met? |")
    out.append("|---|---|---|")

    def best(size, target):
        vals = []
        for c in (1, 4, 16):
            d = t.get(("put-records", size, c, "1.1"), target)
            if d and d.get("status") == "ok":
                vals.append(d["records_per_s"] if size == 100 else d["mb_per_s"])
        return max(vals) if vals else None

    def verdict(ok):
        return "n/a" if ok is None else ("**met**" if ok else "**missed**")

    r100 = best(100, "riffle")
    kl = best(100, "kinesalite")
    km = best(100, "kinesis-mock")
    ok = None
    if r100 is not None:
        ok = r100 >= 300_000 and (kl is None or r100 >= 20 * kl) and (km is None or r100 >= 10 * km)
    out.append(
        "| PutRecords 100 B ≥ 300,000 records/s, ≥ 20× kinesalite, ≥ 10× kinesis-mock (best of 1/4/16 in flight each) "
        f"| {fmt_num(r100)} rec/s; ×{fmt_num(r100 / kl if r100 and kl else None)} kinesalite; "
        f"×{fmt_num(r100 / km if r100 and km else None)} kinesis-mock | {verdict(ok)} |"
    )
    r10k = best(10240, "riffle")
    fio = next((d for d in t.physical if d.get("target") == "fio seq-1m-fsync" and d.get("status") == "ok"), None)
    disk = fio["mb_per_s"] if fio else None
    ok = None if (r10k is None or disk is None) else r10k >= disk / 2
    out.append(
        "| PutRecords 10 KiB ≥ half the disk's fsynced sequential write bandwidth (fio 1 MiB writes, fdatasync each) "
        f"| {fmt_num(r10k)} MB/s vs {fmt_num(disk)} MB/s disk (half: {fmt_num(disk / 2 if disk else None)}) | {verdict(ok)} |"
    )
    lat_d = t.get(("put-record-latency",), "riffle")
    p99 = lat_d["latency_ms"].get("p99") if lat_d and lat_d.get("status") == "ok" else None
    out.append(f"| PutRecord p99 ≤ 5 ms at low load (200/s) | {fmt_num(p99)} ms | "
               f"{verdict(None if p99 is None else p99 <= 5)} |")
    rd = t.get(("read",), "riffle")
    rr = rd.get("records_per_s") if rd and rd.get("status") == "ok" else None
    out.append(f"| Read ≥ 1,000,000 records/s | {fmt_num(rr)} rec/s over {fmt_num((rd or {}).get('records'))} records | "
               f"{verdict(None if rr is None else rr >= 1_000_000)} |")
    adds = []
    for mode in ("interval", "max-rate"):
        d = t.get(("propagation", mode), "riffle")
        if d and d.get("status") == "ok":
            adds.append((mode, (d.get("extra") or {}).get("added_p99_ms")))
    ok = None if not adds or any(a is None for _, a in adds) else all(a <= 5 for _, a in adds)
    out.append("| Polling propagation adds ≤ 5 ms to the interval at p99 | "
               + "; ".join(f"{m}: +{fmt_num(a)} ms" for m, a in adds) + f" | {verdict(ok)} |")
    sub = t.get(("subscribe",), "riffle")
    sp99 = sub["latency_ms"].get("p99") if sub and sub.get("status") == "ok" else None
    out.append(f"| SubscribeToShard p99 ≤ 10 ms (issue 3 measures it here) | {fmt_num(sp99)} ms | "
               f"{verdict(None if sp99 is None else sp99 <= 10)} |")
    sd = t.get(("scale",), "riffle")
    rss = (sd.get("extra") or {}).get("rss_idle_mb") if sd and sd.get("status") == "ok" else None
    out.append(f"| Idle RSS with 1,000 shards < 256 MB (measured with 1,100: 1 × 1000 + 100 × 1) | "
               f"{fmt_num(rss)} MB | {verdict(None if rss is None else rss < 256)} |")
    out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
