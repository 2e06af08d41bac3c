"""What the benchmarks of parml against PyTorch in one process share
(bench/gpt_char.py, bench/cnn_fmnist.py): their command line, and PyTorch
when it is installed."""

from __future__ import annotations

import argparse


def parser(rounds: int, iters: int, warmup: int) -> argparse.ArgumentParser:
    """--rounds alternating blocks of --iters timed steps after --warmup,
    per --threads count; --jsonl FILE appends results for make bench."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=rounds)
    ap.add_argument("--iters", type=int, default=iters)
    ap.add_argument("--warmup", type=int, default=warmup)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--jsonl", help="append one result line per thread count to this file (make bench)")
    return ap


def optional_torch():
    """The torch module, or None (and a line saying so) without it."""
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: parml only")
        return None
    return torch
