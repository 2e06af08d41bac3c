#!/usr/bin/env bash
# run_sanitizers.sh [asan|tsan|all] — parml's tests under the sanitizers
# (issue 8, docs/reliability.md). `make check-sanitizers` runs "all".
#
#   asan  AddressSanitizer + LeakSanitizer (+ UBSan on the library's C code):
#         1. SwiftPM builds everything with --sanitize=address in .build-asan,
#            the C targets (element-wise kernels, BLAS loader) also with
#            -fsanitize=undefined; runs every Swift test (swift-testing);
#         2. builds the C ABI tests test_api, test_bad_input, test_files,
#            test_formats, test_tokens, test_metrics, test_callbacks and
#            test_concurrency with clang
#            -fsanitize=address,undefined against
#            that build's libparml.so and runs them.
#   tsan  ThreadSanitizer:
#         3. SwiftPM builds with --sanitize=thread in .build-tsan; runs the
#            threaded tests (collectives, failures, data, pipeline and
#            tensor parallelism, traces, fault trials);
#         4. builds test_concurrency and test_api with clang -fsanitize=thread
#            against that build's libparml.so and runs them.
#
# A configuration passes when its programs exit 0 and their output holds no
# sanitizer report (ERROR: AddressSanitizer / LeakSanitizer, "runtime error:"
# from UBSan, WARNING: ThreadSanitizer). Prints a table of reports per
# configuration at the end; exits nonzero if any configuration failed.
# Swift's own -sanitize=undefined is not supported on Linux by this toolchain
# (swiftc: "unsupported option '-sanitize=undefined' for target
# 'x86_64-unknown-linux-gnu'"); Swift code is checked by the debug build's
# overflow, bounds and exclusivity traps instead (a trap fails the run).
#
# Environment: SWIFT (default swift), SAN_CC (default: the clang beside swift,
# whose compiler-rt matches the Swift build's sanitizer runtimes).
set -u
# test_files reads the files parml 0.2 wrote from here.
export PARML_FIXTURES="$(cd "$(dirname "$0")/../fixtures" && pwd)"

MODE=${1:-all}
case "$MODE" in asan | tsan | all) ;; *)
    echo "usage: $0 [asan|tsan|all]" >&2
    exit 2
    ;;
esac

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT" || exit 2
SWIFT=${SWIFT:-swift}
if [ -z "${SAN_CC:-}" ]; then
    SAN_CC="$(dirname "$(readlink -f "$(command -v "$SWIFT")")")/clang"
fi
[ -x "$SAN_CC" ] || { echo "no clang at $SAN_CC (set SAN_CC)" >&2; exit 2; }
TOOLCHAIN_LIB="$(dirname "$(dirname "$SAN_CC")")/lib/swift/linux"
LOGS="$ROOT/build/sanitizers"
mkdir -p "$LOGS"
WORK=$(mktemp -d /tmp/parml_sanitizers.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

REPORT_RE='ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|WARNING: ThreadSanitizer|ThreadSanitizer: (reported|SEGV)'
CFLAGS=(-std=c11 -Wall -Wextra -Werror -pedantic -O1 -g -fno-omit-frame-pointer -pthread -fuse-ld=lld -I "$ROOT/include")
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# allocator_may_return_null: test_bad_input asks for impossible tensors and
# expects PARML_ERR_OUT_OF_MEMORY, as malloc returning NULL gives it.
ASAN_COMMON=detect_leaks=1:allocator_may_return_null=1
TSAN_COMMON="halt_on_error=0:second_deadlock_stack=1:suppressions=$HERE/tsan.supp"

rows=()
failed=0
# record CONFIG LOG RC: counts reports in LOG, adds a table row.
record() {
    local config=$1 log=$2 rc=$3 n
    n=$(grep -c -E "$REPORT_RE" "$log" 2>/dev/null)
    local verdict=pass
    if [ "$rc" -ne 0 ] || [ "$n" -ne 0 ]; then
        verdict="FAIL (exit $rc)"
        failed=$((failed + 1))
        grep -E -A25 "$REPORT_RE" "$log" | head -60 | sed 's/^/      /'
        grep -E '^(FAIL|✘)' "$log" | head -20 | sed 's/^/      /'
    fi
    rows+=("$(printf '%-58s %8s  %s' "$config" "$n" "$verdict")")
    echo "$verdict  $config: $n sanitizer reports (log: ${log#"$ROOT"/})"
}

# swift_config NAME SLUG SCRATCH TEST_ENV FILTER SWIFT_FLAGS...: build with
# the flags, run the tests (all, or those matching FILTER), record the result.
swift_config() {
    local name=$1 slug=$2 scratch=$3 env=$4 filter=$5
    shift 5
    local log="$LOGS/swift-$slug.log" start=$SECONDS
    echo "== Swift tests, $name: building in $scratch"
    "$SWIFT" build --scratch-path "$scratch" "$@" --build-tests >"$LOGS/build-$slug.log" 2>&1
    local rc=$?
    echo "      [build: $((SECONDS - start)) s]"
    if [ $rc -ne 0 ]; then
        tail -30 "$LOGS/build-$slug.log" | sed 's/^/      /'
        rows+=("$(printf '%-58s %8s  %s' "Swift tests, $name" "-" "FAIL (build)")")
        failed=$((failed + 1))
        return 1
    fi
    ln -sf libparml.so "$scratch/debug/libparml.so.0"
    local args=(--scratch-path "$scratch" "$@" --skip-build --disable-xctest)
    [ -n "$filter" ] && args+=(--filter "$filter")
    echo "== Swift tests, $name: running${filter:+ (--filter \"$filter\")}"
    start=$SECONDS
    env $env timeout 900 "$SWIFT" test "${args[@]}" >"$log" 2>&1
    rc=$?
    echo "      [tests: $((SECONDS - start)) s]"
    grep -E '^(✔|✘) Test run|^fault trials' "$log" | sed 's/^/      /'
    record "Swift tests, $name${filter:+ ($filter)}" "$log" "$rc"
}

# c_config NAME SLUG LIBDIR TEST_ENV CC_FLAGS -- PROGRAMS...
c_config() {
    local name=$1 slug=$2 libdir=$3 env=$4
    shift 4
    local flags=()
    while [ "$1" != "--" ]; do
        flags+=("$1")
        shift
    done
    shift
    for t in "$@"; do
        local exe="$WORK/$t.$slug" log="$LOGS/c-$t-$slug.log"
        if ! "$SAN_CC" "${CFLAGS[@]}" "${flags[@]}" "$ROOT/tests/c/$t.c" -o "$exe" \
            -L "$libdir" -lparml -lm -Wl,-rpath,"$libdir" "${EXTRA_LIBS[@]}" >"$log" 2>&1; then
            sed 's/^/      /' "$log" | tail -20
            rows+=("$(printf '%-58s %8s  %s' "C $t, $name" "-" "FAIL (build)")")
            failed=$((failed + 1))
            continue
        fi
        env $env timeout 300 "$exe" >"$log" 2>&1
        local rc=$?
        grep -E '^(bad-input cases|concurrency:|[0-9]+ passed)' "$log" | sed 's/^/      /'
        record "C $t, $name" "$log" "$rc"
    done
}

if [ "$MODE" = asan ] || [ "$MODE" = all ]; then
    swift_config "address+leak (+undefined on C targets)" asan .build-asan "ASAN_OPTIONS=$ASAN_COMMON" "" \
        --sanitize=address -Xcc -fsanitize=undefined
    if [ -f .build-asan/debug/libparml.so ]; then
        EXTRA_LIBS=()
        echo "== C ABI tests, clang -fsanitize=address,undefined against .build-asan/debug/libparml.so"
        c_config "address+leak+undefined" asan "$ROOT/.build-asan/debug" "ASAN_OPTIONS=$ASAN_COMMON" \
            -fsanitize=address,undefined -- test_api test_bad_input test_concurrency test_files test_formats \
            test_tokens test_metrics test_callbacks
    fi
fi

if [ "$MODE" = tsan ] || [ "$MODE" = all ]; then
    swift_config "thread" tsan .build-tsan "TSAN_OPTIONS=$TSAN_COMMON" "ParallelTests|DataParallel|FaultTrials|Pipeline|TraceTests|BalancedRowCut" \
        --sanitize=thread
    if [ -f .build-tsan/debug/libparml.so ]; then
        # The toolchain's TSan runtime carries libdispatch interceptors, which
        # need libdispatch and BlocksRuntime at link time.
        EXTRA_LIBS=(-L "$TOOLCHAIN_LIB" -ldispatch -lBlocksRuntime -Wl,-rpath,"$TOOLCHAIN_LIB")
        echo "== C ABI tests, clang -fsanitize=thread against .build-tsan/debug/libparml.so"
        c_config "thread" tsan "$ROOT/.build-tsan/debug" "TSAN_OPTIONS=$TSAN_COMMON" \
            -fsanitize=thread -- test_concurrency test_api
    fi
fi

echo
printf '%-58s %8s  %s\n' "sanitizer configuration" "reports" "result"
for r in "${rows[@]}"; do echo "$r"; done
echo "$((${#rows[@]} - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
