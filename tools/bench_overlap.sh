#!/usr/bin/env bash
# bench_overlap.sh BUILD_DIR [RATE] — issue 20 item 3: the data-parallel
# all-reduce overlapped with backward, against the same all-reduce after
# backward, in one run (make bench-overlap).
#
# dp = 2, ZeRO 0, one BLAS thread per rank, for the 784-1024-1024-10 MLP
# (batch 128, SGD with momentum) and nanoGPT's character GPT (batch 12
# windows of 64 tokens, AdamW with clipping), on
#   mpi_tcp  two MPI processes over TCP on the loopback device (--mca btl
#            tcp,self, btl_tcp_if_include lo); with RATE (for example 1gbit)
#            and root, `tc` throttles the loopback device for the run (a
#            token bucket, removed on exit), as tools/bench_comm_tcp.sh does;
#   threads  two rank threads of one process (2 ranks on the 2 cores).
# Modes, alternating in 3 rounds (medians of each run's median block):
#   fp32     buckets all-reduced after backward (overlap off): the baseline
#   overlap  the same buckets on a communication thread while backward goes on
#   nocomm   (MPI only) no communication within the run: the bound
# Prints one JSON line per figure, with the 1-minute load average sampled
# before each round (the host is shared; ratios come from the same run).
set -eu
BUILD=$1
RATE=${2:-}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
if [ -n "$RATE" ]; then
    tc qdisc add dev lo root tbf rate "$RATE" burst 256kb latency 100ms
    trap 'tc qdisc del dev lo root' EXIT
fi
BIN="$BUILD/ParmlBenchMPITrain"
declare -A runs
loads=""
for _ in 1 2 3; do
    loads+="$(cut -d' ' -f1 /proc/loadavg) "
    for model in "mlp 128" "gpt 12"; do
        set -- $model
        for m in fp32 overlap nocomm; do
            runs[mpi_$1_$m]+="$(timeout 600 mpirun -np 2 --mca btl tcp,self --mca btl_tcp_if_include lo \
                "$BIN" mpi "$2" "$m" "$1" | tail -1) "
        done
        [ -n "$RATE" ] && continue  # the throttle does not touch threads
        for m in fp32 overlap; do
            runs[threads_$1_$m]+="$(timeout 600 "$BIN" threads "$2" "$m" "$1" | tail -1) "
        done
    done
done
args=()
for k in "${!runs[@]}"; do args+=("$k=${runs[$k]}"); done
python3 - "${RATE:-loopback}" "$loads" "${args[@]}" <<'PY'
import json, statistics, sys
link, loads = sys.argv[1], sys.argv[2].split()
runs = {k: [float(v) for v in vs.split()] for k, vs in (a.split("=", 1) for a in sys.argv[3:])}
suffix = "" if link == "loopback" else "_" + link
for backend in ("mpi", "threads"):
    for model, unit, rows in (("mlp", "samples/s", 128), ("gpt", "windows/s", 12)):
        base = runs.get(f"{backend}_{model}_fp32")
        if not base:
            continue
        b = statistics.median(base)
        for mode in ("overlap", "nocomm"):
            v = runs.get(f"{backend}_{model}_{mode}")
            if not v:
                continue
            name = ("mlp_b128" if model == "mlp" else "gpt_char") + "_dp2_" + ("mpi_tcp" + suffix if backend == "mpi" else "threads")
            name += "_overlap" if mode == "overlap" else "_nocomm"
            what = "MPI over TCP (" + link + ")" if backend == "mpi" else "the threads backend, 2 ranks on 2 cores"
            print(json.dumps({"name": name, "value": round(statistics.median(v), 1), "unit": unit,
                              "baseline": f"dp=2 fp32 all-reduce after backward (overlap off) on {what}, ZeRO 0, same run, alternating",
                              "baseline_value": round(b, 1), "ratio": round(statistics.median(v) / b, 3),
                              "rounds": {"baseline": base, "value": v}, "load_1min": [float(x) for x in loads]}))
PY
