#!/usr/bin/env bash
# bench_comm_tcp.sh BUILD_DIR [RATE] — issue 20's modes on a slow link: the
# 784-1024-1024-10 MLP, batch 128, dp = 2 as two MPI processes talking over
# TCP on the loopback device (--mca btl tcp,self, btl_tcp_if_include lo).
# With RATE (for example 1gbit) and root, `tc` throttles the loopback device
# to that rate for the run (a token bucket; removed on exit), so the figures
# mean something for machines joined by such a link; without it the link is
# the kernel's loopback, far faster than any network.
#
# Modes, alternating in 3 rounds (medians of each run's median block):
#   fp32    plain data parallelism (ZeRO 0): the baseline
#   bf16    gradients summed in bf16 with error feedback
#   fp16    the same in IEEE half
#   local8  local SGD, parameters averaged every 8 steps
#   nocomm  no communication within the run: the bound
# Prints one JSON line per mode (ratio = samples/s over fp32's).
set -eu
BUILD=$1
RATE=${2:-}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
if [ -n "$RATE" ]; then
    tc qdisc add dev lo root tbf rate "$RATE" burst 256kb latency 100ms
    trap 'tc qdisc del dev lo root' EXIT
fi
MODES=(fp32 bf16 fp16 local8 nocomm)
declare -A runs
for _ in 1 2 3; do
    for m in "${MODES[@]}"; do
        runs[$m]+="$(timeout 600 mpirun -np 2 --mca btl tcp,self --mca btl_tcp_if_include lo \
            "$BUILD/ParmlBenchMPITrain" mpi 128 "$m" | tail -1) "
    done
done
python3 - "${RATE:-loopback}" "${runs[fp32]}" "${runs[bf16]}" "${runs[fp16]}" "${runs[local8]}" "${runs[nocomm]}" <<'PY'
import json, statistics, sys
link = sys.argv[1]
modes = ["fp32", "bf16", "fp16", "local8", "nocomm"]
med = {m: statistics.median(float(v) for v in sys.argv[2 + i].split()) for i, m in enumerate(modes)}
suffix = "" if link == "loopback" else "_" + link
for m in modes:
    name = "mlp_b128_dp2_mpi_tcp" + suffix + ("" if m == "fp32" else "_" + m)
    print(json.dumps({"name": name, "value": round(med[m], 1), "unit": "samples/s",
                      "baseline": f"dp=2 fp32 gradient all-reduce over the same TCP link ({link}), ZeRO 0, same run, alternating",
                      "baseline_value": round(med["fp32"], 1), "ratio": round(med[m] / med["fp32"], 3)}))
PY
