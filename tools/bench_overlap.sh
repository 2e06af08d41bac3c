#!/usr/bin/env bash
# bench_overlap.sh BUILD_DIR [RATE] — issue 20 item 3: the data-parallel
# all-reduce overlapped with backward, against the same all-reduce after
# backward, in one run (part of make bench).
#
# dp = 2, ZeRO 0, one BLAS thread per rank, for the 784-1024-1024-10 MLP
# (batch 128, SGD with momentum) and nanoGPT's character GPT (batch 12
# windows of 64 tokens, AdamW with clipping), on
#   mpi_tcp  two MPI processes over TCP on the loopback device (--mca btl
#            tcp,self, btl_tcp_if_include lo); with RATE (for example 1gbit)
#            and root, `tc` throttles the loopback device for the run (a
#            token bucket, removed on exit), as tools/bench_comm_tcp.sh does;
#   mpi_shm  two MPI processes on Open MPI's default (shared-memory) transport;
#   threads  two rank threads of one process (2 ranks on the 2 cores).
# Modes, each a trainer of its own in the same processes, taking 4-step
# blocks in turn for 15 rounds (ParmlBenchMPITrain ... compare), so that the
# shared machine's load falls on all alike:
#   fp32     buckets all-reduced after backward (overlap off): the baseline
#   overlap  the same buckets on a communication thread while backward goes on
#   nocomm   (MPI only) no communication within the run: the bound
# Three launches per figure; the value is the median of their median rates,
# the ratio the median of their medians of per-round ratios. Prints one JSON
# line per figure with the 1-minute load average at each launch.
set -eu
BUILD=$1
RATE=${2:-}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
if [ -n "$RATE" ]; then
    tc qdisc add dev lo root tbf rate "$RATE" burst 256kb latency 100ms
fi
BIN="$BUILD/ParmlBenchMPITrain"
OUT=$(mktemp)
trap 'rm -f "$OUT"; if [ -n "$RATE" ]; then tc qdisc del dev lo root; fi' EXIT
links=(mpi_tcp)
[ -z "$RATE" ] && links+=(mpi_shm threads)
for _ in 1 2 3; do
    for link in "${links[@]}"; do
        for model in "mlp 128" "gpt 12"; do
            set -- $model
            load=$(cut -d' ' -f1 /proc/loadavg)
            case $link in
            mpi_tcp) cmd=(mpirun -np 2 --mca btl tcp,self --mca btl_tcp_if_include lo "$BIN" mpi "$2" compare fp32,overlap,nocomm "$1") ;;
            mpi_shm) cmd=(mpirun -np 2 "$BIN" mpi "$2" compare fp32,overlap,nocomm "$1") ;;
            threads) cmd=("$BIN" threads "$2" compare fp32,overlap "$1") ;;
            esac
            timeout 600 "${cmd[@]}" | sed "s/^/$link $1 $load /" >> "$OUT"
        done
    done
done
python3 - "${RATE:-loopback}" "$OUT" <<'PY'
import json, statistics, sys
from collections import defaultdict
link_name, path = sys.argv[1], sys.argv[2]
rates, ratios, loads = defaultdict(list), defaultdict(list), defaultdict(list)
for line in open(path):
    link, model, load, mode, rate, ratio = line.split()
    rates[link, model, mode].append(float(rate))
    ratios[link, model, mode].append(float(ratio))
    if mode == "fp32":  # one line per launch
        loads[link, model].append(float(load))
suffix = "" if link_name == "loopback" else "_" + link_name
for (link, model, mode) in sorted(rates):
    if mode == "fp32":
        continue
    prefix = "mlp_b128" if model == "mlp" else "gpt_char"
    where = {"mpi_tcp": f"MPI over TCP ({link_name})", "mpi_shm": "MPI over shared memory",
             "threads": "the threads backend, 2 ranks on 2 cores"}[link]
    print(json.dumps({
        "name": f"{prefix}_dp2_{link}{suffix if link == 'mpi_tcp' else ''}_{mode}",
        "value": round(statistics.median(rates[link, model, mode]), 1),
        "unit": "samples/s" if model == "mlp" else "windows/s",
        "baseline": f"dp=2 fp32 all-reduce after backward (overlap off) on {where}, ZeRO 0, same processes, 4-step blocks in turn",
        "baseline_value": round(statistics.median(rates[link, model, "fp32"]), 1),
        "ratio": round(statistics.median(ratios[link, model, mode]), 3),
        "launch_ratios": [round(r, 3) for r in ratios[link, model, mode]],
        "load_1min": loads[link, model]}))
PY
