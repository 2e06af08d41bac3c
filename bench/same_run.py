"""What the benchmarks of parml against PyTorch in one process share
(bench/gpt_char.py, bench/cnn_fmnist.py): their command line, and PyTorch
when it is installed."""

from __future__ import annotations

import argparse
import time


def parser(rounds: int, iters: int, warmup: int) -> argparse.ArgumentParser:
    """--rounds alternating blocks of --iters timed steps after --warmup,
    per --threads count; --jsonl FILE appends results for make bench."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=rounds)
    ap.add_argument("--iters", type=int, default=iters)
    ap.add_argument("--warmup", type=int, default=warmup)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--jsonl", help="append one result line per thread count to this file (make bench)")
    ap.add_argument("--clock", choices=["wall", "thread"], default="wall", help="thread: the calling thread's CPU time (--threads 1 only)")
    return ap


def clock(ap: argparse.ArgumentParser, a: argparse.Namespace):
    """The timer --clock names. thread: the calling thread's CPU time, which
    on one thread covers a whole step of either engine (parml's workers,
    oneDNN's OpenMP team and PyTorch's intra-op pool are then empty, and
    PyTorch's autograd runs CPU backward on the caller), so a loaded
    machine's waits for a CPU are left out; refused with more threads."""
    if a.clock == "thread" and a.threads != [1]:
        ap.error("--clock thread times the calling thread only: use it with --threads 1")
    return time.thread_time if a.clock == "thread" else time.perf_counter


def optional_torch():
    """The torch module, or None (and a line saying so) without it."""
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: parml only")
        return None
    return torch


def precision_line(trainer) -> str:
    """The plan's "precision:" line of a trainer (empty if it has none)."""
    return next((line for line in trainer.plan().splitlines() if line.startswith("precision")), "")


def fell_back(plan_line: str) -> bool:
    """Whether a trainer asked for bf16 trains in float32 (a CPU without
    AVX512-BF16, or oneDNN absent): its ratio to float32 is then float32's
    to itself, and PyTorch's autocast there emulates bf16, so a bf16
    comparison with it says nothing about either engine's bf16."""
    return plan_line.startswith("precision: float32")
