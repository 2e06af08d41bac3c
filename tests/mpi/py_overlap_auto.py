"""Overlap's default follows where the processes run (issue 20): with
overlap auto, MPI processes on one machine reduce gradients after
backward, and processes on different machines (here: one process given
another host name by the runner, `unshare --uts`) overlap the sum with
backward. Either way the parameters equal overlap off's bit for bit.
argv[1]: "one" or "two", the machines the runner made the job look like.
Prints "rank R: ok ..." or raises. (tests/mpi/run_mpi_tests.sh)"""
import sys

import numpy as np

import parml
from mpi_check import assert_bitwise_equal, report_ok, small_gpt

machines = sys.argv[1]
assert machines in ("one", "two"), machines
vocab, t, c = 16, 8, 16


def train(overlap: str) -> tuple[np.ndarray, str]:
    model = small_gpt(vocab, t, c)
    rng = np.random.default_rng(8)
    opt = parml.AdamW(3e-3, betas=(0.9, 0.99), weight_decay=0.1, clip_grad_norm=1.0, decay_by_kind=True)
    s = parml.Strategy(backend="mpi", dp=2, seed=3, blas_threads=1, overlap=overlap, bucket_bytes=4096)
    with model, parml.Trainer(model, optimizer=opt, strategy=s) as trainer:
        plan = trainer.plan()
        for _ in range(4):
            ids = rng.integers(0, vocab, size=(8, t + 1)).astype(np.int32)
            trainer.step(ids[:, :-1], ids[:, 1:])
        return model.parameters.copy(), plan


auto, plan = train("auto")
overlapped = "overlapped with backward on a communication thread" in plan
assert overlapped == (machines == "two"), f"{machines} machine(s), overlap auto:\n{plan}"
off, _ = train("off")
assert_bitwise_equal(auto, off)
report_ok(f"overlap auto on {machines} machine(s): {'on' if overlapped else 'off'}, the bits of overlap off")
