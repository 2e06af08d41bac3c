#!/usr/bin/env bash
# fault_trials.sh BUILD_DIR [TRIALS] — repeated failure injection on the MPI
# backend (issue 8: 0 hangs in >= 50 trials per fault kind; make
# fault-trials-mpi). Each trial launches ParmlMPISelfTest under mpirun -np 2
# with one fault on the last rank:
#   stall  it stops communicating: the other's watchdog (WATCHDOG, 2 s) names it;
#   abort  it fails with a reason: the other reports the reason at once;
#   kill   it dies by SIGKILL: mpirun ends the job (Open MPI gives survivors
#          no error; they must not hang before that).
# A trial passes when the job ends nonzero within BOUND seconds with the
# expected text. Prints one line per kind: trials, passed, hangs (jobs the
# outer `timeout` had to stop), slowest end. Exits nonzero on any failure.
set -u
BUILD=$(cd "$1" && pwd)
TRIALS=${2:-50}
SELFTEST="$BUILD/ParmlMPISelfTest"
[ -x "$SELFTEST" ] || { echo "missing $SELFTEST (swift build -c release --product ParmlMPISelfTest)" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
WORK=$(mktemp -d /tmp/parml_fault_trials.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
# Bounds derived from the self-test's watchdog, as in run_mpi_tests.sh
# (issue 24, item 8): generous, since they only tell a hang from an end.
WATCHDOG=2
BOUND=$((10 * WATCHDOG))
HANG_LIMIT=$((30 * WATCHDOG))
status=0
for kind in stall abort kill; do
    case $kind in
    stall) pattern="timed out after $WATCHDOG.0 s waiting for rank 1" ;;
    abort) pattern="rank 1 failed: injected failure" ;;
    kill) pattern="process rank 1 .*exited on signal 9" ;;
    esac
    passed=0 hangs=0 slowest=0
    for ((i = 1; i <= TRIALS; i++)); do
        start=$(date +%s.%N)
        timeout "$HANG_LIMIT" mpirun -np 2 "$SELFTEST" "$kind" > "$WORK/out.txt" 2>&1
        rc=$?
        elapsed=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
        slowest=$(awk -v a="$slowest" -v b="$elapsed" 'BEGIN { print (b > a ? b : a) }')
        if [ "$rc" -eq 124 ]; then
            hangs=$((hangs + 1))
        elif [ "$rc" -ne 0 ] && grep -Eq "$pattern" "$WORK/out.txt" && awk -v e="$elapsed" -v b="$BOUND" 'BEGIN { exit !(e <= b) }'; then
            passed=$((passed + 1))
        else
            cp "$WORK/out.txt" "$WORK/failed-$kind-$i.txt"
            echo "trial $i of $kind: rc $rc after ${elapsed}s" >&2
            tail -5 "$WORK/out.txt" >&2
        fi
    done
    echo "MPI fault trials, $kind: $TRIALS trials, $passed ended in an error within ${BOUND}s, $hangs hangs, slowest ${slowest}s"
    [ "$passed" -eq "$TRIALS" ] || status=1
done
exit $status
