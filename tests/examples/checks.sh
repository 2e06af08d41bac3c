# checks.sh — sourced by the check_demo*.sh scripts (make test-examples).
#   check DESCRIPTION COMMAND...   runs COMMAND, prints PASS or FAIL, counts it
#   run_demo OUT SECONDS NAME COMMAND...
#                                  runs a demo into OUT and shows its output;
#                                  a demo that fails or times out ends the
#                                  script as one failure
#   read_figures OUT               sets val_loss, val_acc (the last epoch's),
#                                  test_loss and test_acc from a demo's output
#   finish                         prints "N passed, N failed"; its status is the verdict
passed=0
failed=0
check() {
    local what=$1
    shift
    if "$@"; then passed=$((passed + 1)); echo "PASS  $what"; else failed=$((failed + 1)); echo "FAIL  $what"; fi
}
run_demo() {
    local out=$1 seconds=$2 name=$3
    shift 3
    if ! timeout "$seconds" "$@" > "$out" 2>&1; then
        cat "$out"
        echo "FAIL  $name ran (exit nonzero)"
        echo "0 passed, 1 failed"
        exit 1
    fi
    sed 's/^/      /' "$out"
}
read_figures() {
    val_loss=$(sed -n 's/.*val loss \([0-9.]*\).*/\1/p' "$1" | tail -1)
    val_acc=$(sed -n 's/.*val acc \([0-9.]*\).*/\1/p' "$1" | tail -1)
    test_loss=$(sed -n 's/^test loss: \([0-9.]*\)$/\1/p' "$1")
    test_acc=$(sed -n 's/^test accuracy: \([0-9.]*\)$/\1/p' "$1")
}
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
