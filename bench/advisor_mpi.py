"""Strategy advisor benchmark on the MPI backend: bench/advisor.py's
scenarios, each layout of 1 to 4 ranks run as that many processes under
mpirun on this machine's cores, against the advisor's prediction made
inside a job of the same size (backend "mpi": the job measures its
collectives the first time and caches them beside the in-process figures).

Reproduce (writes bench/advisor_mpi.json; bench/advisor_report.py adds its
section to bench/advisor.md):

    swift build -c release --product parml
    PARML_LIBRARY=$PWD/.build/release/libparml.so python3 bench/advisor_mpi.py

A job of k processes advises and measures every layout of k ranks (a
trainer of the job takes all its processes), so a scenario's layouts come
from four jobs, one per size, sharing one calibration directory. Each of
--rounds rounds starts one job per size (in alternating order), which
measures every scenario's layouts once: a fresh trainer, one warm-up step
and --steps timed steps. A layout's time in a round is its slowest
process's fastest step, its time the fastest round's, its memory the
fullest process's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import advisor as threads_bench  # noqa: E402  (scenarios, measure_once, spearman, layout names)
import parml  # noqa: E402  (advisor.py put bindings/python on the path)


def worker(a):
    """One process of a job: advise inside the job, then every ranked layout, --rounds rounds."""
    rank = int(os.environ["OMPI_COMM_WORLD_RANK"])
    size = int(os.environ["OMPI_COMM_WORLD_SIZE"])
    out = []
    for i, s in enumerate(threads_bench.scenario_list()):
        if a.only is not None and i not in a.only:
            continue
        model = s["make"]()
        x, y = s["data"](s["batch"])
        budget = threads_bench.scenario_budget(s, model, a.cache)
        t0 = time.perf_counter()
        advice = parml.advise(model, s["sample"], s["batch"], optimizer=s["optimizer"](), cache_dir=a.cache, show=False,
                              memory_budget=budget, deterministic=s["deterministic"], backend="mpi")
        latency = time.perf_counter() - t0
        per_round, peaks = threads_bench.measure_rounds(advice.ranked, a.rounds, lambda p: measure_mpi(
            s["make"], p, s["optimizer"](), x, y, a.steps, s["deterministic"], rank))
        rows = [dict(layout=threads_bench.layout_name(p), predicted=p.step_seconds, measured=threads_bench.layout_time(t, "fastest"), rounds=t, predicted_bytes=p.peak_bytes,
                     measured_bytes=peak, terms=[p.compute_seconds, p.communication_seconds, p.bubble_seconds,
                                                 p.optimizer_seconds, p.overhead_seconds])
                for p, t, peak in zip(advice.ranked, per_round, peaks)]
        out.append(dict(index=i, name=s["name"], budget=budget, advice_seconds=latency, rows=rows,
                        excluded=len(advice.excluded), calibration=advice.text.splitlines()[0]))
        if rank == 0:
            print(f"[np {size}] [{i}] {s['name']}: {len(rows)} layouts", flush=True)
        with open(f"{a.out}.np{size}.rank{rank}.json", "w") as f:
            json.dump(out, f, indent=1)
    parml._capi.parml_mpi_finalize()


def measure_mpi(make, layout, optimizer, x, y, steps, deterministic, rank):
    """One round as bench/advisor.py's measure_once, on the MPI backend: a
    fresh trainer, one warm-up step, this process's fastest of `steps`
    steps, and its own bytes. A fixed count: processes that chose their
    own from their warm-up times would step different numbers of times."""
    strategy = layout.strategy(backend="mpi", deterministic=True) if deterministic else layout.strategy(backend="mpi")
    with parml.Trainer(make(), optimizer=optimizer, strategy=strategy) as t:
        t.step(x, y)
        best = float("inf")
        for _ in range(steps):
            t0 = time.perf_counter()
            t.step(x, y)
            best = min(best, time.perf_counter() - t0)
        peak = sum(t.memory(rank))
    return best, peak


def parent(a):
    cache = a.cache or tempfile.mkdtemp(prefix="parml-advisor-mpi-")
    tmp = tempfile.mkdtemp(prefix="parml-advisor-mpi-runs-")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    started = time.time()
    print(f"jobs' files: {tmp}", flush=True)
    # Rounds over the job sizes, in alternating order, so that the machine's
    # load coming and going hits every size alike (one job per size, each
    # over every scenario and layout once, had measured the sizes minutes apart).
    for rnd in range(a.rounds):
        for k in (a.sizes if rnd % 2 == 0 else list(reversed(a.sizes))):
            cmd = ["mpirun", "-np", str(k), "--oversubscribe", sys.executable, os.path.abspath(__file__), "--worker",
                   "--cache", cache, "--out", os.path.join(tmp, f"run.r{rnd}"), "--rounds", "1", "--steps", str(a.steps)]
            if a.only is not None:
                cmd += ["--only"] + [str(i) for i in a.only]
            print(" ".join(cmd), flush=True)
            subprocess.run(cmd, env=env, check=True)
    merge(a, tmp, cache, time.time() - started)


def merge(a, tmp, cache, seconds):
    # Merge: per scenario, every job's layouts; a layout's time in a round is
    # its slowest process's fastest step, its time the fastest round's; its
    # memory the fullest process's.
    by_scenario = {}
    for k in a.sizes:
        for rnd in range(a.rounds):
            per_rank = []
            for r in range(k):
                with open(os.path.join(tmp, f"run.r{rnd}.np{k}.rank{r}.json")) as f:
                    per_rank.append(json.load(f))
            for entries in zip(*per_rank):
                e0 = entries[0]
                sc = by_scenario.setdefault(e0["index"], dict(name=e0["name"], budget=e0["budget"], rows={}, advice_seconds=[],
                                                              excluded={}))
                # The slowest process's advice; the first round of a job size also measured its collectives.
                sc["advice_seconds"].append(max(e["advice_seconds"] for e in entries))
                sc["excluded"][k] = e0["excluded"]
                for j, row in enumerate(e0["rows"]):
                    t = max(e["rows"][j]["measured"] for e in entries)
                    b = max(e["rows"][j]["measured_bytes"] for e in entries)
                    old = sc["rows"].get((k, row["layout"]))
                    if old is None or t < old["measured"]:
                        sc["rows"][(k, row["layout"])] = dict(row, processes=k, measured=t)
                    kept = sc["rows"][(k, row["layout"])]
                    kept["measured_bytes"] = max(b, kept.get("measured_bytes", 0) if old else b)
    for sc in by_scenario.values():
        sc["rows"] = list(sc["rows"].values())
    results = []
    for i in sorted(by_scenario):
        sc = by_scenario[i]
        rows = sorted(sc["rows"], key=lambda r: r["predicted"])
        if not rows:
            continue
        fastest = min(r["measured"] for r in rows)
        rho = threads_bench.spearman([r["predicted"] for r in rows], [r["measured"] for r in rows])
        mem_err = max(abs(r["predicted_bytes"] - r["measured_bytes"]) / r["measured_bytes"] for r in rows)
        results.append(dict(name=sc["name"], budget=sc["budget"], ranked=len(rows), first=rows[0]["layout"],
                            first_over_fastest=rows[0]["measured"] / fastest - 1,
                            fastest=min(rows, key=lambda r: r["measured"])["layout"], spearman=rho, max_memory_error=mem_err,
                            advice_seconds=sorted(sc["advice_seconds"])[len(sc["advice_seconds"]) // 2],
                            slowest_advice_seconds=max(sc["advice_seconds"]), rows=rows))
        print(f"[{i}] {sc['name']}: first {rows[0]['layout']} (np {rows[0]['processes']}) +{100 * results[-1]['first_over_fastest']:.1f} % "
              f"over fastest, spearman {rho:.2f}, memory error <= {100 * mem_err:.1f} %", flush=True)
    with open(os.path.join(cache, "calibration-v2.txt")) as f:
        calibration = [line for line in f.read().splitlines() if line.startswith("process_")]
    summary = dict(backend="mpi", cores=os.cpu_count(), sizes=a.sizes, steps=a.steps, rounds=a.rounds,
                   seconds=seconds, process_calibration=calibration, scenarios=results)
    with open(a.out + ".json", "w") as f:
        json.dump(summary, f, indent=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", type=int, nargs="*", default=None, help="run these scenarios only (bench/advisor.py's numbering)")
    ap.add_argument("--sizes", type=int, nargs="*", default=[1, 2, 3, 4], help="job sizes (processes)")
    ap.add_argument("--cache", default=None, help="calibration directory (default: a fresh one)")
    ap.add_argument("--out", default=os.path.join(HERE, "advisor_mpi"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--merge-only", metavar="DIR", help="merge the jobs' files in DIR again (printed at the start of a run)")
    a = ap.parse_args()
    if a.worker:
        worker(a)
    elif a.merge_only:
        with open(a.out + ".json") as f:
            seconds = json.load(f)["seconds"]
        merge(a, a.merge_only, a.cache, seconds)
    else:
        parent(a)


if __name__ == "__main__":
    main()
