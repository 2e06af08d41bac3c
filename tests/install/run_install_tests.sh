#!/usr/bin/env bash
# run_install_tests.sh — packaging and ABI tests of libparml (docs/ABI.md).
#
# Builds nothing: installs the already-built .build/release/libparml.so with
# `make install` into temporary directories, then
#   1. a DESTDIR staging install: files, links, parml.pc, CMake files, .proto
#      files (with and without a proto/ directory), and `make uninstall`;
#   2. an install into a temporary prefix: SONAME libparml.so.<major>, no
#      dependency on the Swift toolchain, and a C host built with nothing but
#      `pkg-config --cflags --libs parml` that checks header and library
#      versions agree and trains; the experimental header's opt-in;
#   3. CMake: find_package(parml) and pkg_check_modules(... parml) hosts;
#   4. the committed ABI record equals the tree's ABI (tools/abi.py);
#   5. the ABI checker itself, on deliberately broken copies of the headers.
# Prints one line "N passed, N failed" at the end; exits nonzero on any failure.
#
# Example: make lib && bash tests/install/run_install_tests.sh
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LIB="$ROOT/.build/release/libparml.so"
[ -f "$LIB" ] || { echo "no $LIB: run 'make lib' first" >&2; exit 2; }
PYTHON=${PYTHON:-python3}
CC=${CC:-gcc}
ABI="$PYTHON $ROOT/tools/abi.py"
WORK=$(mktemp -d /tmp/parml_install_tests.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

version_part() { sed -n "s/^#define PARML_VERSION_$1  *\([0-9][0-9]*\).*/\1/p" "$ROOT/include/parml_types.h"; }
MAJOR=$(version_part MAJOR)
VERSION="$MAJOR.$(version_part MINOR).$(version_part PATCH)"

passed=0
failed=0
failures=()
pass() { passed=$((passed + 1)); echo "PASS  $1"; }
fail() { failed=$((failed + 1)); failures+=("$1"); echo "FAIL  $1"; }
indent() { sed 's/^/      /'; }
# check "description" command...: passes when the command succeeds; shows its output otherwise.
check() {
    local what=$1; shift
    if "$@" >"$WORK/check.log" 2>&1; then pass "$what"; else indent <"$WORK/check.log"; fail "$what"; fi
}
# The make the tests drive: quiet, in the repository root.
mk() { make --no-print-directory -s -C "$ROOT" "$@"; }

# ---------------------------------------------------------------------------
# 1. Staging install (DESTDIR) and uninstall
# ---------------------------------------------------------------------------
STAGE="$WORK/stage"
SP=/opt/parml-test   # the prefix the files are configured for
mkdir -p "$WORK/proto"
printf 'syntax = "proto3";\npackage parml;\nmessage Probe { int32 x = 1; }\n' >"$WORK/proto/probe.proto"
if mk install DESTDIR="$STAGE" PREFIX="$SP" PROTO_DIR="$WORK/proto" >"$WORK/make.log" 2>&1; then
    pass "make install DESTDIR=... PREFIX=$SP"
else
    indent <"$WORK/make.log"
    fail "make install DESTDIR=... PREFIX=$SP"
fi
L="$STAGE$SP/lib"
check "libparml.so.$VERSION is the built library" cmp "$LIB" "$L/libparml.so.$VERSION"
check "libparml.so.$MAJOR -> libparml.so.$VERSION" test "$(readlink "$L/libparml.so.$MAJOR")" = "libparml.so.$VERSION"
check "libparml.so -> libparml.so.$MAJOR" test "$(readlink "$L/libparml.so")" = "libparml.so.$MAJOR"
check "headers in include/" test -f "$STAGE$SP/include/parml.h" -a -f "$STAGE$SP/include/parml_types.h" \
    -a -f "$STAGE$SP/include/parml_experimental.h"
check "parml.pc names the prefix, not DESTDIR" grep -qx "prefix=$SP" "$L/pkgconfig/parml.pc"
check "parml.pc has Version: $VERSION" grep -qx "Version: $VERSION" "$L/pkgconfig/parml.pc"
check "parmlConfig.cmake and parmlConfigVersion.cmake in lib/cmake/parml" \
    test -f "$L/cmake/parml/parmlConfig.cmake" -a -f "$L/cmake/parml/parmlConfigVersion.cmake"
check "parmlConfig.cmake points at $SP/lib/libparml.so.$VERSION" \
    grep -q "\"$SP/lib\"" "$L/cmake/parml/parmlConfig.cmake"
check ".proto files installed under share/parml when present" cmp "$WORK/proto/probe.proto" "$STAGE$SP/share/parml/probe.proto"
if mk uninstall DESTDIR="$STAGE" PREFIX="$SP" >"$WORK/make.log" 2>&1; then
    left=$(find "$STAGE" \( -type f -o -type l \) | sed "s|^$STAGE||")
    if [ -z "$left" ]; then pass "make uninstall removes every installed file"; else
        echo "$left" | indent; fail "make uninstall left files behind"; fi
else
    indent <"$WORK/make.log"; fail "make uninstall"
fi
# No proto/ directory (this release): install succeeds and installs no schema.
if mk install DESTDIR="$WORK/stage2" PREFIX="$SP" PROTO_DIR="$WORK/no-such-proto" >"$WORK/make.log" 2>&1 &&
    [ ! -e "$WORK/stage2$SP/share/parml" ]; then
    pass "make install without .proto files succeeds and installs none"
else
    indent <"$WORK/make.log"; fail "make install without .proto files"
fi

# ---------------------------------------------------------------------------
# 2. Install into a prefix; a C host from pkg-config alone
# ---------------------------------------------------------------------------
P="$WORK/prefix"
check "make install PREFIX=<temporary prefix>" mk install PREFIX="$P"
readelf -d "$P/lib/libparml.so.$VERSION" >"$WORK/readelf.txt" 2>&1
soname_line=$(grep '(SONAME)' "$WORK/readelf.txt" | sed 's/^ *//')
echo "      readelf -d: $soname_line"
check "SONAME is libparml.so.$MAJOR (the ABI major only)" grep -q "Library soname: \[libparml.so.$MAJOR\]" "$WORK/readelf.txt"
ldd "$P/lib/libparml.so.$VERSION" >"$WORK/ldd.txt" 2>&1
indent <"$WORK/ldd.txt"
check "installed library needs nothing from the Swift toolchain (ldd)" \
    bash -c "! grep -Eq 'not found|swift' '$WORK/ldd.txt'"
check "readelf NEEDED lists no Swift library" bash -c "! grep '(NEEDED)' '$WORK/readelf.txt' | grep -qi swift"
# oneDNN (and its libgomp) are loaded with dlopen on the first convolution:
# a host without them still loads and trains with im2col.
check "readelf NEEDED lists no oneDNN or OpenMP" bash -c "! grep '(NEEDED)' '$WORK/readelf.txt' | grep -Eqi 'dnnl|gomp'"
check "no undefined oneDNN symbol (nm -D)" bash -c "! nm -D --undefined-only '$P/lib/libparml.so.$VERSION' | grep -q ' dnnl_'"
# The parml tool is installed beside the library and finds it by its rpath.
check "bin/parml --version runs against the installed library" \
    bash -c "'$P/bin/parml' --version | grep -qx 'parml $VERSION (library $VERSION)'"

export PKG_CONFIG_PATH="$P/lib/pkgconfig"
check "pkg-config --modversion parml = $VERSION" test "$(pkg-config --modversion parml 2>&1)" = "$VERSION"
PC_FLAGS=$(pkg-config --cflags --libs parml 2>"$WORK/pc.err") || { indent <"$WORK/pc.err"; fail "pkg-config --cflags --libs parml"; }
echo "      pkg-config --cflags --libs parml: $PC_FLAGS"
check "pkg-config --static --libs parml" pkg-config --static --libs parml
if [ "$(pkg-config --variable=prefix parml)" = "$P" ]; then pass "pkg-config prefix is the install prefix"; else
    fail "pkg-config prefix: $(pkg-config --variable=prefix parml)"; fi

# The host: cc host.c $(pkg-config --cflags --libs parml), nothing else.
# shellcheck disable=SC2086
if $CC "$HERE/host.c" $PC_FLAGS -o "$WORK/host" >"$WORK/build.log" 2>&1; then
    pass "C host compiles and links with only pkg-config's flags ($CC)"
else
    indent <"$WORK/build.log"; fail "C host compiles and links with only pkg-config's flags ($CC)"
fi
# shellcheck disable=SC2086
check "C host compiles warning-free (-std=c11 -Wall -Wextra -Werror -pedantic)" \
    $CC -std=c11 -Wall -Wextra -Werror -pedantic -fsyntax-only "$HERE/host.c" $(pkg-config --cflags parml)
check "host NEEDs libparml.so.$MAJOR (the SONAME), not libparml.so" \
    bash -c "readelf -d '$WORK/host' | grep -q 'Shared library: \[libparml.so.$MAJOR\]'"
# The installed copy, found through the prefix only (not the build tree, not /opt/swift).
if LD_LIBRARY_PATH="$P/lib" ldd "$WORK/host" 2>&1 | grep -q "libparml.so.$MAJOR => $P/lib/libparml.so.$MAJOR"; then
    pass "host resolves libparml.so.$MAJOR to the installed copy"
else
    LD_LIBRARY_PATH="$P/lib" ldd "$WORK/host" 2>&1 | indent; fail "host resolves libparml.so.$MAJOR to the installed copy"
fi
if env -i PATH=/usr/bin:/bin LD_LIBRARY_PATH="$P/lib" timeout 120 "$WORK/host" >"$WORK/host.log" 2>&1 &&
    grep -q '^host ok' "$WORK/host.log"; then
    indent <"$WORK/host.log"
    pass "C host runs: header and library versions agree ($VERSION), training lowers the loss"
else
    indent <"$WORK/host.log"; fail "C host runs against the installed library"
fi

# The experimental header: an error without the opt-in, clean with it (C and C++).
printf '#include <parml_experimental.h>\nint main(void) { return parml_version_number() > 0 ? 0 : 1; }\n' >"$WORK/exp.c"
# shellcheck disable=SC2086
if $CC -std=c11 -fsyntax-only "$WORK/exp.c" $(pkg-config --cflags parml) >"$WORK/exp.log" 2>&1; then
    fail "parml_experimental.h without PARML_EXPERIMENTAL_API must not compile"
elif grep -q 'define PARML_EXPERIMENTAL_API' "$WORK/exp.log"; then
    pass "parml_experimental.h without PARML_EXPERIMENTAL_API is an error naming the opt-in"
else
    indent <"$WORK/exp.log"; fail "parml_experimental.h without the opt-in: unexpected error"
fi
# shellcheck disable=SC2086
check "parml_experimental.h with -DPARML_EXPERIMENTAL_API compiles (C11, pedantic)" \
    $CC -std=c11 -Wall -Wextra -Werror -pedantic -DPARML_EXPERIMENTAL_API -fsyntax-only "$WORK/exp.c" $(pkg-config --cflags parml)
cp "$WORK/exp.c" "$WORK/exp.cpp"
# shellcheck disable=SC2086
check "parml_experimental.h with -DPARML_EXPERIMENTAL_API compiles (C++17)" \
    g++ -std=c++17 -Wall -Wextra -Werror -pedantic -DPARML_EXPERIMENTAL_API -fsyntax-only "$WORK/exp.cpp" $(pkg-config --cflags parml)

# ---------------------------------------------------------------------------
# 3. CMake: find_package(parml) and pkg_check_modules
# ---------------------------------------------------------------------------
if command -v cmake >/dev/null 2>&1; then
    if cmake -S "$HERE" -B "$WORK/cmake" -DCMAKE_PREFIX_PATH="$P" -DCMAKE_BUILD_TYPE=Release \
        >"$WORK/cmake.log" 2>&1 && cmake --build "$WORK/cmake" >>"$WORK/cmake.log" 2>&1; then
        grep -E 'parml .*pkg-config' "$WORK/cmake.log" | indent
        pass "CMake: find_package(parml 0.1) and pkg_check_modules(parml) hosts build"
    else
        tail -30 "$WORK/cmake.log" | indent
        fail "CMake: configure and build against the installed parml"
    fi
    for h in host_find_package host_pkg_config; do
        if [ -x "$WORK/cmake/$h" ] && LD_LIBRARY_PATH="$P/lib" timeout 120 "$WORK/cmake/$h" >"$WORK/host.log" 2>&1 &&
            grep -q '^host ok' "$WORK/host.log"; then
            pass "CMake host $h runs"
        else
            indent <"$WORK/host.log" 2>/dev/null; fail "CMake host $h runs"
        fi
    done
    mkdir -p "$WORK/cmake-v1"
    printf 'cmake_minimum_required(VERSION 3.16)\nproject(v1 C)\nfind_package(parml %s CONFIG REQUIRED)\n' \
        "$((MAJOR + 1)).0" >"$WORK/cmake-v1/CMakeLists.txt"
    if cmake -S "$WORK/cmake-v1" -B "$WORK/cmake-v1/build" -DCMAKE_PREFIX_PATH="$P" >"$WORK/cmake.log" 2>&1; then
        fail "CMake: find_package(parml $((MAJOR + 1)).0) must reject a $VERSION install"
    else
        pass "CMake: find_package(parml $((MAJOR + 1)).0) rejects a $VERSION install (another major)"
    fi
else
    fail "cmake is not installed (tools/install-deps.sh installs it)"
fi

check "make uninstall PREFIX=<temporary prefix>" mk uninstall PREFIX="$P"
left=$(find "$P" \( -type f -o -type l \) 2>/dev/null)
if [ -z "$left" ]; then pass "nothing left in the prefix"; else echo "$left" | indent; fail "files left in the prefix"; fi
unset PKG_CONFIG_PATH

# ---------------------------------------------------------------------------
# 4. The committed ABI record is the tree's ABI
# ---------------------------------------------------------------------------
cd "$ROOT" || exit 2
if $ABI dump --lib "$LIB" --cc "$CC" >"$WORK/fresh.abi" 2>"$WORK/dump.log"; then
    pass "ABI dump of the tree and the built library (exports = declarations, SONAME = major)"
else
    indent <"$WORK/dump.log"; fail "ABI dump of the tree"
fi
if $ABI check abi/parml.abi "$WORK/fresh.abi" >"$WORK/check.log" 2>&1; then
    indent <"$WORK/check.log"; pass "abi/parml.abi matches the tree (make check-abi)"
else
    indent <"$WORK/check.log"; fail "abi/parml.abi does not match the tree (make check-abi says why)"
fi
CLANG=$(command -v clang || { [ -x /opt/swift/usr/bin/clang ] && echo /opt/swift/usr/bin/clang; })
if [ -z "$CLANG" ]; then
    fail "clang: not found on PATH or at /opt/swift/usr/bin/clang (the Swift toolchain's; or Debian's clang package)"
else
    if $ABI dump --cc "$CLANG" >"$WORK/fresh-clang.abi" 2>"$WORK/dump.log" &&
        $ABI dump --cc "$CC" >"$WORK/fresh-cc.abi" 2>>"$WORK/dump.log" &&
        cmp -s "$WORK/fresh-clang.abi" "$WORK/fresh-cc.abi"; then
        pass "the record is the same computed with $CC and clang"
    else
        indent <"$WORK/dump.log"; diff "$WORK/fresh-cc.abi" "$WORK/fresh-clang.abi" | head -20 | indent
        fail "the record differs between $CC and clang"
    fi
fi

# ---------------------------------------------------------------------------
# 5. The checker on deliberately changed copies of the headers
# ---------------------------------------------------------------------------
# new_case NAME: a copy of include/ to edit, in $WORK/abi/NAME/include.
new_case() {
    CASE="$WORK/abi/$1"
    mkdir -p "$CASE"
    cp -r "$ROOT/include" "$CASE/include"
}
# edit FILE PYTHON-EXPR: s is the file's text; the expression's value replaces it
# (and must differ, so a stale pattern cannot make a case pass vacuously).
edit() {
    "$PYTHON" - "$CASE/include/$1" "$2" <<'EOF'
import sys
path, expr = sys.argv[1], sys.argv[2]
s = open(path).read()
t = eval(expr, {"s": s, "re": __import__("re")})
if t == s:
    sys.exit(f"edit left {path} unchanged: {expr}")
open(path, "w").write(t)
EOF
}
# set_version M m p: the copy's version macros (numbers and string).
set_version() {
    edit parml_types.h "re.sub(r'(MAJOR) \d+', r'\g<1> $1', re.sub(r'(MINOR) \d+', r'\g<1> $2', \
re.sub(r'(PATCH) \d+', r'\g<1> $3', re.sub(r'_STRING \"[^\"]*\"', '_STRING \"$1.$2.$3\"', s))))"
}
# expect_check WHAT RC PATTERN...: dump the copy, compare with the committed
# record; the exit code must be RC and the report must contain each PATTERN.
expect_check() {
    local what=$1 want=$2; shift 2
    if ! $ABI dump --include "$CASE/include" --cc "$CC" >"$CASE/fresh.abi" 2>"$CASE/out.log"; then
        indent <"$CASE/out.log"; fail "$what: dump failed"; return
    fi
    $ABI check "$ROOT/abi/parml.abi" "$CASE/fresh.abi" >"$CASE/out.log" 2>&1
    local rc=$? p
    for p in "$@"; do
        if ! grep -qF -- "$p" "$CASE/out.log"; then
            indent <"$CASE/out.log"; fail "$what: report lacks \"$p\""; return
        fi
    done
    if [ $rc -ne "$want" ]; then indent <"$CASE/out.log"; fail "$what: exit $rc, expected $want"; return; fi
    pass "$what"
}
# expect_update WHAT RC [--force]: `abi.py update` on a copy of the record;
# RC 0 must rewrite it (then check passes), RC 1 must leave it as it was.
expect_update() {
    local what=$1 want=$2; shift 2
    cp "$ROOT/abi/parml.abi" "$CASE/record.abi"
    $ABI update "$CASE/record.abi" "$CASE/fresh.abi" "$@" >"$CASE/up.log" 2>&1
    local rc=$?
    if [ $rc -ne "$want" ]; then indent <"$CASE/up.log"; fail "$what: update exit $rc, expected $want"; return; fi
    if [ "$want" -eq 0 ]; then
        if $ABI check "$CASE/record.abi" "$CASE/fresh.abi" >/dev/null 2>&1; then pass "$what"; else fail "$what: record not rewritten"; fi
    else
        if cmp -s "$CASE/record.abi" "$ROOT/abi/parml.abi"; then pass "$what"; else fail "$what: record changed although refused"; fi
    fi
}
DROPOUT_DECL='PARML_API parml_status parml_model_add_dropout(parml_model model, float p);'
NEW_DECL='PARML_API parml_status parml_model_add_softmax(parml_model model);'
BREAK="ABI BREAK without a MAJOR version bump"
NEEDS_MINOR="without a MINOR version bump"
STALE="is out of date"

new_case unchanged
expect_check "checker: an unchanged copy matches the record" 0 "is up to date"

new_case removed_symbol
edit parml.h "s.replace('$DROPOUT_DECL\n', '')"
expect_check "checker: removed function -> ABI break" 1 "removed  function parml_model_add_dropout" "$BREAK"
expect_update "checker: make abi refuses to record a removed function without a major bump" 1

new_case removed_symbol_minor
edit parml.h "s.replace('$DROPOUT_DECL\n', '')"
set_version "$MAJOR" 9 0
expect_check "checker: removed function with only a MINOR bump -> still an ABI break" 1 "$BREAK"

new_case removed_symbol_major
edit parml.h "s.replace('$DROPOUT_DECL\n', '')"
set_version $((MAJOR + 1)) 0 0
expect_check "checker: removed function with a MAJOR bump -> allowed, record out of date" 1 \
    "removed  function parml_model_add_dropout" "$STALE"
expect_update "checker: make abi records a removal after a MAJOR bump" 0

new_case reordered_field
edit parml_types.h "re.sub(r'(    float learning_rate;[^\n]*\n)(    float momentum;[^\n]*\n)', r'\2\1', s)"
expect_check "checker: reordered struct fields -> ABI break" 1 \
    "changed  field parml_optimizer_params.learning_rate: offset 12" \
    "changed  field parml_optimizer_params.momentum: offset 16" "$BREAK"

new_case changed_enum
edit parml_types.h "re.sub(r'(#define PARML_LOSS_MSE +)2', r'\g<1>7', s)"
expect_check "checker: changed enum value -> ABI break" 1 "changed  macro PARML_LOSS_MSE: 2 -> 7" "$BREAK"

new_case changed_prototype
edit parml.h "s.replace('$DROPOUT_DECL', '$DROPOUT_DECL'.replace('float p', 'double p'))"
expect_check "checker: changed parameter type -> ABI break" 1 \
    "changed  function parml_model_add_dropout: parml_status (parml_model, float) -> parml_status (parml_model, double)" "$BREAK"

new_case changed_typedef
edit parml_types.h "s.replace('typedef int32_t parml_status;', 'typedef int64_t parml_status;')"
expect_check "checker: changed typedef -> ABI break" 1 "changed  typedef parml_status: int32_t; size 4 -> int64_t; size 8" "$BREAK"

new_case added_no_bump
edit parml.h "s.replace('$DROPOUT_DECL\n', '$DROPOUT_DECL\n$NEW_DECL\n')"
expect_check "checker: added function without a MINOR bump -> error" 1 \
    "added    function parml_model_add_softmax = parml_status (parml_model)" "$NEEDS_MINOR"
expect_update "checker: make abi refuses an addition without a MINOR bump" 1
expect_update "checker: make abi FORCE=1 records it anyway" 0 --force

new_case added_patch_bump
edit parml.h "s.replace('$DROPOUT_DECL\n', '$DROPOUT_DECL\n$NEW_DECL\n')"
set_version "$MAJOR" "$(version_part MINOR)" 9
expect_check "checker: added function with only a PATCH bump -> error" 1 "$NEEDS_MINOR"

new_case added_enum_no_bump
edit parml_types.h "s.replace('#define PARML_LOSS_MSE ', '#define PARML_LOSS_HUBER 3\n#define PARML_LOSS_MSE ')"
expect_check "checker: new enum value without a MINOR bump -> error" 1 "added    macro PARML_LOSS_HUBER = 3" "$NEEDS_MINOR"

new_case added_minor_bump
edit parml.h "s.replace('$DROPOUT_DECL\n', '$DROPOUT_DECL\n$NEW_DECL\n')"
set_version "$MAJOR" $(($(version_part MINOR) + 1)) 0
expect_check "checker: added function with a MINOR bump -> allowed, record out of date" 1 "$STALE"
expect_update "checker: make abi records an addition after a MINOR bump" 0

new_case grown_struct
edit parml_types.h "s.replace('    int64_t decay_by_kind;', '    int64_t decay_by_kind;\n    int32_t new_knob;')"
expect_check "checker: a struct_size struct grown at the end, no bump -> error" 1 \
    "grown    struct parml_optimizer_params: size 104 align 8 -> size 112 align 8" \
    "added    field parml_optimizer_params.new_knob = offset 104" "$NEEDS_MINOR"
set_version "$MAJOR" $(($(version_part MINOR) + 1)) 0
expect_check "checker: the same with a MINOR bump -> allowed" 1 "$STALE"

new_case tail_padding_field
edit parml_types.h "s.replace('    int32_t grad_chunk;', '    int32_t grad_chunk;\n    int32_t new_knob;')"
set_version "$MAJOR" $(($(version_part MINOR) + 1)) 0
expect_check "checker: a field in padding inside the old struct -> ABI break" 1 \
    "added    field parml_strategy_params.new_knob = offset 76" "inside the old size" "$BREAK"

new_case inserted_field
edit parml_types.h "s.replace('    int32_t kind;', '    int32_t kind;\n    int32_t new_knob;')"
set_version "$MAJOR" $(($(version_part MINOR) + 1)) 0
expect_check "checker: a field inserted in the middle -> ABI break" 1 "changed  field parml_optimizer_params.learning_rate" "$BREAK"

new_case bad_version_string
edit parml_types.h "re.sub(r'_STRING \"[^\"]*\"', '_STRING \"9.9.9\"', s)"
if $ABI dump --include "$CASE/include" --cc "$CC" >/dev/null 2>"$CASE/out.log"; then
    fail "checker: PARML_VERSION_STRING disagreeing with the numbers must fail"
elif grep -q 'PARML_VERSION_STRING is "9.9.9"' "$CASE/out.log"; then
    pass "checker: PARML_VERSION_STRING disagreeing with the numbers is an error"
else indent <"$CASE/out.log"; fail "checker: bad version string: unexpected message"; fi

new_case undeclared_export
edit parml.h "s.replace('$DROPOUT_DECL\n', '')"
if $ABI dump --include "$CASE/include" --lib "$LIB" --cc "$CC" >/dev/null 2>"$CASE/out.log"; then
    fail "checker: an exported function missing from the header must fail"
elif grep -q 'exported but not declared in a header: parml_model_add_dropout' "$CASE/out.log"; then
    pass "checker: an exported function missing from the header is an error"
else indent <"$CASE/out.log"; fail "checker: undeclared export: unexpected message"; fi

new_case soname_mismatch
set_version $((MAJOR + 1)) 0 0
if $ABI dump --include "$CASE/include" --lib "$LIB" --cc "$CC" >/dev/null 2>"$CASE/out.log"; then
    fail "checker: a SONAME that disagrees with PARML_VERSION_MAJOR must fail"
elif grep -q "needs 'libparml.so.$((MAJOR + 1))'" "$CASE/out.log"; then
    pass "checker: a SONAME that disagrees with PARML_VERSION_MAJOR is an error"
else indent <"$CASE/out.log"; fail "checker: SONAME mismatch: unexpected message"; fi

# ---------------------------------------------------------------------------
if [ ${#failures[@]} -gt 0 ]; then
    echo "failed steps:"
    for f in "${failures[@]}"; do echo "  - $f"; done
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
