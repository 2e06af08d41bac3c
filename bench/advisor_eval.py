"""Offline check of the advisor's ranking: predictions from the library as it
is now against step times bench/advisor.py measured earlier, in seconds
rather than the minutes a measurement takes.

    PARML_LIBRARY=$PWD/.build/release/libparml.so python3 bench/advisor_eval.py bench/advisor.json [--cache-dir D | --calibration F] [--rows]
    python3 bench/advisor_eval.py --retest RUN_A.json RUN_B.json

For each scenario in the file: the current first choice and how much slower
it measured than the fastest measured layout, Spearman's rho between the
current predictions and the measured times, the worst memory error
against the trainer's report recorded there, and how long this advice
took (cached calibration). Layouts are matched by their
name ("dp2 pp1 tp1 m1 zero3"); a layout the library no longer ranks, or one
the file did not measure, is left out and counted. The measurements keep the
load they were taken under (bench/advisor.md says which runs were quiet),
and the predictions use the calibration in --cache-dir (measured there on
first use) or the file --calibration names (copied to a temporary directory
under this machine's CPU key, so that it is read whichever machine runs the
check; bench/advisor_runs/calibrations holds the ones measured with the runs
there): compare model changes with the same measurements and the same
calibration. The first line printed says whether the calibration was used
("cached") or measured again (another CPU, core count or library version).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "bindings", "python"))
import parml  # noqa: E402
from advisor import layout_name, layout_time, pinned_calibration, scenario_list, spearman  # noqa: E402  (bench/advisor.py's scenarios)


def row_time(r, statistic):
    """A measured row's time: as the run recorded it, or from its rounds by
    `statistic` where the run kept them (runs before 2026-12-07 did not)."""
    if statistic is None or "rounds" not in r:
        return r["measured"]
    return layout_time(r["rounds"], statistic)


def evaluate(measured_file, cache_dir, show_rows=False, only=None, statistic=None):
    with open(measured_file) as f:
        measured = json.load(f)
    scenarios = {s["name"]: s for s in scenario_list()}
    out = []
    probe = parml.advise(parml.Sequential([parml.Linear(4, 2)], seed=1), (4,), 2, cache_dir=cache_dir, show=False)
    print(probe.text.splitlines()[0])
    for i, ms in enumerate(measured["scenarios"]):
        if only is not None and i not in only:
            continue
        s = scenarios.get(ms["name"])
        if s is None:
            print(f"{ms['name']}: not among bench/advisor.py's scenarios, skipped")
            continue
        model = s["make"]()
        t0 = time.perf_counter()
        advice = parml.advise(model, s["sample"], s["batch"], optimizer=s["optimizer"](), cache_dir=cache_dir, show=False,
                              memory_budget=ms.get("budget", 0), deterministic=s["deterministic"], max_ranks=4,
                              cores=measured.get("cores", 0))
        latency = time.perf_counter() - t0
        times = {r["layout"]: row_time(r, statistic) for r in ms["rows"]}
        bytes_ = {r["layout"]: r["measured_bytes"] for r in ms["rows"]}
        pairs = [(layout_name(p), p) for p in advice.ranked if layout_name(p) in times]
        missing = len(advice.ranked) - len(pairs)
        if not pairs:
            print(f"{ms['name']}: no layout in common, skipped")
            continue
        fastest = min(times[n] for n, _ in pairs)
        first = pairs[0][0]
        rho = spearman([p.step_seconds for _, p in pairs], [times[n] for n, _ in pairs])
        mem = max(abs(p.peak_bytes - bytes_[n]) / bytes_[n] for n, p in pairs)
        out.append(dict(name=ms["name"], first=first, over=times[first] / fastest - 1, rho=rho, memory=mem, n=len(pairs), missing=missing,
                        load=ms.get("load"), latency=latency))
        print(f"{ms['name']:48s} n={len(pairs):2d}{f' (+{missing} unmeasured)' if missing else ''}  first {first:24s} "
              f"{100 * (times[first] / fastest - 1):+6.1f} %  rho {rho:5.2f}  memory <= {100 * mem:4.1f} %  advice {latency * 1e3:3.0f} ms  "
              f"(load {ms.get('load', 0):.1f})")
        if show_rows:
            for n, p in sorted(pairs, key=lambda np: times[np[0]]):
                t = times[n]
                print(f"    {n:26s} meas {t * 1e3:8.2f}  pred {p.step_seconds * 1e3:8.2f} ms  ratio {p.step_seconds / t:5.2f}  "
                      f"[c {p.compute_seconds * 1e3:.2f} comm {p.communication_seconds * 1e3:.2f} bub {p.bubble_seconds * 1e3:.2f} "
                      f"opt {p.optimizer_seconds * 1e3:.2f} ovh {p.overhead_seconds * 1e3:.2f}]  mem {p.peak_bytes / 2**20:.2f}/{bytes_[n] / 2**20:.2f} MiB")
    if out:
        within = sum(1 for r in out if r["over"] <= 0.10)
        rhos = [r["rho"] for r in out]
        print(f"first within 10 %: {within}/{len(out)}; rho median {statistics.median(rhos):.2f} (min {min(rhos):.2f}); "
              f"memory error <= {100 * max(r['memory'] for r in out):.1f} %; advice max {1e3 * max(r['latency'] for r in out):.0f} ms")
    return out


def retest(first_file, second_file, statistic=None):
    """Spearman's rho between two runs' measured times of the same layouts:
    how far the measurements themselves agree, the most any model's ranking
    can be expected to reach against either."""
    with open(first_file) as f:
        a = json.load(f)
    with open(second_file) as f:
        b = {s["name"]: s for s in json.load(f)["scenarios"]}
    rhos = []
    for s in a["scenarios"]:
        t = b.get(s["name"])
        if t is None:
            continue
        ta = {r["layout"]: row_time(r, statistic) for r in s["rows"]}
        tb = {r["layout"]: row_time(r, statistic) for r in t["rows"]}
        common = [k for k in ta if k in tb]
        if len(common) < 3:
            continue
        rho = spearman([ta[k] for k in common], [tb[k] for k in common])
        rhos.append(rho)
        spread = statistics.median(abs(ta[k] / tb[k] - 1) for k in common)
        print(f"{s['name']:48s} n={len(common):2d}  rho between the runs {rho:5.2f}  median |a/b - 1| {100 * spread:4.1f} %")
    if rhos:
        print(f"rho between the runs: median {statistics.median(rhos):.2f} (min {min(rhos):.2f})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("measured", nargs="+", help="bench/advisor.py outputs (advisor.json)")
    ap.add_argument("--cache-dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "parml-advisor-eval"),
                    help="calibration directory (measured on first use)")
    ap.add_argument("--rows", action="store_true", help="every layout: measured, predicted, terms")
    ap.add_argument("--only", type=int, nargs="*", default=None, help="these scenarios of each file (their order there)")
    ap.add_argument("--calibration", default=None, help="a calibration file to use (copied to a temporary directory)")
    ap.add_argument("--statistic", choices=["fastest", "median"], default=None,
                    help="recompute each layout's time from its rounds (runs that kept them) instead of the run's own")
    ap.add_argument("--strip-forms", action="store_true",
                    help="read --calibration's NN product rates as every form's (the model before the forms were calibrated)")
    ap.add_argument("--retest", action="store_true", help="compare the measurements of two files with each other instead (no library needed)")
    a = ap.parse_args()
    if a.retest:
        if len(a.measured) != 2:
            ap.error("--retest takes exactly two files")
        retest(*a.measured, statistic=a.statistic)
        return
    if a.calibration:
        a.cache_dir = tempfile.mkdtemp(prefix="parml-advisor-eval-")
        pinned_calibration(a.calibration, a.cache_dir, strip_forms=a.strip_forms)
    for f in a.measured:
        print(f"== {f}")
        evaluate(f, a.cache_dir, a.rows, a.only, a.statistic)


if __name__ == "__main__":
    main()
