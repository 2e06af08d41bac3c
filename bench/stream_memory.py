#!/usr/bin/env python3
"""Manual run (not a test, not make bench): one epoch over a sharded dataset
much larger than the memory the process may use, reporting throughput and
peak resident memory. tools/stream_memory_run.sh makes the data, limits the
memory with a cgroup and runs this inside it (docs/data.md, "Streaming").

usage: PYTHONPATH=bindings/python python3 bench/stream_memory.py SHARD_DIR [--batch 256] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time

import parml


def status(field: str) -> int:
    """A /proc/self/status value in bytes (VmRSS, VmHWM: kB there)."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("shards")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    with parml.open_shards(a.shards, seed=1, shuffle_buffer=16384) as data:
        n = len(data)
        dims = data.input_shape[1:]
        width = 1
        for d in dims:
            width *= d
        model = parml.Sequential([parml.Flatten(), parml.Linear(width, 64), parml.ReLU(), parml.Linear(64, data.num_classes)], seed=1)
        with parml.Trainer(model, optimizer=parml.SGD(0.01, momentum=0.9), strategy=parml.Strategy(blas_threads=a.threads)) as t:
            rss_before = status("VmRSS")
            t0 = time.perf_counter()
            h = t.fit(data, epochs=1, batch_size=a.batch, verbose=False)
            seconds = time.perf_counter() - t0
            rss_after = status("VmRSS")
    row = {
        "samples": n,
        "input_bytes": n * width,
        "seconds": round(seconds, 1),
        "samples_per_s": round(n / seconds, 1),
        "input_mb_per_s": round(n * width / seconds / 1e6, 1),
        "train_loss": round(h.epochs[-1].train_loss, 4),
        "train_accuracy": round(h.epochs[-1].train_accuracy, 4),
        "rss_before_fit_mib": round(rss_before / 2**20, 1),
        "rss_after_fit_mib": round(rss_after / 2**20, 1),
        "peak_rss_vmhwm_mib": round(status("VmHWM") / 2**20, 1),
    }
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
