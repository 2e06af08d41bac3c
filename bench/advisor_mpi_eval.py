"""Offline check of the advisor's MPI ranking (bench/advisor_eval.py for
bench/advisor_mpi.py's runs): predictions from the library as it is now,
asked inside a job of each size as the run asked them, against the step
times the run measured.

    PARML_LIBRARY=$PWD/.build/release/libparml.so python3 bench/advisor_mpi_eval.py RUN.json --calibration F [--rows] [--only N ...]

--calibration names the calibration file measured with the run (its
process_* lines included, so nothing is measured again; bench/advisor_runs
keeps the runs' files). Layouts are matched by job size and name. A job of
k processes is started per size (mpirun --oversubscribe); its rank 0
writes the predictions, which this process merges.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import advisor as threads_bench  # noqa: E402
import parml  # noqa: E402


def worker(a):
    rank = int(os.environ["OMPI_COMM_WORLD_RANK"])
    size = int(os.environ["OMPI_COMM_WORLD_SIZE"])
    with open(a.run) as f:
        run = json.load(f)
    scenarios = {s["name"]: s for s in threads_bench.scenario_list()}
    out = {}
    for i, ms in enumerate(run["scenarios"]):
        if a.only is not None and i not in a.only:
            continue
        s = scenarios[ms["name"]]
        advice = parml.advise(s["make"](), s["sample"], s["batch"], optimizer=s["optimizer"](), cache_dir=a.cache, show=False,
                              memory_budget=ms.get("budget", 0), deterministic=s["deterministic"], backend="mpi")
        out[ms["name"]] = dict(calibration=advice.text.splitlines()[0],
                               rows={threads_bench.layout_name(p): dict(predicted=p.step_seconds, terms=[
                                   p.compute_seconds, p.communication_seconds, p.bubble_seconds, p.optimizer_seconds,
                                   p.overhead_seconds], peak=p.peak_bytes) for p in advice.ranked})
    if rank == 0:
        with open(f"{a.out}.np{size}.json", "w") as f:
            json.dump(out, f)
    parml._capi.parml_mpi_finalize()


def parent(a):
    with open(a.run) as f:
        run = json.load(f)
    cache = tempfile.mkdtemp(prefix="parml-advisor-mpi-eval-")
    # The run's figures as they were, read on this machine whatever its load and CPU.
    threads_bench.pinned_calibration(a.calibration, cache)
    out = os.path.join(cache, "pred")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    sizes = run.get("sizes", [1, 2, 3, 4])
    for k in sizes:
        cmd = ["mpirun", "-np", str(k), "--oversubscribe", sys.executable, os.path.abspath(__file__), a.run, "--worker",
               "--cache", cache, "--out", out]
        if a.only is not None:
            cmd += ["--only"] + [str(i) for i in a.only]
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    preds = {}
    for k in sizes:
        with open(f"{out}.np{k}.json") as f:
            preds[k] = json.load(f)
    first_line = next(iter(preds[sizes[-1]].values()))["calibration"] if preds[sizes[-1]] else ""
    print(first_line)
    rhos, firsts = [], 0
    for i, ms in enumerate(run["scenarios"]):
        if a.only is not None and i not in a.only:
            continue
        pairs = []
        for r in ms["rows"]:
            p = preds[r["processes"]].get(ms["name"], {}).get("rows", {}).get(r["layout"])
            if p is not None:
                pairs.append((r, p))
        if not pairs:
            continue
        fastest = min(r["measured"] for r, _ in pairs)
        first = min(pairs, key=lambda rp: rp[1]["predicted"])[0]
        rho = threads_bench.spearman([p["predicted"] for _, p in pairs], [r["measured"] for r, _ in pairs])
        over = first["measured"] / fastest - 1
        rhos.append(rho)
        firsts += over <= 0.10
        print(f"{ms['name']:48s} n={len(pairs):2d}  first np{first['processes']} {first['layout']:24s} {100 * over:+6.1f} %  rho {rho:5.2f}")
        if a.rows:
            for r, p in sorted(pairs, key=lambda rp: rp[0]["measured"]):
                print(f"    np{r['processes']} {r['layout']:26s} pred {1e3 * p['predicted']:8.3f}  meas {1e3 * r['measured']:8.3f}  "
                      f"ratio {r['measured'] / p['predicted']:5.2f}  terms {[round(1e3 * x, 3) for x in p['terms']]}")
    if rhos:
        print(f"first within 10 %: {firsts} of {len(rhos)}; rho median {statistics.median(rhos):.3f}, min {min(rhos):.2f}, "
              f">= 0.8: {sum(1 for x in rhos if x >= 0.8)} of {len(rhos)}")
    shutil.rmtree(cache, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--calibration")
    ap.add_argument("--rows", action="store_true")
    ap.add_argument("--only", type=int, nargs="*", default=None)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a)
    else:
        if not a.calibration:
            ap.error("--calibration is required")
        parent(a)


if __name__ == "__main__":
    main()
