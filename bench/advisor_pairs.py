"""Pairs of layouts the advisor used to mispredict, measured interleaved
(A, B, A, B, ... in one process, so that a loaded machine's drift hits both
alike) and compared as differences and ratios with the advisor's
predictions, which use a calibration measured at the start of the same run.

    PARML_LIBRARY=$PWD/.build/release/libparml.so python3 bench/advisor_pairs.py [--rounds 9]

- ZeRO-2 and ZeRO-3 against ZeRO-1 at dp 2 (the 1024-wide MLP of
  bench/advisor.py's scenario 1): what the released gradient pages cost.
- pp 4 with 4 micro-batches against one rank (the small MLP, scenario 0):
  a pipeline with more ranks than cores.
- dp 3 and dp 4 against dp 2 (scenario 1): more ranks than cores.

A layout's time in a round is its fastest of --steps steps on a fresh
trainer (one warm-up step first, closed after); the figure is the median
over rounds. Other sets: --pair SCENARIO BASE OTHER... (each
layout named as bench/advisor.py names it; repeat --pair for more), e.g.

    python3 bench/advisor_pairs.py --rounds 7 --pair 1 "dp1 pp1 tp1 m1 zero0" "dp1 pp1 tp2 m1 zero0" "dp2 pp1 tp1 m1 zero3"
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "bindings", "python"))
import parml  # noqa: E402
from advisor import layout_name, scenario_list  # noqa: E402

PAIRS = [
    (1, "dp2 pp1 tp1 m1 zero1", ["dp2 pp1 tp1 m1 zero2", "dp2 pp1 tp1 m1 zero3"]),
    (0, "dp1 pp1 tp1 m1 zero0", ["dp1 pp4 tp1 m4 zero0", "dp1 pp2 tp1 m4 zero0"]),
    (1, "dp2 pp1 tp1 m1 zero0", ["dp3 pp1 tp1 m1 zero0", "dp4 pp1 tp1 m1 zero0"]),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--pair", nargs="+", action="append", metavar="ARG",
                    help="SCENARIO BASE OTHER...: measure these instead of the built-in pairs (repeatable)")
    a = ap.parse_args()
    pairs = PAIRS
    if a.pair:
        if any(len(p) < 3 for p in a.pair):
            ap.error("--pair needs a scenario index, a base layout and at least one other layout")
        pairs = [(int(p[0]), p[1], p[2:]) for p in a.pair]
    cache = tempfile.mkdtemp(prefix="parml-advisor-pairs-")
    load0 = os.getloadavg()[0]
    scenarios = scenario_list()
    for index, base, others in pairs:
        s = scenarios[index]
        advice = parml.advise(s["make"](), s["sample"], s["batch"], optimizer=s["optimizer"](), cache_dir=cache, show=False,
                              max_ranks=4, cores=os.cpu_count())
        by_name = {layout_name(p): p for p in advice.ranked}
        names = [base] + others
        x, y = s["data"](s["batch"])
        times = {n: [] for n in names}
        for _ in range(a.rounds):
            for n in names:
                # One trainer alive at a time, as bench/advisor.py measures:
                # with every layout's trainer kept open, the 784-256-256-10
                # MLP's one rank measured 0.88 ms a step beside its pipelines'
                # idle rank threads, against 0.49-0.54 alone.
                with parml.Trainer(s["make"](), optimizer=s["optimizer"](), strategy=by_name[n].strategy()) as t:
                    t.step(x, y)
                    best = float("inf")
                    for _ in range(a.steps):
                        t0 = time.perf_counter()
                        t.step(x, y)
                        best = min(best, time.perf_counter() - t0)
                times[n].append(best)
        med = {n: statistics.median(v) for n, v in times.items()}
        print(f"{s['name']} (load {os.getloadavg()[0]:.1f})")
        b = by_name[base]
        print(f"  {base:24s} measured {med[base] * 1e3:8.2f} ms  predicted {b.step_seconds * 1e3:8.2f} ms")
        for n in others:
            p = by_name[n]
            print(f"  {n:24s} measured {med[n] * 1e3:8.2f} ms  predicted {p.step_seconds * 1e3:8.2f} ms   "
                  f"minus the first: measured {(med[n] - med[base]) * 1e3:+7.2f} ms, predicted {(p.step_seconds - b.step_seconds) * 1e3:+7.2f} ms; "
                  f"ratio measured {med[n] / med[base]:.2f}, predicted {p.step_seconds / b.step_seconds:.2f}")
    with open(os.path.join(cache, "calibration-v2.txt")) as f:
        cal = f.read()
    print(f"load average at the start {load0:.1f}; calibration:\n" + cal)


if __name__ == "__main__":
    main()
