#!/usr/bin/env bash
# run_fuzz.sh TARGET SECONDS CORPUS_DIR — runs build/fuzz/TARGET (make
# fuzz-build) for SECONDS from the committed seeds in tests/fuzz/corpus/TARGET,
# adding the inputs it finds to CORPUS_DIR. Fails on a crash, a leak, a
# sanitizer report or a hang (libFuzzer's -timeout); the input is saved as
# build/fuzz/TARGET-crash-* (or -leak-, -timeout-, -oom-). Prints libFuzzer's
# "#N DONE cov: ... exec/s: ..." line, N being the number of executions, and
# keeps the whole log in build/fuzz/TARGET.log.
# FUZZ_FLAGS adds libFuzzer flags (the Makefile passes -timeout and -rss_limit_mb).
set -u
[ $# -eq 3 ] || { echo "usage: $0 TARGET SECONDS CORPUS_DIR" >&2; exit 2; }
target=$1 seconds=$2 corpus=$3
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIR="$ROOT/build/fuzz"
[ -x "$DIR/$target" ] || { echo "no $DIR/$target: run make fuzz-build" >&2; exit 2; }
mkdir -p "$corpus"
corpus=$(cd "$corpus" && pwd)
log="$DIR/$target.log"
echo "== $target: $seconds s (corpus $corpus)"
# shellcheck disable=SC2086
(cd "$DIR" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "./$target" ${FUZZ_FLAGS:-} -max_total_time="$seconds" -artifact_prefix="$DIR/$target-" \
    "$corpus" "$ROOT/tests/fuzz/corpus/$target" >"$log" 2>&1)
rc=$?
grep -E '^#[0-9]+[[:space:]]+DONE|^stat::(number_of_executed_units|peak_rss_mb)' "$log" | sed "s/^/   $target /"
if [ $rc -ne 0 ]; then
    grep -E -B2 -A30 'ERROR: |==[0-9]+== ?ERROR|runtime error:|ALARM|fuzz_(idx|strategy|files|formats):' "$log" | head -80
    grep -E 'Test unit written|artifact' "$log"
    echo "FAIL  $target (exit $rc; log ${log#"$ROOT"/})"
    exit 1
fi
echo "PASS  $target: 0 crashes, 0 leaks, 0 sanitizer reports, 0 timeouts"
