#!/bin/bash
# Manual run (issue 22; not part of make test): a synthetic dataset of 3x the
# memory limit streams one training epoch inside a cgroup memory limit, and
# bench/stream_memory.py reports throughput and peak RSS. The machine's RAM
# is too large for a 3x-RAM dataset on its disk, so the limit stands in for
# RAM: the cgroup charges the process and the page cache it reads through.
# Uses cgroup v1's memory controller (this host's; v2 has none here), as root.
# The data is written with its pages dropped from the cache (read from disk
# later) and deleted at the end.
#
# usage: sudo tools/stream_memory_run.sh [LIMIT_GIB=3] [WORKDIR=/tmp/parml-stream-3x]
#        (PARML_LIBRARY, PARML_PYTHONPATH: the library and bindings to run, default this checkout's)
set -euo pipefail
LIMIT_GIB=${1:-3}
DIR=${2:-/tmp/parml-stream-3x}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
LIB=${PARML_LIBRARY:-$ROOT/.build/release/libparml.so}
PYPATH=${PARML_PYTHONPATH:-$ROOT/bindings/python}
ROWS=$(( 3 * (LIMIT_GIB << 30) / 784 + 1 ))

parent=$(awk -F: '$2 == "memory" { print $3 }' /proc/self/cgroup)
CG=/sys/fs/cgroup/memory${parent%/}/parml-stream-$$
cleanup() {
  rm -rf "$DIR"
  [ -d "$CG" ] && rmdir "$CG" 2>/dev/null || true
}
trap cleanup EXIT

echo "writing $ROWS synthetic 28x28 uint8 samples ($(( ROWS * 784 >> 20 )) MiB of inputs) to $DIR"
t0=$(date +%s)
"$PY" "$ROOT/tools/make_shards.py" "$DIR" --synthetic "$ROWS" --rows-per-shard 100000 --drop-cache
echo "written in $(( $(date +%s) - t0 )) s; on disk: $(du -sh "$DIR" | cut -f1)"

mkdir "$CG"
echo $(( LIMIT_GIB << 30 )) > "$CG/memory.limit_in_bytes"
echo "memory limit: $(cat "$CG/memory.limit_in_bytes") bytes ($CG)"
# The child joins the cgroup before it execs Python: everything it maps or reads is charged there.
PARML_LIBRARY="$LIB" PYTHONPATH="$PYPATH" \
  sh -c "echo \$\$ > '$CG/cgroup.procs' && exec '$PY' '$ROOT/bench/stream_memory.py' '$DIR'"
echo "cgroup peak usage (process + page cache): $(( $(cat "$CG/memory.max_usage_in_bytes") >> 20 )) MiB, limit hits: $(cat "$CG/memory.failcnt")"
