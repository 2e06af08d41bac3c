#!/usr/bin/env bash
# run_c_tests.sh LIB_DIR — the C ABI tests of libparml, against LIB_DIR/libparml.so
# and the committed header in include/.
#
#   1. builds test_api, test_bad_input, test_no_alloc, test_concurrency, test_files,
#      test_checkpoint_kill, test_tokens, test_formats, test_metrics, test_callbacks, test_advisor and test_sample_weights with gcc and clang
#      (-std=c11 -Wall -Wextra -Werror -pedantic -O1) and runs every binary;
#      then test_exit_stalled (gcc) three times, exiting around the wake of a
#      rank a step gave up on;
#   2. runs test_api (and, for memory errors only, test_bad_input) under valgrind;
#   3. compiles and runs a C++17 file that includes parml.h (g++ -Wall -Wextra
#      -Werror -pedantic), and checks the header's comments are plain text;
#   4. checks that LIB_DIR/libparml.so exports only parml_* symbols, and exactly
#      the functions the header declares.
# Prints one line "N passed, N failed, N skipped" at the end, followed by the
# reason of each optional skip (a test's "skip: ..." line); exits nonzero on
# any failure. A required tool that is missing (clang, clang++, valgrind) is
# a failure that names the package to install, never a quiet skip.
#
# Example: tests/c/run_c_tests.sh .build/release
set -u
# test_files reads the files parml 0.2 wrote from here.
export PARML_FIXTURES="$(cd "$(dirname "$0")/../fixtures" && pwd)"

if [ $# -ne 1 ]; then
    echo "usage: $0 LIB_DIR   (the directory holding libparml.so, e.g. .build/release)" >&2
    exit 2
fi
LIB_DIR=$(cd "$1" 2>/dev/null && pwd) || { echo "no such directory: $1" >&2; exit 2; }
LIB="$LIB_DIR/libparml.so"
[ -f "$LIB" ] || { echo "no libparml.so in $LIB_DIR" >&2; exit 2; }
# Programs linked with -lparml load the library by its SONAME (libparml.so.0);
# `make lib` puts that link beside libparml.so (docs/ABI.md).
SONAME=$(readelf -d "$LIB" 2>/dev/null | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
if [ -n "$SONAME" ] && [ ! -e "$LIB_DIR/$SONAME" ]; then
    echo "no $SONAME in $LIB_DIR (the SONAME of libparml.so): run 'make lib', or ln -s libparml.so $LIB_DIR/$SONAME" >&2
    exit 2
fi

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
INCLUDE="$ROOT/include"
WORK=$(mktemp -d /tmp/parml_c_tests.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

CFLAGS=(-std=c11 -Wall -Wextra -Werror -pedantic -O1 -pthread -I "$INCLUDE")
LDFLAGS=(-L "$LIB_DIR" -lparml -lm -Wl,-rpath,"$LIB_DIR")
TESTS=(test_api test_bad_input test_no_alloc test_concurrency test_files test_checkpoint_kill test_tokens test_formats test_metrics test_callbacks test_advisor test_sample_weights)
TEST_TIMEOUT=120

passed=0
failed=0
failures=()
skips=()
pass() { passed=$((passed + 1)); echo "PASS  $1"; }
fail() { failed=$((failed + 1)); failures+=("$1"); echo "FAIL  $1"; }

# Records each "skip: REASON" line of $WORK/run.log as an optional skip of $1.
collect_skips() {
    local line
    while IFS= read -r line; do skips+=("$1: ${line#skip: }"); done < <(grep -E '^skip:' "$WORK/run.log")
}

# Indents a command's output so the step lines stand out.
indent() { sed 's/^/      /'; }

# Adds function names to "libparml.so(+0xOFFSET)" frames of test_no_alloc's stacks.
symbolize() {
    local demangle=cat
    if command -v swift-demangle >/dev/null 2>&1; then
        demangle="swift-demangle --simplified"
    elif [ -x /opt/swift/usr/bin/swift-demangle ]; then
        demangle="/opt/swift/usr/bin/swift-demangle --simplified"
    fi
    while IFS= read -r line; do
        if command -v addr2line >/dev/null 2>&1 && [[ $line =~ libparml\.so\(\+(0x[0-9a-f]+)\) ]]; then
            local fn
            fn=$(addr2line -f -e "$LIB" "${BASH_REMATCH[1]}" 2>/dev/null | head -1 | $demangle)
            echo "$line   <- $fn"
        else
            echo "$line"
        fi
    done
}

# ---------------------------------------------------------------------------
# Compilers
# ---------------------------------------------------------------------------
COMPILERS=(gcc)
CLANG=""
if command -v clang >/dev/null 2>&1; then
    CLANG=$(command -v clang)
elif [ -x /opt/swift/usr/bin/clang ]; then
    CLANG=/opt/swift/usr/bin/clang
fi
# The Swift toolchain that builds libparml ships clang and clang++, so they
# are required, not optional.
if [ -n "$CLANG" ]; then
    COMPILERS+=("$CLANG")
else
    fail "clang: not found on PATH or at /opt/swift/usr/bin/clang (the Swift toolchain's; or Debian's clang package)"
fi

# ---------------------------------------------------------------------------
# 1. Build and run each test with each compiler
# ---------------------------------------------------------------------------
for cc in "${COMPILERS[@]}"; do
    tag=$(basename "$cc")
    for t in "${TESTS[@]}"; do
        exe="$WORK/$t.$tag"
        if "$cc" "${CFLAGS[@]}" "$HERE/$t.c" -o "$exe" "${LDFLAGS[@]}" >"$WORK/build.log" 2>&1; then
            pass "build $t ($tag)"
        else
            indent <"$WORK/build.log"
            fail "build $t ($tag)"
            continue
        fi
        timeout "$TEST_TIMEOUT" "$exe" >"$WORK/run.log" 2>&1
        rc=$?
        if [ "$t" = test_no_alloc ]; then
            symbolize <"$WORK/run.log" | indent
        else
            # Failures and notes in full, the rest (counts) as summary lines.
            grep -E '^(FAIL|note|skip:|bad-input|concurrency:|checkpoint kill|[0-9]+ passed)|^   last error' "$WORK/run.log" | indent
        fi
        collect_skips "$t ($tag)"
        if [ $rc -eq 0 ]; then
            pass "run $t ($tag)"
        elif [ $rc -eq 124 ]; then
            fail "run $t ($tag): timed out after ${TEST_TIMEOUT}s"
        elif [ $rc -gt 128 ]; then
            fail "run $t ($tag): killed by signal $((rc - 128))"
        else
            fail "run $t ($tag): exit $rc"
        fi
    done
done

# The large float32 products on oneDNN (test_no_alloc sets PARML_GEMM=onednn in
# this mode, its other checks openblas): parml's own code allocates nothing there.
if [ -x "$WORK/test_no_alloc.gcc" ]; then
    timeout "$TEST_TIMEOUT" "$WORK/test_no_alloc.gcc" onednn-products >"$WORK/run.log" 2>&1
    rc=$?
    symbolize <"$WORK/run.log" | indent
    collect_skips "test_no_alloc (gcc, onednn-products)"
    if [ $rc -eq 0 ]; then pass "run test_no_alloc (gcc) onednn-products"; else fail "run test_no_alloc (gcc) onednn-products: exit $rc"; fi
fi

# The user's OPENBLAS_CORETYPE wins over parml's choice (test_api checks the
# core name equals it when it is set), and the user's OPENBLAS_NUM_THREADS is
# as it was after parml loaded OpenBLAS with one thread.
if [ -x "$WORK/test_api.gcc" ]; then
    OPENBLAS_CORETYPE=Haswell OPENBLAS_NUM_THREADS=3 PARML_TEST_OPENBLAS_NUM_THREADS=3 \
        timeout "$TEST_TIMEOUT" "$WORK/test_api.gcc" >"$WORK/run.log" 2>&1
    rc=$?
    grep -E '^(FAIL|note|skip:|[0-9]+ passed)' "$WORK/run.log" | indent
    collect_skips "test_api (gcc, OPENBLAS_CORETYPE=Haswell)"
    if [ $rc -eq 0 ]; then pass "run test_api (gcc) with OPENBLAS_CORETYPE=Haswell"; else fail "run test_api (gcc) with OPENBLAS_CORETYPE=Haswell: exit $rc"; fi
fi

# A host exiting as a rank that a step gave up on wakes (test_exit_stalled.c):
# before, during and just after the wake; the exit must wait for the rank.
if gcc "${CFLAGS[@]}" "$HERE/test_exit_stalled.c" -o "$WORK/test_exit_stalled" "${LDFLAGS[@]}" >"$WORK/build.log" 2>&1; then
    for offset in -0.05 0 0.002; do
        timeout "$TEST_TIMEOUT" "$WORK/test_exit_stalled" 0.8 "$offset" >"$WORK/run.log" 2>&1
        rc=$?
        grep -E '^(FAIL|PASS|[0-9]+ passed)' "$WORK/run.log" | indent
        if [ $rc -eq 0 ]; then
            pass "run test_exit_stalled: exit ${offset} s from the abandoned rank's wake"
        else
            fail "run test_exit_stalled: exit ${offset} s from the wake: exit $rc"
        fi
    done
else
    indent <"$WORK/build.log"
    fail "build test_exit_stalled"
fi

# ---------------------------------------------------------------------------
# 2. valgrind
# ---------------------------------------------------------------------------
# Valgrind 3.19 (Debian 12) cannot read the DWARF 5 debug info the Swift
# toolchain writes ("unhandled dwarf2 abbrev form code 0x25 ... Possibly
# corrupted debuginfo file. I can't recover.") and aborts. The tests therefore
# run against a copy of the library with its debug sections removed
# (objcopy --strip-debug keeps the symbol table, so stacks still show function
# names). The code is byte-for-byte the same.
# OPENBLAS_NUM_THREADS=1: OpenBLAS's worker threads only slow memcheck down.
# Under valgrind, CPUID reports no AVX-512, so parml picks Haswell kernels;
# test_api notes that instead of asserting SkylakeX.
# PARML_GEMM=openblas: oneDNN's JIT matmul kernels (the default for large
# products on AVX-512 CPUs) load whole vectors past the end of oneDNN's own
# packing buffers, which memcheck reports from code it has no symbols for; these runs check
# parml's memory, so the products stay on OpenBLAS here.
VALGRIND=$(command -v valgrind || true)
if [ -z "$VALGRIND" ]; then
    fail "valgrind: not installed (Debian package valgrind; tools/install-deps.sh installs it)"
else
    VG_LIB="$WORK/vglib"
    mkdir -p "$VG_LIB"
    if objcopy --strip-debug "$LIB" "$VG_LIB/libparml.so" 2>"$WORK/objcopy.log"; then
        [ -n "$SONAME" ] && ln -sf libparml.so "$VG_LIB/$SONAME"
        VG_LDFLAGS=(-L "$VG_LIB" -lparml -lm -Wl,-rpath,"$VG_LIB")
        VG_OPTS=(--leak-check=full --errors-for-leak-kinds=definite,indirect
                 --suppressions="$HERE/valgrind.supp" --child-silent-after-fork=yes)
        # test_api: memcheck errors, definite/indirect leaks and test failures all fail it.
        if gcc "${CFLAGS[@]}" -g "$HERE/test_api.c" -o "$WORK/test_api.vg" "${VG_LDFLAGS[@]}" 2>"$WORK/build.log"; then
            PARML_GEMM=openblas OPENBLAS_NUM_THREADS=1 timeout 300 "$VALGRIND" "${VG_OPTS[@]}" --error-exitcode=1 \
                "$WORK/test_api.vg" >"$WORK/vg.log" 2>&1
            rc=$?
            grep -E 'ERROR SUMMARY|definitely lost|indirectly lost|possibly lost|suppressed:|[0-9]+ passed|^FAIL' "$WORK/vg.log" | indent
            if [ $rc -eq 0 ]; then
                pass "valgrind test_api"
            else
                grep -E -A12 'Invalid|uninitialised|definitely lost in|indirectly lost in' "$WORK/vg.log" | head -80 | indent
                if grep -q 'ERROR SUMMARY: 0 errors' "$WORK/vg.log" && grep -q -E '^[0-9]+ passed, [1-9]' "$WORK/vg.log"; then
                    fail "valgrind test_api (exit $rc: memcheck clean, but test checks failed as in step 1)"
                else
                    fail "valgrind test_api (exit $rc)"
                fi
            fi
        else
            indent <"$WORK/build.log"
            fail "valgrind test_api: build"
        fi
        # test_bad_input: only memcheck's verdict counts here (exit 99); its own
        # pass/fail is step 1's. Bad input must not cause invalid reads or writes.
        if gcc "${CFLAGS[@]}" -g "$HERE/test_bad_input.c" -o "$WORK/test_bad_input.vg" "${VG_LDFLAGS[@]}" 2>"$WORK/build.log"; then
            PARML_GEMM=openblas OPENBLAS_NUM_THREADS=1 timeout 300 "$VALGRIND" "${VG_OPTS[@]}" --error-exitcode=99 \
                "$WORK/test_bad_input.vg" >"$WORK/vg.log" 2>&1
            rc=$?
            grep -E 'ERROR SUMMARY|definitely lost|indirectly lost' "$WORK/vg.log" | indent
            if [ $rc -ne 99 ] && [ $rc -ne 124 ] && [ $rc -le 128 ]; then
                pass "valgrind test_bad_input (memory errors and leaks only)"
            else
                grep -E -A12 'Invalid|uninitialised|definitely lost in|indirectly lost in' "$WORK/vg.log" | head -80 | indent
                fail "valgrind test_bad_input (exit $rc)"
            fi
        else
            indent <"$WORK/build.log"
            fail "valgrind test_bad_input: build"
        fi
    else
        indent <"$WORK/objcopy.log"
        fail "valgrind: objcopy --strip-debug failed"
    fi
fi

# ---------------------------------------------------------------------------
# 3. The header from C++17
# ---------------------------------------------------------------------------
CXXFLAGS=(-std=c++17 -Wall -Wextra -Werror -pedantic -I "$INCLUDE")
if g++ "${CXXFLAGS[@]}" "$HERE/header_cxx.cpp" -o "$WORK/header_cxx" -L "$LIB_DIR" -lparml -Wl,-rpath,"$LIB_DIR" \
    >"$WORK/build.log" 2>&1 && "$WORK/header_cxx" >"$WORK/run.log" 2>&1; then
    indent <"$WORK/run.log"
    pass "parml.h compiles and links as C++17 (g++)"
else
    indent <"$WORK/build.log"
    [ -f "$WORK/run.log" ] && indent <"$WORK/run.log"
    fail "parml.h as C++17 (g++)"
fi
CLANGXX=""
if [ -n "$CLANG" ] && [ -x "$(dirname "$CLANG")/clang++" ]; then CLANGXX="$(dirname "$CLANG")/clang++"; fi
if [ -n "$CLANGXX" ]; then
    if "$CLANGXX" "${CXXFLAGS[@]}" -fsyntax-only "$HERE/header_cxx.cpp" >"$WORK/build.log" 2>&1; then
        pass "parml.h compiles as C++17 (clang++)"
    else
        indent <"$WORK/build.log"
        fail "parml.h as C++17 (clang++)"
    fi
else
    fail "clang++: not found beside clang (${CLANG:-none}); the Swift toolchain ships it (or Debian's clang package)"
fi

# The doc comments Swift renders into the raw header are Markdown: a pair of
# '*' becomes <em>...</em> ("MAJOR<em>10000 + MINOR</em>100"). The committed
# header must read as plain C comments.
if grep -n -E '</?(em|strong|code|p|ul|li)>' "$INCLUDE/parml.h" >"$WORK/html.txt"; then
    indent <"$WORK/html.txt"
    fail "parml.h comments contain HTML from Swift's Markdown rendering (tools/gen_header.py)"
else
    pass "parml.h comments are plain text"
fi

# ---------------------------------------------------------------------------
# 4. Exported symbols
# ---------------------------------------------------------------------------
# Global symbols have uppercase nm types (T, D, B, R, W, V, i...); lowercase
# ones are local (the version script keeps them out of the ABI).
nm -D --defined-only "$LIB" >"$WORK/nm.txt" 2>&1 || fail "nm -D $LIB"
awk 'NF >= 3 && $2 ~ /^[A-Z]$/ { print $3 }' "$WORK/nm.txt" | sort >"$WORK/exported.txt"
grep -v '^parml_' "$WORK/exported.txt" >"$WORK/foreign.txt"
if [ -s "$WORK/exported.txt" ] && [ ! -s "$WORK/foreign.txt" ]; then
    pass "only parml_* symbols exported ($(wc -l <"$WORK/exported.txt") globals)"
else
    head -20 "$WORK/foreign.txt" | indent
    fail "libparml.so exports $(wc -l <"$WORK/foreign.txt") non-parml_ global symbols"
fi
# The header's functions and the library's exports are the same set.
grep -o 'PARML_API [^;]*' "$INCLUDE/parml.h" | grep -o 'parml_[a-z0-9_]*(' | tr -d '(' | sort -u >"$WORK/declared.txt"
if [ -s "$WORK/declared.txt" ] && cmp -s "$WORK/declared.txt" "$WORK/exported.txt"; then
    pass "header declares exactly the exported functions ($(wc -l <"$WORK/declared.txt"))"
else
    diff "$WORK/declared.txt" "$WORK/exported.txt" | sed 's/^</declared only:/; s/^>/exported only:/' | grep -v '^---' | indent
    fail "header declarations and library exports differ"
fi

# ---------------------------------------------------------------------------
if [ ${#failures[@]} -gt 0 ]; then
    echo "failed steps:"
    for f in "${failures[@]}"; do echo "  - $f"; done
fi
echo "$passed passed, $failed failed, ${#skips[@]} skipped"
for s in "${skips[@]}"; do echo "  skipped: $s"; done
[ "$failed" -eq 0 ]
