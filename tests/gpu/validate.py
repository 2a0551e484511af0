#!/usr/bin/env python3
"""GPU validation of llem's NVML energy: one workload window measured three ways.

    (a) llem      `llem monitor --plugins nvml --interval 100ms --format jsonl`, run as a
                  subprocess for the whole experiment. Each JSON line carries `t_ns`
                  (CLOCK_MONOTONIC when the line was written, the clock of Python's
                  time.monotonic_ns()) and `energy_j` (cumulative since the monitor
                  started). llem's energy AT a window edge is the linear interpolation of
                  that cumulative series between the two lines around the edge.
    (b) NVML      the raw counter nvmlDeviceGetTotalEnergyConsumption (mJ since the driver
                  loaded), read through pynvml at the two window edges: the reference.
    (c) Zeus      ZeusMonitor(gpu_indices=[0]).begin_window / end_window at the same edges
                  (Zeus reads the same NVML counter on Volta and newer).

Phases, in order: llem monitor starts; CUDA context and matrices are set up; settle (3 s),
during which the NVML counter's refresh period is measured (distinct values of
nvmlDeviceGetTotalEnergyConsumption read in a tight loop, --refresh-probe-s); IDLE window
(--idle-s, 10 s); idle pad (--pad-s); warm-up (--warmup-s, 10 s, a steady bf16 matmul loop,
not measured); LOADED window (--load-s, 30 s, the same loop); loaded pad (the loop goes on for
--pad-s after the window closes); tail (idle, so llem writes lines after the last edge).
Power is steady on both sides of every window edge: llem's energy at an edge is interpolated
between its lines around the edge, and a power step right after an edge would leak into it
(+1 to +11 % on the idle window before the pads existed). The idle window comes first so the
GPU is as cool as it gets. The goal, checked on the LOADED window only:
|llem - NVML| <= 0.5 % of NVML and |llem - Zeus| <= 0.5 % of NVML.

The whole run is bounded by --deadline-s (default 420 s, under the device tool's 10 min per
command): a phase that would not fit is not started, and an alarm stops anything that hangs.

A background thread records power (NVML_FI_DEV_POWER_INSTANT when the driver has it, and
nvmlDeviceGetPowerUsage, a 1 s average on Ampere and newer), the energy counter, SM clock and
temperature at 10 Hz into traces.csv, to explain any disagreement afterwards.

Outputs (in --out): results.json (ALWAYS written, whatever happens: on a failure it holds
`exit_status`, `error` and every figure measured until then), results.md (a table for
docs/validation.md), traces.csv, llem.jsonl (the monitor's raw output), llem.stderr.

Exit status: 0 goal met; 1 goal missed; 2 could not measure (no CUDA, no NVML library or
energy counter, llem failed to start, died or gave no figure for the GPU, any unexpected
error); 3 llem within the goal of NVML but Zeus missing or failed; 4 out of time (the
--deadline-s budget ran out).

Plain Python plus what the GPU image has (torch, nvidia-ml-py) and the carried Zeus wheel.
torch and pynvml are imported only inside the measurement, so `--self-test` (the pure
maths and formatting, on synthetic series) runs anywhere with the standard library alone.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

GOAL_PCT = 0.5
EXIT_OK, EXIT_MISSED, EXIT_ERROR, EXIT_PARTIAL, EXIT_TIMEOUT = 0, 1, 2, 3, 4
# NVML field id of instantaneous power (nvml.h); older pynvml builds lack the constant.
NVML_FI_DEV_POWER_INSTANT = 186

INTERPOLATION_NOTE = (
    "llem's energy at each window edge is the linear interpolation of its cumulative "
    "`energy_j` series (llem monitor --format jsonl) between the two lines around the edge, "
    "by their `t_ns` (CLOCK_MONOTONIC at output, the clock of Python's time.monotonic_ns()); "
    "NVML and Zeus read the driver's total-energy counter at the edges, after "
    "torch.cuda.synchronize()."
)


class MeasureError(Exception):
    """Something that stops the measurement (exit 2)."""


class OutOfTime(Exception):
    """The run's time budget (--deadline-s) ran out (exit 4)."""


class Budget:
    """The run's time budget: `need` refuses to start a phase that would not fit, and an
    alarm (SIGALRM, main thread) stops a phase that hangs past the deadline."""

    def __init__(self, seconds, clock=time.monotonic):
        self.clock = clock
        self.deadline = clock() + seconds
        self.seconds = seconds

    def left(self):
        return self.deadline - self.clock()

    def need(self, seconds, what):
        if seconds > self.left():
            raise OutOfTime(f"{what} needs {seconds:.1f} s but only {max(0.0, self.left()):.1f} s "
                            f"of the {self.seconds:g} s budget are left (--deadline-s)")

    def arm(self):
        def expired(signum, frame):
            raise OutOfTime(f"the {self.seconds:g} s budget (--deadline-s) ran out mid-phase")

        signal.signal(signal.SIGALRM, expired)
        signal.setitimer(signal.ITIMER_REAL, max(0.001, self.left()))

    @staticmethod
    def disarm():
        signal.setitimer(signal.ITIMER_REAL, 0)


# ---------------------------------------------------------------------------------------
# Pure functions: no GPU, no torch, no pynvml. Covered by --self-test.
# ---------------------------------------------------------------------------------------


def interpolate(series, t_ns):
    """Value of a cumulative series at instant t_ns, linear between the samples around it.

    series: list of (t_ns, value), sorted by time. Returns a dict with the value and the
    two samples used, so the output can show how far apart they were. Raises ValueError
    when t_ns is outside the series (no extrapolation: an edge outside the monitor's
    lifetime is a bug in the experiment, not something to guess).
    """
    if not series:
        raise ValueError("empty series")
    if t_ns < series[0][0] or t_ns > series[-1][0]:
        raise ValueError(
            f"instant {t_ns} is outside the series [{series[0][0]}, {series[-1][0]}]"
        )
    lo, hi = 0, len(series) - 1
    # Binary search for the last sample at or before t_ns.
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if series[mid][0] <= t_ns:
            lo = mid
        else:
            hi = mid
    (t0, v0), (t1, v1) = series[lo], series[hi]
    if t0 == t_ns or t1 == t0:
        value = v0
    elif t1 == t_ns:
        value = v1
    else:
        value = v0 + (v1 - v0) * (t_ns - t0) / (t1 - t0)
    return {
        "value": value,
        "before_t_ns": t0,
        "after_t_ns": t1,
        "gap_ms": (t1 - t0) / 1e6,
    }


def window_energy(series, start_ns, end_ns):
    """Energy between two instants of a cumulative series, with the interpolation details."""
    a = interpolate(series, start_ns)
    b = interpolate(series, end_ns)
    return b["value"] - a["value"], {"start": a, "end": b}


def pct_of(value, reference):
    """100 * (value - reference) / reference; None when either is missing or reference is 0."""
    if value is None or reference is None or reference == 0:
        return None
    return 100.0 * (value - reference) / reference


def compare(window):
    """Add the differences (in % of NVML) and the goal verdict to one window's figures."""
    nvml, llem, zeus = window["nvml_j"], window["llem_j"], window.get("zeus_j")
    window["llem_vs_nvml_pct"] = pct_of(llem, nvml)
    # Relative to NVML too (the goal's wording), not to Zeus.
    window["llem_vs_zeus_pct"] = (
        None if zeus is None or llem is None or not nvml else 100.0 * (llem - zeus) / nvml
    )
    window["zeus_vs_nvml_pct"] = pct_of(zeus, nvml)
    ok_nvml = window["llem_vs_nvml_pct"] is not None and abs(window["llem_vs_nvml_pct"]) <= GOAL_PCT
    ok_zeus = window["llem_vs_zeus_pct"] is not None and abs(window["llem_vs_zeus_pct"]) <= GOAL_PCT
    window["within_goal_nvml"] = ok_nvml
    window["within_goal_zeus"] = ok_zeus if zeus is not None else None
    return window


def verdict(loaded, zeus_error):
    """(exit status, one-line verdict) for the loaded window."""
    d_nvml = loaded.get("llem_vs_nvml_pct")
    if d_nvml is None:
        return EXIT_ERROR, "no llem or NVML figure for the loaded window"
    if not loaded["within_goal_nvml"]:
        return EXIT_MISSED, (
            f"GOAL MISSED: llem differs from NVML by {d_nvml:+.3f} % (goal ±{GOAL_PCT} %)"
        )
    if loaded.get("zeus_j") is None:
        return EXIT_PARTIAL, (
            f"llem within {GOAL_PCT} % of NVML ({d_nvml:+.3f} %), but Zeus is missing "
            f"({zeus_error or 'no figure'}): the Zeus half of the goal is unchecked"
        )
    d_zeus = loaded["llem_vs_zeus_pct"]
    if not loaded["within_goal_zeus"]:
        return EXIT_MISSED, (
            f"GOAL MISSED: llem differs from Zeus by {d_zeus:+.3f} % of NVML (goal ±{GOAL_PCT} %)"
        )
    return EXIT_OK, (
        f"goal met: llem vs NVML {d_nvml:+.3f} %, llem vs Zeus {d_zeus:+.3f} % (goal ±{GOAL_PCT} %)"
    )


def estimate_lag(llem_series, counter_series, max_ms=300.0, step_ms=2.0):
    """How late llem's cumulative energy is against the raw counter, in ms (diagnostic).

    llem's `t_ns` is when the JSON line was written; the energy in it is from llem's last
    read of the counter, which can be up to one interval older. Both series come from the
    same NVML counter, so llem's energy at t should equal counter(t - lag) minus a constant
    (the counter at llem's first read). Grid search for the lag that minimises the spread
    of llem(t) - counter(t - lag). Returns (lag_ms, rms_j) or (None, None) when the series
    do not overlap enough, and (None, rms) when the power was too steady for the lag to
    show (then every lag fits about as well: a lag only shows where power changes).
    """
    if len(llem_series) < 10 or len(counter_series) < 10:
        return None, None
    best, worst = (None, None), 0.0
    steps = int(max_ms / step_ms)
    for k in range(-steps // 6, steps + 1):  # a little negative lag too, as a sanity margin
        lag_ns = int(k * step_ms * 1e6)
        residuals = []
        for t, e in llem_series:
            try:
                c = interpolate(counter_series, t - lag_ns)["value"]
            except ValueError:
                continue
            residuals.append(e - c)
        if len(residuals) < 10:
            continue
        mean = sum(residuals) / len(residuals)
        rms = math.sqrt(sum((r - mean) ** 2 for r in residuals) / len(residuals))
        if best[1] is None or rms < best[1]:
            best = (k * step_ms, rms)
        worst = max(worst, rms)
    if best[1] is not None and worst <= 2 * best[1] + 1e-9:
        return None, best[1]
    return best


def parse_llem_line(line, device):
    """(t_ns, energy_j, power_w) from one `llem monitor --format jsonl` line for `device`.

    None for another device, a line before the first energy figure (energy_j null), or a
    line that is not JSON (kept in llem.jsonl anyway).
    """
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("device") != device:
        return None
    if record.get("energy_j") is None or record.get("t_ns") is None:
        return None
    return int(record["t_ns"]), float(record["energy_j"]), record.get("power_w")


def refresh_stats(reads):
    """The counter's refresh period from reads taken in a tight loop.

    reads: list of (t_ns, value) in read order. The counter changes only when the driver
    refreshes it, so the instants where the value differs from the previous read are the
    refreshes (to within one read); the intervals between consecutive changes are the
    refresh period. Returns counts and interval statistics in ms (None when fewer than
    three changes were seen: no period can be told).
    """
    changes = [t for (t, v), (_, prev) in zip(reads[1:], reads) if v != prev]
    intervals = sorted((b - a) / 1e6 for a, b in zip(changes, changes[1:]))
    span_s = (reads[-1][0] - reads[0][0]) / 1e9 if len(reads) > 1 else 0.0
    out = {"reads": len(reads), "changes": len(changes),
           "reads_per_s": len(reads) / span_s if span_s > 0 else None}
    if len(intervals) < 2:
        out.update(median_ms=None, p10_ms=None, p90_ms=None, min_ms=None, max_ms=None)
        return out

    def q(p):
        return intervals[min(len(intervals) - 1, int(p * (len(intervals) - 1) + 0.5))]

    out.update(median_ms=q(0.5), p10_ms=q(0.1), p90_ms=q(0.9), min_ms=intervals[0],
               max_ms=intervals[-1])
    return out


def fmt(value, digits=1, unit=""):
    return "–" if value is None else f"{value:,.{digits}f}{unit}"


def refresh_line(r):
    if not r:
        return "not measured"
    if r.get("median_ms") is None:
        return f"not identifiable ({r.get('changes', 0)} changes in {r.get('reads', 0)} reads)"
    return (f"median {r['median_ms']:.1f} ms (p10 {r['p10_ms']:.1f}, p90 {r['p90_ms']:.1f}, "
            f"{r['changes']} changes in {r['reads']} reads)")


def fmt_pct(value):
    return "–" if value is None else f"{value:+.3f} %"


def format_markdown(meta, windows, exit_status, message):
    """results.md: a table ready to paste into docs/validation.md, then the details."""
    card = meta.get("gpu_name", "?")
    driver = meta.get("driver", "?")
    date = meta.get("date", "?")
    zeus = f"Zeus {meta['zeus_version']}" if meta.get("zeus_version") else "Zeus (missing)"
    lines = [
        f"### NVML: llem vs raw NVML counter vs {zeus}, {card}, driver {driver}, {date}",
        "",
        "| card | driver | date | window | s | avg W | llem J | NVML J | Zeus J "
        "| llem − NVML | llem − Zeus | goal ±0.5 % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w in windows:
        if w["name"] == "loaded":
            goal = "met" if w["within_goal_nvml"] and w.get("within_goal_zeus") else (
                "missed" if not w["within_goal_nvml"] or w.get("within_goal_zeus") is False
                else "NVML only (Zeus missing)")
        else:
            goal = "(not a goal)"
        avg_w = w["nvml_j"] / w["duration_s"] if w.get("nvml_j") and w.get("duration_s") else None
        lines.append(
            f"| {card} | {driver} | {date} | {w['name']} | {fmt(w.get('duration_s'), 2)} "
            f"| {fmt(avg_w, 1)} | {fmt(w.get('llem_j'), 3)} | {fmt(w.get('nvml_j'), 3)} "
            f"| {fmt(w.get('zeus_j'), 3)} | {fmt_pct(w.get('llem_vs_nvml_pct'))} "
            f"| {fmt_pct(w.get('llem_vs_zeus_pct'))} | {goal} |"
        )
    lines += [
        "",
        f"Verdict: {message} (exit {exit_status}).",
        "",
        "Differences are in % of the NVML figure. " + INTERPOLATION_NOTE,
        "",
        f"- Workload: {meta.get('workload', '?')}",
        f"- llem: `{meta.get('llem_command', '?')}`; {meta.get('llem_version', '?')}; "
        f"bundle {meta.get('bundle_commit', '?')}",
        f"- llem output lag vs the raw counter (diagnostic, not corrected for): "
        f"{fmt(meta.get('llem_lag_ms'), 0, ' ms') if meta.get('llem_lag_ms') is not None else 'not identifiable'} "
        f"(rms {fmt(meta.get('llem_lag_rms_j'), 3, ' J')}); "
        f"loaded window with that lag removed: llem − NVML "
        f"{fmt_pct(meta.get('loaded_lag_corrected_vs_nvml_pct'))}",
        f"- Power read by the trace: {meta.get('trace_power_source', '?')}; "
        f"Zeus: {meta.get('zeus_status', '?')}",
        f"- NVML energy counter refresh period: {refresh_line(meta.get('refresh'))}",
        f"- Edges: power held steady {meta.get('pad_s', '?')} s on both sides of every window "
        f"edge (idle before and after the idle window; load before and after the loaded one)",
        f"- Software: {meta.get('software', '?')}",
    ]
    for w in windows:
        edges = w.get("llem_edges")
        if edges:
            lines.append(
                f"- {w['name']}: llem samples around the edges {edges['start']['gap_ms']:.0f} ms "
                f"and {edges['end']['gap_ms']:.0f} ms apart"
            )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# Self-test (no GPU).
# ---------------------------------------------------------------------------------------


def self_test():
    failures, passed = [], [0]

    def check(name, condition, detail=""):
        print(f"  {'ok  ' if condition else 'FAIL'} {name}{': ' + str(detail) if detail else ''}")
        if condition:
            passed[0] += 1
        else:
            failures.append(name)

    # 1. Exact on a linear series, at samples and between them.
    s = [(i * 100_000_000, i * 10.0) for i in range(11)]  # 100 W, read every 100 ms
    check("interp at a sample", interpolate(s, 300_000_000)["value"] == 30.0)
    check("interp between", abs(interpolate(s, 350_000_000)["value"] - 35.0) < 1e-12)
    check("interp at first/last", interpolate(s, 0)["value"] == 0 and interpolate(s, 10**9)["value"] == 100)
    check("interp gap", interpolate(s, 350_000_000)["gap_ms"] == 100.0)
    for outside in (-1, 10**9 + 1):
        try:
            interpolate(s, outside)
            check(f"interp outside ({outside}) raises", False)
        except ValueError:
            check(f"interp outside ({outside}) raises", True)

    # 2. Jittered sampling of a power step (100 W then 700 W at t = 5 s): a window inside
    #    the steady part is exact; one straddling the step is off by at most one gap.
    import random

    rng = random.Random(7)
    def true_energy(t):  # J at t seconds
        return 100.0 * t if t < 5 else 500.0 + 700.0 * (t - 5)

    ts, t = [], 0.0
    while t < 40:
        ts.append(t)
        t += 0.1 + rng.uniform(-0.02, 0.02)
    series = [(int(x * 1e9), true_energy(x)) for x in ts]
    e, _ = window_energy(series, int(10.123e9), int(40.0e9 - 0.5e9))
    check("steady 700 W window exact", abs(e - 700.0 * (39.5 - 10.123)) < 1e-6, f"{e:.6f} J")
    e, detail = window_energy(series, int(4.95e9), int(5.05e9))
    check("window across a step bounded", abs(e - true_energy(5.05) + true_energy(4.95)) <= 600 * 0.12,
          f"{e:.3f} J, gaps {detail['start']['gap_ms']:.0f}/{detail['end']['gap_ms']:.0f} ms")

    # 3. The lag estimate recovers a known lag: llem = counter(t - 100 ms) - offset, with the
    #    power varying so the lag is observable, and the counter read at 10 Hz elsewhere.
    def energy(t):  # J, power 300 W + 200 W sin
        return 300.0 * t + 200.0 * (1 - math.cos(2 * math.pi * t / 3.0)) * 3.0 / (2 * math.pi)

    counter = [(int(x * 1e9), 1e6 + energy(x)) for x in [0.05 + 0.1 * i for i in range(300)]]
    llem = [(int(x * 1e9), energy(x - 0.1) - energy(0.3)) for x in [0.4 + 0.1 * i for i in range(250)]]
    lag, rms = estimate_lag(llem, counter)
    check("lag estimate ≈ 100 ms", lag is not None and abs(lag - 100) <= 4, f"{lag} ms, rms {rms}")
    steady = [(t, 300.0 * t / 1e9) for t, _ in counter]
    steady_llem = [(t, 300.0 * (t - 1e8) / 1e9 - 5.0) for t, _ in llem]
    lag, rms = estimate_lag(steady_llem, steady)
    check("lag not identifiable at constant power", lag is None, f"{lag}, rms {rms}")

    # 4. JSON line parsing.
    line = '{"t_ns": 123, "energy_j": 4.5, "power_w": 70.1, "device": "gpu0", "source": "nvml"}'
    check("parse line", parse_llem_line(line, "gpu0") == (123, 4.5, 70.1))
    check("other device skipped", parse_llem_line(line, "gpu1") is None)
    check("null energy skipped", parse_llem_line('{"t_ns":1,"energy_j":null,"device":"gpu0"}', "gpu0") is None)
    check("garbage skipped", parse_llem_line("totals over 3 s:", "gpu0") is None)

    # 5. Comparison, verdicts and the Markdown table.
    def window(name, llem_j, nvml_j, zeus_j):
        return compare({"name": name, "duration_s": 30.0, "llem_j": llem_j, "nvml_j": nvml_j,
                        "zeus_j": zeus_j})

    good = window("loaded", 20_050.0, 20_000.0, 20_001.0)  # +0.25 %, +0.245 %
    check("pct", abs(good["llem_vs_nvml_pct"] - 0.25) < 1e-9, good["llem_vs_nvml_pct"])
    check("verdict met", verdict(good, None)[0] == EXIT_OK, verdict(good, None)[1])
    bad = window("loaded", 20_120.0, 20_000.0, 20_000.0)  # +0.6 %
    check("verdict missed (NVML)", verdict(bad, None)[0] == EXIT_MISSED, verdict(bad, None)[1])
    bad_zeus = window("loaded", 20_090.0, 20_000.0, 19_980.0)  # NVML +0.45 %, Zeus +0.55 %
    check("verdict missed (Zeus)", verdict(bad_zeus, None)[0] == EXIT_MISSED, verdict(bad_zeus, None)[1])
    no_zeus = window("loaded", 20_010.0, 20_000.0, None)
    check("verdict partial without Zeus", verdict(no_zeus, "No module named 'zeus'")[0] == EXIT_PARTIAL,
          verdict(no_zeus, "No module named 'zeus'")[1])
    no_llem = window("loaded", None, 20_000.0, 20_000.0)
    check("verdict error without llem", verdict(no_llem, None)[0] == EXIT_ERROR)

    idle = window("idle", 700.5, 700.0, 700.2)
    meta = {"gpu_name": "NVIDIA H100 80GB HBM3", "driver": "580.159.04", "date": "2026-11-25",
            "zeus_version": "0.16.0", "llem_lag_ms": 98.0, "llem_lag_rms_j": 0.4}
    good["llem_edges"] = {"start": {"gap_ms": 100.2}, "end": {"gap_ms": 99.8}}
    md = format_markdown(meta, [idle, good], *verdict(good, None))
    row = [ln for ln in md.splitlines() if "| loaded |" in ln]
    check("markdown loaded row", len(row) == 1 and "20,050.000" in row[0] and "+0.250 %" in row[0]
          and "| met |" in row[0], row)
    check("markdown idle row", "| idle |" in md and "(not a goal)" in md)
    check("markdown says interpolation", "linear interpolation" in md)
    md_partial = format_markdown({**meta, "zeus_version": None}, [no_zeus], *verdict(no_zeus, "x"))
    check("markdown Zeus missing", "Zeus (missing)" in md_partial and "NVML only" in md_partial)
    check("results serialisable", bool(json.dumps({"windows": [idle, good], "meta": meta})))

    # 6. Refresh period: a counter refreshed every 20 ms, read every 1 ms.
    reads = [(i * 1_000_000, (i // 20) * 7) for i in range(2001)]
    r = refresh_stats(reads)
    check("refresh period 20 ms", r["median_ms"] == 20.0 and r["changes"] == 100, r)
    check("refresh reads per s", abs(r["reads_per_s"] - 1000.5) < 1, r["reads_per_s"])
    check("refresh not identifiable", refresh_stats([(0, 1), (1, 1), (2, 1)])["median_ms"] is None)
    check("refresh line", "median 20.0 ms" in refresh_line(r))

    # 7. The time budget refuses a phase that does not fit.
    t = [100.0]
    b = Budget(10, clock=lambda: t[0])
    b.need(9.5, "ok phase")
    t[0] += 5
    try:
        b.need(6, "too long")
        check("budget refuses", False)
    except OutOfTime as e:
        check("budget refuses", "too long" in str(e) and "5.0 s" in str(e), e)

    if failures:
        print("failed: " + ", ".join(failures))
    print(f"self-test: {passed[0]} passed, {len(failures)} failed")
    return 0 if not failures else 1


# ---------------------------------------------------------------------------------------
# The measurement (needs the GPU).
# ---------------------------------------------------------------------------------------


def text(value):
    """pynvml returns bytes in old releases, str in new ones."""
    return value.decode() if isinstance(value, bytes) else str(value)


class LlemMonitor:
    """`llem monitor` as a subprocess; a thread keeps every line and parses ours."""

    def __init__(self, llem, plugin_path, device, interval, out_dir):
        self.device = device
        self.series = []  # (t_ns, energy_j)
        self.power = []  # (t_ns, power_w)
        self.devices_seen = set()
        self.lines = 0
        self.first_energy = threading.Event()
        self.cache_dir = tempfile.mkdtemp(prefix="llem-cache-")
        env = dict(os.environ, LLEM_PLUGIN_PATH=plugin_path, LLEM_CACHE_DIR=self.cache_dir)
        self.command = [llem, "monitor", "--plugins", "nvml", "--interval", interval,
                        "--format", "jsonl"]
        self.stderr_path = os.path.join(out_dir, "llem.stderr")
        self.jsonl = open(os.path.join(out_dir, "llem.jsonl"), "w")
        self.stderr_file = open(self.stderr_path, "w")
        try:
            self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE,
                                         stderr=self.stderr_file, env=env, text=True, bufsize=1)
        except OSError as e:
            raise MeasureError(f"cannot start {llem}: {e}") from e
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.jsonl.write(line)
            self.lines += 1
            try:
                self.devices_seen.add(json.loads(line).get("device"))
            except (ValueError, AttributeError):
                pass
            parsed = parse_llem_line(line, self.device)
            if parsed:
                t_ns, energy_j, power_w = parsed
                self.series.append((t_ns, energy_j))
                if power_w is not None:
                    self.power.append((t_ns, power_w))
                self.first_energy.set()
        self.jsonl.flush()

    def stderr_text(self):
        self.stderr_file.flush()
        with open(self.stderr_path) as f:
            return f.read()

    def wait_started(self, timeout_s=60):
        """Until the first energy figure for our device; MeasureError if llem fails."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.first_energy.wait(0.2):
                return
            if self.proc.poll() is not None:
                self.reader.join(5)
                raise MeasureError(
                    f"llem monitor exited with status {self.proc.returncode} before giving an "
                    f"energy figure for {self.device}.\n--- llem stderr ---\n{self.stderr_text()}")
        self.stop()
        raise MeasureError(
            f"llem monitor gave no energy figure for {self.device} in {timeout_s} s "
            f"({self.lines} lines; devices seen: {sorted(map(str, self.devices_seen)) or 'none'})."
            f"\n--- llem stderr ---\n{self.stderr_text()}")

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        """Ctrl-C, as a person would: llem prints its totals to stderr and exits."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(10)
        self.jsonl.close()
        self.stderr_file.close()
        shutil.rmtree(self.cache_dir, ignore_errors=True)
        return self.proc.returncode


class Tracer(threading.Thread):
    """10 Hz trace of power, energy counter, SM clock and temperature, through pynvml.

    Runs in a thread of this process: the matmul loop synchronises every few tens of ms,
    which releases the GIL, so the trace keeps its pace.
    """

    def __init__(self, pynvml, handle, period_s=0.1):
        super().__init__(daemon=True)
        self.nvml, self.handle, self.period_ns = pynvml, handle, int(period_s * 1e9)
        self.rows = []
        self.phase = "start"
        self.halt = threading.Event()
        self.instant = self._instant_power_mw() is not None
        self.power_source = ("NVML_FI_DEV_POWER_INSTANT (instantaneous)" if self.instant else
                             "nvmlDeviceGetPowerUsage only (1 s average on Ampere and newer)")

    def _instant_power_mw(self):
        try:
            v = self.nvml.nvmlDeviceGetFieldValues(self.handle, [NVML_FI_DEV_POWER_INSTANT])[0]
        except Exception:
            return None
        if v.nvmlReturn != 0:
            return None
        kind = v.valueType
        value = {0: v.value.dVal, 1: v.value.uiVal, 2: v.value.ulVal, 3: v.value.ullVal,
                 4: v.value.sllVal, 5: v.value.siVal, 6: v.value.usVal}.get(kind)
        return float(value) if value is not None else None

    def _read(self, fn, *args):
        try:
            return fn(self.handle, *args)
        except Exception:
            return None

    def run(self):
        n = self.nvml
        next_ns = time.monotonic_ns()
        while not self.halt.is_set():
            t = time.monotonic_ns()
            instant = self._instant_power_mw() if self.instant else None
            avg = self._read(n.nvmlDeviceGetPowerUsage)
            energy = self._read(n.nvmlDeviceGetTotalEnergyConsumption)
            sm = self._read(n.nvmlDeviceGetClockInfo, n.NVML_CLOCK_SM)
            temp = self._read(n.nvmlDeviceGetTemperature, n.NVML_TEMPERATURE_GPU)
            self.rows.append({
                "t_ns": t, "phase": self.phase,
                "power_instant_w": None if instant is None else instant / 1000.0,
                "power_avg_w": None if avg is None else avg / 1000.0,
                "energy_counter_mj": energy, "sm_clock_mhz": sm, "temperature_c": temp,
            })
            next_ns += self.period_ns
            self.halt.wait(max(0.0, (next_ns - time.monotonic_ns()) / 1e9))

    def stop(self):
        self.halt.set()
        self.join(5)

    def write_csv(self, path):
        fields = ["t_ns", "t_s", "phase", "power_instant_w", "power_avg_w", "energy_counter_mj",
                  "sm_clock_mhz", "temperature_c"]
        t0 = self.rows[0]["t_ns"] if self.rows else 0
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            for r in self.rows:
                w.writerow({**r, "t_s": f"{(r['t_ns'] - t0) / 1e9:.3f}"})

    def summary(self, start_ns, end_ns):
        rows = [r for r in self.rows if start_ns <= r["t_ns"] <= end_ns]
        def stats(key):
            vals = [r[key] for r in rows if r[key] is not None]
            if not vals:
                return None
            return {"mean": sum(vals) / len(vals), "min": min(vals), "max": max(vals)}
        return {k: stats(k) for k in ("power_instant_w", "power_avg_w", "sm_clock_mhz",
                                      "temperature_c")}


def nvml_index_of_cuda_device(torch, pynvml, cuda_index):
    """The NVML index of torch's cuda:<cuda_index>, by UUID.

    CUDA numbers GPUs fastest-first (unless CUDA_DEVICE_ORDER=PCI_BUS_ID) and after
    CUDA_VISIBLE_DEVICES; NVML numbers them by PCI bus. llem names GPUs gpu<NVML index>.
    """
    uuid = None
    try:
        uuid = str(torch.cuda.get_device_properties(cuda_index).uuid).lower()
    except Exception:
        pass
    if uuid:
        uuid = uuid.removeprefix("gpu-")
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            if text(pynvml.nvmlDeviceGetUUID(h)).lower().removeprefix("gpu-") == uuid:
                return i, f"matched by UUID GPU-{uuid}"
    if pynvml.nvmlDeviceGetCount() == 1:
        return 0, "the only GPU NVML sees"
    if not os.environ.get("CUDA_VISIBLE_DEVICES"):
        return cuda_index, "assumed equal to the CUDA index (no UUID match; check CUDA_DEVICE_ORDER)"
    raise MeasureError("cannot tell which NVML GPU is torch's cuda:%d (no UUID match); "
                       "run with CUDA_VISIBLE_DEVICES unset" % cuda_index)


def busy(torch, a, b, c, until_ns, batch):
    """bf16 matmuls on cuda until until_ns. Returns the number of products run.

    Synchronising after every `batch` products bounds the launch queue (so the loop ends
    within tens of ms of until_ns) and releases the GIL for the trace thread.
    """
    n = 0
    while time.monotonic_ns() < until_ns:
        for _ in range(batch):
            torch.matmul(a, b, out=c)
        torch.cuda.synchronize()
        n += batch
    return n


def probe_refresh(pynvml, handle, seconds):
    """Read the energy counter in a tight loop for `seconds`: see refresh_stats."""
    reads, end = [], time.monotonic_ns() + int(seconds * 1e9)
    while True:
        t = time.monotonic_ns()
        if t >= end:
            break
        reads.append((t, pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)))
    return refresh_stats(reads)


def llem_run_phases(args, state):
    """`llem run` with its own phases (idle baseline, warm-up, steady state) checked against
    the same NVML counter.

    TODO(issue 7, deliver 15): the kernel's run phases (open sources, idle baseline, warm-up,
    measured window, steady state) are being built; once `llem run` writes them into
    result.json, run it here on an energy-only manifest with a baseline phase and compare
    its baseline power and window energy with NVML over the same phase bounds (monotonic ns
    in result.json). Until then this hook records that it did not run.
    """
    state["llem_run"] = {"status": "not run",
                         "why": "llem run's phases (baseline, steady state) are not in this "
                                "build yet (issue 7, deliver 1/5/7); see llem_run_phases"}


def measure(args, state, budget):
    """The measurement. Fills `state` as it goes (meta, refresh, windows), so that a
    failure part-way still leaves every figure measured until then in results.json."""
    os.makedirs(args.out, exist_ok=True)
    meta = state["meta"]
    try:
        import torch
    except ImportError as e:
        raise MeasureError(f"cannot import torch: {e}") from e
    try:
        import pynvml
    except ImportError as e:
        raise MeasureError(f"cannot import pynvml (nvidia-ml-py): {e}") from e
    if not torch.cuda.is_available():
        raise MeasureError("torch sees no CUDA device")

    try:
        pynvml.nvmlInit()
        nvml_index, how = nvml_index_of_cuda_device(torch, pynvml, args.gpu)
        handle = pynvml.nvmlDeviceGetHandleByIndex(nvml_index)
    except pynvml.NVMLError as e:
        # NVMLError_LibraryNotFound, DriverNotLoaded, ...: nothing to compare with.
        raise MeasureError(f"NVML is not usable here ({type(e).__name__}: {e}): no "
                           "libnvidia-ml.so.1 or no driver") from e
    try:
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except pynvml.NVMLError as e:
        raise MeasureError(f"GPU {nvml_index} has no NVML energy counter ({e}): pre-Volta or "
                           "vGPU; this validation compares counters") from e
    device = f"gpu{nvml_index}"
    meta.update({
        "date": datetime.date.today().isoformat(),
        "started_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "gpu_name": text(pynvml.nvmlDeviceGetName(handle)),
        "gpu_uuid": text(pynvml.nvmlDeviceGetUUID(handle)),
        "nvml_index": nvml_index, "cuda_index": args.gpu, "nvml_index_how": how,
        "llem_device": device,
        "driver": text(pynvml.nvmlSystemGetDriverVersion()),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "pad_s": args.pad_s,
        "deadline_s": args.deadline_s,
    })
    try:
        meta["power_limit_w"] = pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0
    except pynvml.NVMLError:
        pass
    print(f"GPU: cuda:{args.gpu} = NVML {nvml_index} ({how}): {meta['gpu_name']}, "
          f"driver {meta['driver']}; llem device {device}")

    # Zeus: optional. Its absence or failure is reported, not fatal.
    zeus = None
    try:
        import importlib.metadata
        from zeus.monitor import ZeusMonitor

        meta["zeus_version"] = importlib.metadata.version("zeus")
        # cpu_indices=[]: GPU only; Zeus would otherwise also try RAPL.
        zeus = ZeusMonitor(gpu_indices=[args.gpu], cpu_indices=[])
        meta["zeus_status"] = f"Zeus {meta['zeus_version']}, ZeusMonitor(gpu_indices=[{args.gpu}])"
    except Exception as e:  # ImportError, or Zeus failing to initialise on this machine
        state["zeus_error"] = f"{type(e).__name__}: {e}"
        meta["zeus_version"] = None
        meta["zeus_status"] = f"missing: {state['zeus_error']}"
        print(f"warning: Zeus unavailable ({state['zeus_error']}); comparing llem with NVML only")

    try:
        version = subprocess.run([args.llem, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError) as e:
        raise MeasureError(f"cannot run {args.llem}: {e}") from e
    meta["llem_version"] = version
    manifest = os.path.join(os.path.dirname(os.path.abspath(args.llem)), "MANIFEST.txt")
    if os.path.exists(manifest):
        with open(manifest) as f:
            meta["bundle_commit"] = next((ln.split(":", 1)[1].strip() for ln in f
                                          if ln.startswith("commit:")), "?")

    interval_s = parse_interval_s(args.interval)
    tail_s = max(0.6, 5 * interval_s)
    # Everything after llem's start, so a run that cannot fit is refused before it begins.
    planned = (args.settle_s + args.refresh_probe_s + args.idle_s + args.pad_s + args.warmup_s
               + args.load_s + args.pad_s + tail_s + 5)
    budget.need(planned, f"the measurement ({planned:.0f} s of phases)")

    # 1. llem monitor, for the whole experiment.
    llem = LlemMonitor(args.llem, args.plugin_path, device, args.interval, args.out)
    meta["llem_command"] = " ".join(["llem"] + llem.command[1:])
    print(f"started: {meta['llem_command']} (pid {llem.proc.pid})")
    tracer = None
    edges = {}
    try:
        llem.wait_started(timeout_s=min(60.0, max(1.0, budget.left() - planned)))
        print(f"llem monitor: first energy figure for {device} received")

        tracer = Tracer(pynvml, handle)
        meta["trace_power_source"] = tracer.power_source
        tracer.start()

        # 2. CUDA context and operands, then one product so cuBLAS is loaded before idle.
        tracer.phase = "setup"
        dev = torch.device(f"cuda:{args.gpu}")
        torch.manual_seed(0)
        n = args.size
        a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
        b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
        c = torch.empty(n, n, device=dev, dtype=torch.bfloat16)
        torch.matmul(a, b, out=c)
        torch.cuda.synchronize()
        meta["workload"] = (f"torch {torch.__version__} bf16 {n}×{n}×{n} matmul loop on "
                            f"cuda:{args.gpu}, synchronised every {args.batch}; idle "
                            f"{args.idle_s:g} s, warm-up {args.warmup_s:g} s (not measured), "
                            f"loaded {args.load_s:g} s; {args.pad_s:g} s of the same power on "
                            f"both sides of every edge")
        meta["software"] = (f"python {platform.python_version()}, torch {torch.__version__}, "
                            f"nvidia-ml-py {pkg_version('nvidia-ml-py')}, "
                            f"zeus {meta.get('zeus_version') or 'missing'}, {platform.platform()}")

        def edge(window, which):
            """One window edge, read the three ways as close together as possible."""
            torch.cuda.synchronize()
            t_ns = time.monotonic_ns()
            raw_mj = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            t_raw = time.monotonic_ns()
            zeus_result = None
            if zeus is not None:
                try:
                    if which == "start":
                        zeus.begin_window(window, sync_execution=False)
                    else:
                        zeus_result = zeus.end_window(window, sync_execution=False)
                except Exception as e:
                    state["zeus_error"] = f"{type(e).__name__} in Zeus {which} of {window}: {e}"
            edges[(window, which)] = {
                "t_ns": t_ns, "nvml_mj": raw_mj, "nvml_read_us": (t_raw - t_ns) / 1e3,
                "zeus_after_us": (time.monotonic_ns() - t_ns) / 1e3,
                "zeus": None if zeus_result is None else {
                    "time_s": zeus_result.time, "gpu_energy_j": zeus_result.gpu_energy.get(args.gpu)},
            }

        # 3. Settle (idle), measuring the counter's refresh period meanwhile, then the idle
        #    window, with idle on both sides of it.
        tracer.phase = "settle"
        settle_until = time.monotonic() + args.settle_s + args.refresh_probe_s
        if args.refresh_probe_s > 0:
            state["refresh"] = meta["refresh"] = probe_refresh(pynvml, handle, args.refresh_probe_s)
            print(f"NVML counter refresh period: {refresh_line(meta['refresh'])}")
        time.sleep(max(0.0, settle_until - time.monotonic()))
        print(f"idle window: {args.idle_s:g} s")
        tracer.phase = "idle"
        edge("idle", "start")
        time.sleep(args.idle_s)
        edge("idle", "end")
        tracer.phase = "idle-pad"
        time.sleep(args.pad_s)

        # 4. Warm-up, then the loaded window on the same loop, and the loop goes on after it.
        print(f"warm-up: {args.warmup_s:g} s")
        tracer.phase = "warmup"
        busy(torch, a, b, c, time.monotonic_ns() + int(args.warmup_s * 1e9), args.batch)
        print(f"loaded window: {args.load_s:g} s")
        tracer.phase = "loaded"
        edge("loaded", "start")
        t_load = time.monotonic_ns()
        products = busy(torch, a, b, c, t_load + int(args.load_s * 1e9), args.batch)
        edge("loaded", "end")
        elapsed = (time.monotonic_ns() - t_load) / 1e9
        tracer.phase = "loaded-pad"
        busy(torch, a, b, c, time.monotonic_ns() + int(args.pad_s * 1e9), args.batch)
        meta["loaded_tflops"] = 2 * n ** 3 * products / elapsed / 1e12
        print(f"loaded: {products} products, {meta['loaded_tflops']:.0f} TFLOP/s")

        # 5. Let llem write a few more lines so the last edge's pad has samples after it.
        tracer.phase = "tail"
        time.sleep(tail_s)
        if not llem.alive():
            raise MeasureError(f"llem monitor died during the run (status {llem.proc.returncode})."
                               f"\n--- llem stderr ---\n{llem.stderr_text()}")
    finally:
        # No alarm from here on: llem must be stopped, whatever stopped the run.
        budget.disarm()
        if tracer is not None:
            tracer.stop()
            # Written even when the run fails: the trace is what explains a failure.
            tracer.write_csv(os.path.join(args.out, "traces.csv"))
        meta["llem_exit_status"] = llem.stop()

    # 6. Figures per window.
    windows = state["windows"]
    for name in ("idle", "loaded"):
        start, end = edges[(name, "start")], edges[(name, "end")]
        w = {"name": name, "duration_s": (end["t_ns"] - start["t_ns"]) / 1e9,
             "start_t_ns": start["t_ns"], "end_t_ns": end["t_ns"],
             "nvml_j": (end["nvml_mj"] - start["nvml_mj"]) / 1000.0,
             "zeus_j": end["zeus"]["gpu_energy_j"] if end["zeus"] else None,
             "zeus_time_s": end["zeus"]["time_s"] if end["zeus"] else None,
             "edges": {"start": start, "end": end}}
        if w["nvml_j"] < 0:
            raise MeasureError(f"NVML counter went backwards in the {name} window (driver reload?)")
        try:
            w["llem_j"], w["llem_edges"] = window_energy(llem.series, start["t_ns"], end["t_ns"])
        except ValueError as e:
            w["llem_j"], w["llem_error"] = None, str(e)
        w["trace"] = tracer.summary(start["t_ns"], end["t_ns"])
        windows.append(compare(w))
    if all(w["llem_j"] is None for w in windows):
        raise MeasureError(f"llem gave no energy figure for {device} over either window "
                           f"({len(llem.series)} samples): " + "; ".join(
                               w.get("llem_error", "") for w in windows))

    # Diagnostic: how late llem's figures are against the raw counter, and what the loaded
    # window would read without that lag (reported, never used for the goal).
    counter = [(r["t_ns"], r["energy_counter_mj"] / 1000.0) for r in tracer.rows
               if r["energy_counter_mj"] is not None]
    lag_ms, lag_rms = estimate_lag(llem.series, counter)
    meta["llem_lag_ms"], meta["llem_lag_rms_j"] = lag_ms, lag_rms
    if lag_ms is not None:
        loaded = windows[1]
        shift = int(lag_ms * 1e6)
        try:
            corrected, _ = window_energy(llem.series, loaded["start_t_ns"] + shift,
                                         loaded["end_t_ns"] + shift)
            meta["loaded_lag_corrected_llem_j"] = corrected
            meta["loaded_lag_corrected_vs_nvml_pct"] = pct_of(corrected, loaded["nvml_j"])
        except ValueError:
            pass
    meta["llem_samples"] = len(llem.series)
    meta["interpolation"] = INTERPOLATION_NOTE
    meta["goal"] = f"|llem − NVML| and |llem − Zeus| ≤ {GOAL_PCT} % of NVML, loaded window"
    llem_run_phases(args, state)


def parse_interval_s(text_value):
    t = text_value.strip()
    for suffix, scale in (("ms", 1e-3), ("us", 1e-6), ("s", 1.0)):
        if t.endswith(suffix):
            return float(t[: -len(suffix)]) * scale
    return float(t) * 1e-3


def pkg_version(name):
    import importlib.metadata
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def write_results(out, state, status, message):
    """results.json, and results.md when there are windows to show. Never raises: it is
    the last thing that runs, on every path."""
    try:
        os.makedirs(out, exist_ok=True)
        doc = {"exit_status": status, "verdict": message, "error": state.get("error"),
               "meta": state["meta"], "windows": state["windows"],
               "refresh": state.get("refresh"), "llem_run": state.get("llem_run"),
               "zeus_error": state.get("zeus_error"),
               "elapsed_s": time.monotonic() - state["started"]}
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump(doc, f, indent=2, default=str)
        if len(state["windows"]) == 2:
            md = format_markdown(state["meta"], state["windows"], status, message)
            with open(os.path.join(out, "results.md"), "w") as f:
                f.write(md)
            print()
            print(md)
    except Exception as e:  # noqa: BLE001 - the exit status still says what happened
        print(f"error: could not write results.json: {e}", file=sys.stderr)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    bundle = os.environ.get("LLEM_GPU_BUNDLE") or os.path.join(root, ".gpu")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--self-test", action="store_true",
                   help="check the interpolation, comparison and formatting on synthetic series")
    p.add_argument("--out", default=os.environ.get("OUT") or os.path.join(here, "out"))
    p.add_argument("--llem", default=os.path.join(bundle, "llem"))
    p.add_argument("--plugin-path", default=os.path.join(bundle, "plugins"))
    p.add_argument("--interval", default="100ms", help="llem monitor's sampling interval")
    p.add_argument("--gpu", type=int, default=0, help="CUDA index of the GPU to load and measure")
    p.add_argument("--idle-s", type=float, default=10.0)
    p.add_argument("--warmup-s", type=float, default=10.0)
    p.add_argument("--load-s", type=float, default=30.0)
    p.add_argument("--settle-s", type=float, default=3.0)
    p.add_argument("--pad-s", type=float, default=2.0,
                   help="steady power kept on both sides of every window edge")
    p.add_argument("--refresh-probe-s", type=float, default=2.0,
                   help="tight-loop reads of the energy counter to measure its refresh period")
    p.add_argument("--deadline-s", type=float, default=420.0,
                   help="the whole run's time budget; exit 4 when it runs out")
    p.add_argument("--size", type=int, default=8192, help="matrix side of the bf16 products")
    p.add_argument("--batch", type=int, default=16, help="products between synchronisations")
    args = p.parse_args()

    if args.self_test:
        return self_test()

    budget = Budget(args.deadline_s)
    state = {"meta": {}, "windows": [], "started": time.monotonic(), "zeus_error": None}
    status, message = EXIT_ERROR, "did not finish"
    try:
        budget.arm()
        try:
            measure(args, state, budget)
        finally:
            budget.disarm()
        status, message = verdict(state["windows"][1], state["zeus_error"])
    except OutOfTime as e:
        status, message = EXIT_TIMEOUT, f"out of time: {e}"
    except MeasureError as e:
        status, message = EXIT_ERROR, f"could not measure: {e}"
    except Exception as e:  # noqa: BLE001 - any failure still gets exit 2 and a results.json
        import traceback

        traceback.print_exc()
        status, message = EXIT_ERROR, f"unexpected {type(e).__name__}: {e}"
    finally:
        if status not in (EXIT_OK, EXIT_MISSED, EXIT_PARTIAL):
            state["error"] = message
            print(f"error: {message}", file=sys.stderr)
        write_results(args.out, state, status, message)
    print(message)
    return status


if __name__ == "__main__":
    sys.exit(main())
