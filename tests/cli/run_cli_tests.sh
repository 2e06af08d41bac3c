#!/usr/bin/env bash
# run_cli_tests.sh PARML MAKE_FILES — the parml command-line tool (make test-cli).
#
# Every subcommand on good files (a model, a dp 2 ZeRO-1 checkpoint, a tensor
# message, written by make_files) and on bad ones (a flipped byte, a cut
# file, an empty file, a text file, a missing path), checking exit codes
# (0 success, 1 the library refused, 2 usage), that a refusal prints the
# library's message and never crashes (no signal), and what info prints.
# Prints "N passed, N failed"; exits nonzero on any failure.
set -u
PARML=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
MAKE_FILES=$2
WORK=$(mktemp -d /tmp/parml_cli_tests.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS  $1"; }
fail() { failed=$((failed + 1)); echo "FAIL  $1"; sed 's/^/      /' "$WORK/out" | head -20; }

# expect LABEL CODE [grep PATTERN] -- COMMAND...: the exit code, and a line
# matching PATTERN in stdout+stderr when given.
expect() {
    local label=$1 code=$2 pattern=""
    shift 2
    if [ "$1" != "--" ]; then pattern=$1; shift; fi
    shift
    timeout 120 "$@" > "$WORK/out" 2>&1
    local rc=$?
    if [ $rc -ne "$code" ]; then fail "$label: exit $rc, expected $code"; return; fi
    if [ -n "$pattern" ] && ! grep -q -E -- "$pattern" "$WORK/out"; then fail "$label: no line matches '$pattern'"; return; fi
    pass "$label"
}

"$MAKE_FILES" "$WORK" > "$WORK/out" 2>&1 || { cat "$WORK/out"; echo "0 passed, 1 failed"; exit 1; }
M=$WORK/model.pb C=$WORK/ckpt.pb T=$WORK/tensor.pb
# Bad files: a flipped byte in the middle, the last 9 bytes cut, empty, text.
python3 - "$M" "$C" "$WORK" <<'PY'
import sys
model, ckpt, work = sys.argv[1:]
for src, name in ((model, "flipped_model.pb"), (ckpt, "flipped_ckpt.pb")):
    b = bytearray(open(src, "rb").read())
    b[len(b) // 2] ^= 0x10
    open(f"{work}/{name}", "wb").write(b)
open(f"{work}/cut.pb", "wb").write(open(ckpt, "rb").read()[:-9])
open(f"{work}/empty.pb", "wb").close()
open(f"{work}/text.pb", "w").write("not a parml file\n")
PY

# info
expect "info on a model: kind, checksum, layers, names" 0 "^model file, format version 2, .* crc32 verified" -- "$PARML" info "$M"
expect "info names the residual block's parameter tensors" 0 "^  2\.1\.weight \[16, 16\]" -- "$PARML" info "$M"
expect "info on a checkpoint: step, optimizer, layout" 0 "trained with: dp=2 tp=1 pp=1 zero_stage=1" -- "$PARML" info "$C"
expect "info on a checkpoint: the step count" 0 "^step 3, epoch 0, seed 11" -- "$PARML" info "$C"
expect "info on a tensor message" 0 "shape: \[2, 3\]" -- "$PARML" info "$T"
if "$PARML" info "$C" --json > "$WORK/info.json" 2>&1 && python3 - "$WORK/info.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["kind"] == "checkpoint" and d["checksum"] == "verified" and d["step"] == 3, d
assert d["optimizer"]["kind"] == "adamW" and d["layout"]["dp"] == 2 and d["layout"]["deterministic"] is True, d
assert d["optimizer_state"] == ["exp_avg", "exp_avg_sq"], d
assert [t["name"] for t in d["parameter_tensors"]][:3] == ["0.weight", "0.bias", "2.0.weight"], d
assert d["parameters"] == sum(l["parameters"] for l in d["layers"]) == 516, d
PY
then pass "info --json is valid JSON with the checkpoint's fields"; else cp "$WORK/info.json" "$WORK/out"; fail "info --json"; fi
expect "info on a flipped byte: damaged, exit 1" 1 "parml: .*flipped_model.pb: .*damaged" -- "$PARML" info "$WORK/flipped_model.pb"
expect "info on a cut checkpoint: exit 1" 1 "truncated|damaged" -- "$PARML" info "$WORK/cut.pb"
expect "info on an empty file: exit 1" 1 "empty|not a parml|truncated" -- "$PARML" info "$WORK/empty.pb"
expect "info on a text file: exit 1" 1 "parml: " -- "$PARML" info "$WORK/text.pb"
expect "info on a missing path: exit 1" 1 "parml: .*missing.pb" -- "$PARML" info "$WORK/missing.pb"
expect "info without FILE: usage, exit 2" 2 "FILE is missing" -- "$PARML" info
expect "info with an unknown option: exit 2" 2 "unknown option --frob" -- "$PARML" info "$M" --frob

# verify
expect "verify three good files" 0 "ckpt.pb: ok \(checkpoint\)" -- "$PARML" verify "$M" "$C" "$T"
expect "verify with one damaged file: exit 1, the others still reported" 1 "model.pb: ok \(model\)" -- \
    "$PARML" verify "$M" "$WORK/flipped_ckpt.pb"
expect "verify names the damaged file" 1 "flipped_ckpt.pb: .*damaged" -- "$PARML" verify "$WORK/flipped_ckpt.pb"

# convert
expect "convert a checkpoint's model to ONNX" 0 "written \(ONNX" -- \
    "$PARML" convert "$C" --to onnx "$WORK/m.onnx" --input-shape 1,8
if [ -s "$WORK/m.onnx" ]; then pass "convert wrote the ONNX file"; else fail "convert wrote no file"; fi
expect "convert to an unknown format: exit 2" 2 "no conversion to 'bf16'" -- \
    "$PARML" convert "$M" --to bf16 "$WORK/x" --input-shape 1,8
expect "convert with a shape the model refuses: exit 1" 1 "parml: " -- \
    "$PARML" convert "$M" --to onnx "$WORK/y.onnx" --input-shape 1,9
expect "convert with a malformed shape: exit 2" 2 "not sizes" -- \
    "$PARML" convert "$M" --to onnx "$WORK/y.onnx" --input-shape 1,x
expect "convert a damaged file: exit 1" 1 "damaged" -- \
    "$PARML" convert "$WORK/flipped_model.pb" --to onnx "$WORK/z.onnx" --input-shape 1,8

# plan
expect "plan dp 2 x pp 2: the stages and ranks" 0 "stage 1: layers 2:residual" -- \
    "$PARML" plan "$M" --dp 2 --pp 2 --micro-batches 2
expect "plan pp 2 interleaved: four runs of layers, two per stage" 0 "virtual stage 3 \(on stage 1\)" -- \
    "$PARML" plan "$M" --pp 2 --schedule interleaved --virtual-stages 2 --micro-batches 2
expect "plan interleaved with m not a multiple of pp: exit 1" 1 "multiple of pp" -- \
    "$PARML" plan "$M" --pp 2 --schedule interleaved --virtual-stages 2 --micro-batches 3
expect "plan tp 2: the column/row pair" 0 "tensor parallelism \(tp = 2" -- "$PARML" plan "$M" --tp 2
expect "plan with tp not dividing a width: exit 1, the library's reason" 1 "parml: .*model.pb: .*" -- \
    "$PARML" plan "$M" --tp 3 --split-classifier
expect "plan with zero 7: exit 1" 1 "zero_stage must be 0, 1, 2 or 3" -- "$PARML" plan "$M" --zero 7
expect "plan with a bad number: exit 2" 2 "needs a whole number" -- "$PARML" plan "$M" --dp two
expect "plan on a tensor message: exit 1" 1 "parml: " -- "$PARML" plan "$T"

# help, version, usage
for c in info verify convert plan; do expect "$c --help" 0 "usage: parml $c" -- "$PARML" "$c" --help; done
expect "--help" 0 "usage: parml COMMAND" -- "$PARML" --help
expect "--version names the library's version" 0 "^parml [0-9]+\.[0-9]+\.[0-9]+ \(library " -- "$PARML" --version
expect "no command: exit 2" 2 "usage: parml COMMAND" -- "$PARML"
expect "an unknown command: exit 2" 2 "unknown command 'frobnicate'" -- "$PARML" frobnicate
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
