#!/usr/bin/env bash
# check_demo_gpt.sh DEMO TEXT — make demo-gpt's program for 100 iterations
# (make test): it reads the text, trains (validation loss from ln 65 = 4.17
# at the start to below 3.0 after 100 iterations; 2.6 here), saves a model
# that the library loads back, and prints a sample of characters from the
# text's vocabulary. Prints "N passed, N failed".
set -u
. "$(dirname "$0")/checks.sh"
demo=$1
text=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run_demo "$work/out" 600 "the GPT demo" "$demo" "$text" 100 "$work/gpt.pb"
first=$(sed -n 's/^step 0: .*val loss \([0-9.]*\).*/\1/p' "$work/out")
last=$(sed -n 's/^step 100: .*val loss \([0-9.]*\).*/\1/p' "$work/out")
check "the first validation loss is near ln 65 = 4.17 ($first)" python3 -c "import sys; sys.exit(not 3.9 < float('$first') < 4.5)"
check "100 iterations bring it below 3.0 ($last)" python3 -c "import sys; sys.exit(not float('$last') < 3.0)"
check "the saved model is a parml model file" bash -c "head -c 13 '$work/gpt.pb' | grep -q 'parml.model'"
sample=$(sed -n '/^---$/,/^---$/p' "$work/out" | sed '1d;$d')
check "a sample of 300 characters from the text's vocabulary is printed" python3 -c "
import sys
sample = sys.argv[1]
vocab = set(open(sys.argv[2]).read())
sys.exit(not (len(sample) >= 280 and set(sample) <= vocab))" "$sample" "$text"
finish
