#!/usr/bin/env bash
# bench_mpi_train.sh BUILD_DIR — mlp_b512_dp2_mpi: the MLP of bench/mpi_train
# on dp = 2 over MPI (2 processes) against dp = 2 on threads, alternating the
# two three times (medians), as one JSON line for bench/results.json.
set -eu
BUILD=$1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
threads=() mpi=()
for _ in 1 2 3; do
    threads+=("$(timeout 300 "$BUILD/ParmlBenchMPITrain" threads)")
    mpi+=("$(timeout 300 mpirun -np 2 "$BUILD/ParmlBenchMPITrain" mpi)")
done
python3 - "${threads[@]}" "${mpi[@]}" <<'PY'
import json, statistics, sys
v = [float(a) for a in sys.argv[1:]]
t, m = statistics.median(v[:3]), statistics.median(v[3:])
print(json.dumps({"name": "mlp_b512_dp2_mpi", "value": round(m, 1), "unit": "samples/s",
                  "baseline": "dp=2 on the threads backend, ZeRO-1, 1 BLAS thread per rank (same run)",
                  "baseline_value": round(t, 1), "ratio": round(m / t, 3)}))
PY
