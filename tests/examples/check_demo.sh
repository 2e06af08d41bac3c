#!/usr/bin/env bash
# check_demo.sh DEMO DATA_DIR — make demo's program for one epoch (make test).
#
# The demo validates on images it holds out of the training set and touches
# the test set once at the end. When it validated on the test set, the last
# epoch's "val loss"/"val acc" equalled the final "test loss"/"test
# accuracy" to the printed digits; two different sets agree on both only by
# a coincidence of about 1 in 10^5. Also: the epoch trains (accuracy above
# 0.75 after one epoch; 0.865 here) and the run ends with the lines the
# README promises. Prints "N passed, N failed".
set -u
. "$(dirname "$0")/checks.sh"
demo=$1
data=$2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
run_demo "$out" 300 "the demo" "$demo" "$data" 1 2
read_figures "$out"
check "the demo prints an epoch line with validation figures and the test figures" \
    test -n "$val_loss" -a -n "$val_acc" -a -n "$test_loss" -a -n "$test_acc"
check "validation ($val_loss, $val_acc) is not the test set ($test_loss, $test_acc)" \
    test "$val_loss $val_acc" != "$test_loss $test_acc"
check "one epoch reaches test accuracy above 0.75 ($test_acc)" awk -v a="${test_acc:-0}" 'BEGIN { exit !(a > 0.75) }'
finish
