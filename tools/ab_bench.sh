#!/usr/bin/env bash
# A/B of the engine benchmarks (build/bench) between two builds of
# libparml.so, alternating runs so both see the same machine drift:
#   tools/ab_bench.sh OLD_LIB_DIR NEW_LIB_DIR [ROUNDS] [FILTER]
# OLD_LIB_DIR holds the baseline libparml.so.0 (e.g. a worktree of an older
# commit, built with `swift build -c release --product parml` and linked as
# libparml.so.0). Prints, per case, the median value of each and new/old.
set -euo pipefail
old=$1 new=$2 rounds=${3:-4} filter=${4:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for r in $(seq 1 "$rounds"); do
    for side in old new; do
        dir=$old; [ "$side" = new ] && dir=$new
        LD_LIBRARY_PATH=$dir ./build/bench "$work/$side-$r.json" "$filter" > /dev/null
    done
done
python3 - "$work" "$rounds" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
def load(side):
    runs = [json.load(open(f"{work}/{side}-{r}.json")) for r in range(1, rounds + 1)]
    out = {}
    for run in runs:
        for e in run["results"]:
            out.setdefault(e["name"], []).append((e["value"], e["ratio"]))
    return out
old, new = load("old"), load("new")
print(f"{'name':34} {'old value':>12} {'new value':>12} {'new/old':>8} {'old ratio':>10} {'new ratio':>10} {'new/old':>8}"
      f"   (medians of {rounds} alternating rounds)")
for name in old:
    a = statistics.median(v for v, _ in old[name]); b = statistics.median(v for v, _ in new[name])
    ra = statistics.median(r for _, r in old[name]); rb = statistics.median(r for _, r in new[name])
    q = lambda x, y: y / x if x else float("nan")
    print(f"{name:34} {a:12.1f} {b:12.1f} {q(a, b):8.3f} {ra:10.3f} {rb:10.3f} {q(ra, rb):8.3f}")
PY
