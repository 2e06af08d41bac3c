#!/usr/bin/env bash
# check_demo_cnn.sh DEMO DATA_DIR — make demo-cnn's program, cheaply (make
# test): one epoch on the first 4,000 training images (63 steps). It must
# print the epoch and test lines, learn (test accuracy above 0.6 where
# chance is 0.1; 0.73 here), keep validation apart from the test set, and
# save a model file that, loaded back, classifies the test set as the
# trainer did. Prints "N passed, N failed".
set -u
. "$(dirname "$0")/checks.sh"
demo=$1
data=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run_demo "$work/out" 300 "the CNN demo" "$demo" "$data" 1 4000 "$work/cnn.pb"
read_figures "$work/out"
loaded_acc=$(sed -n 's/^test accuracy of .* loaded back: \([0-9.]*\)$/\1/p' "$work/out")
check "the demo prints an epoch line with validation figures and the test figures" \
    test -n "$val_loss" -a -n "$val_acc" -a -n "$test_loss" -a -n "$test_acc"
check "validation ($val_loss, $val_acc) is not the test set ($test_loss, $test_acc)" \
    test "$val_loss $val_acc" != "$test_loss $test_acc"
check "63 steps reach test accuracy above 0.6 ($test_acc)" awk -v a="${test_acc:-0}" 'BEGIN { exit !(a > 0.6) }'
check "the saved model is a parml model file" bash -c "head -c 13 '$work/cnn.pb' | grep -q 'parml.model'"
check "loaded back, it classifies the test set as the trainer did ($loaded_acc)" \
    test -n "$loaded_acc" -a "$loaded_acc" = "$test_acc"
finish
