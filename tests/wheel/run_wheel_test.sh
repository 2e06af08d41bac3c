#!/usr/bin/env bash
# run_wheel_test.sh WHEEL_DIR [SDIST_DIR] — the wheel `make wheel` built,
# installed into a fresh venv outside the repository with PARML_LIBRARY unset
# (make test-wheel); then the sdist `make sdist` built, which pip installs by
# building the library with swift from the Swift package inside it.
#
# The venv sees the system's site-packages only for numpy (the wheel's one
# dependency, so nothing is downloaded); parml must come from the wheel, load
# the libparml.so inside it, find its .proto files, and train.
# Prints "N passed, N failed"; exits nonzero on any failure.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WHEEL=$(ls "$1"/parml-*.whl 2>/dev/null | head -1)
WORK=$(mktemp -d /tmp/parml_wheel_test.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS  $1"; }
fail() { failed=$((failed + 1)); echo "FAIL  $1"; [ -f "$WORK/out" ] && sed 's/^/      /' "$WORK/out" | tail -20; }

if [ -z "$WHEEL" ]; then echo "FAIL  no parml wheel in $1 (make wheel)"; echo "0 passed, 1 failed"; exit 1; fi
case "$(basename "$WHEEL")" in
  *-py3-none-linux_x86_64.whl) pass "the wheel is tagged for any Python 3 on Linux x86_64: $(basename "$WHEEL")" ;;
  *) fail "the wheel's tag: $(basename "$WHEEL")" ;;
esac
if python3 -m zipfile -l "$WHEEL" > "$WORK/out" 2>&1 && grep -q "parml/libparml.so" "$WORK/out" &&
    grep -q "parml/proto/parml.proto" "$WORK/out"; then
  pass "the wheel carries parml/libparml.so and parml/proto/parml.proto"
else
  fail "the wheel's contents"
fi
if python3 -m venv --system-site-packages "$WORK/venv" > "$WORK/out" 2>&1 &&
    "$WORK/venv/bin/python" -m pip install --quiet --no-deps --no-index "$WHEEL" > "$WORK/out" 2>&1; then
  pass "installed into a fresh venv (pip install --no-index)"
else
  fail "install into a fresh venv"
fi
mkdir -p "$WORK/elsewhere"
cat > "$WORK/elsewhere/use.py" <<'PY'
import filecmp, os, sys
import numpy as np
import parml

venv = sys.argv[1]
repo_proto = sys.argv[2]
assert parml.__file__.startswith(venv), f"parml came from {parml.__file__}, not the venv"
assert os.path.dirname(parml.library_path) == os.path.dirname(parml.__file__), parml.library_path
print(f"library {parml.library_path}")
proto = parml.proto_path()
assert str(proto).startswith(venv) and filecmp.cmp(proto / "parml.proto", repo_proto, shallow=False), proto
rng = np.random.default_rng(0)
centers = rng.normal(size=(3, 8)) * 3
y = np.arange(300) % 3
x = (centers[y] + rng.normal(size=(300, 8))).astype(np.float32)
model = parml.Sequential([parml.Linear(8, 32), parml.ReLU(), parml.Linear(32, 3)], seed=1)
with model, parml.Trainer(model, optimizer=parml.Adam(0.01), strategy=parml.Strategy(dp=2)) as t:
    t.fit(x, y, epochs=5, batch_size=32, verbose=False)
    acc = t.evaluate(x, y).accuracy
assert acc > 0.95, acc
print(f"trained: accuracy {acc:.3f}")
PY
if (cd "$WORK/elsewhere" && env -u PARML_LIBRARY -u PYTHONPATH "$WORK/venv/bin/python" use.py "$WORK/venv" \
      "$ROOT/proto/parml.proto") > "$WORK/out" 2>&1; then
  sed 's/^/      /' "$WORK/out"
  pass "outside the tree, PARML_LIBRARY unset: imports the wheel's library, finds its .proto, trains dp = 2"
else
  fail "using the installed wheel"
fi
SDIST=$(ls "$(cd "${2:-/nonexistent}" 2>/dev/null && pwd)"/parml-*.tar.gz 2>/dev/null | head -1)
if [ -n "$SDIST" ]; then
  if tar -tzf "$SDIST" > "$WORK/out" 2>&1 && grep -q "/swift/Package.swift$" "$WORK/out" &&
      grep -q "/swift/Sources/Parml/" "$WORK/out" && ! grep -q "/swift/.build" "$WORK/out"; then
    pass "the sdist carries the Swift package (swift/Package.swift, swift/Sources), no build output"
  else
    fail "the sdist's contents"
  fi
  if python3 -m venv --system-site-packages "$WORK/venv2" > "$WORK/out" 2>&1 &&
      (cd "$WORK/elsewhere" && env -u PARML_LIBRARY "$WORK/venv2/bin/python" -m pip install --quiet --no-deps \
        --no-build-isolation "$SDIST") > "$WORK/out" 2>&1 &&
      (cd "$WORK/elsewhere" && env -u PARML_LIBRARY -u PYTHONPATH "$WORK/venv2/bin/python" use.py "$WORK/venv2" \
        "$ROOT/proto/parml.proto") > "$WORK/out" 2>&1; then
    sed 's/^/      /' "$WORK/out"
    pass "pip install of the sdist builds the library with swift, and the package trains"
  else
    fail "pip install of the sdist"
  fi
else
  fail "no parml sdist in ${2:-(no SDIST_DIR given)} (make sdist)"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
