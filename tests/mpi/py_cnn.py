"""A CNN with batch_norm trained under mpirun (issue 18): two conv–BN–ReLU
blocks (global batch statistics, the default) and a 1-D batch_norm before
the classifier, in the layout named by argv[1]. Each process trains with
backend="mpi", then alone with the threads backend and the same layout, then
serially; parameters and running statistics must be equal bit for bit.
Prints "rank R: ok ..." or raises. (tests/mpi/run_mpi_tests.sh)"""
import sys

import numpy as np

import parml
from mpi_check import assert_bitwise_equal, report_ok

LAYOUTS = {
    "dp2": dict(dp=2, zero=1),
    "pp2": dict(pp=2, micro_batches=3),
    "dp2pp2": dict(dp=2, pp=2, micro_batches=2, zero=2),
}
name = sys.argv[1]
layout = LAYOUTS[name]


def train(**strategy) -> np.ndarray:
    model = parml.Sequential(
        [
            parml.Conv2d(1, 4, 3, padding=1), parml.BatchNorm(4), parml.ReLU(), parml.MaxPool2d(2),
            parml.Conv2d(4, 6, 3, padding=1), parml.BatchNorm(6, momentum=0.3), parml.ReLU(), parml.GlobalAvgPool2d(),
            parml.BatchNorm(6), parml.Linear(6, 3),
        ],
        seed=7,
    )
    rng = np.random.default_rng(4)
    s = parml.Strategy(deterministic=True, grad_chunk=3, seed=3, blas_threads=1, **strategy)
    with model, parml.Trainer(model, optimizer=parml.SGD(0.1, momentum=0.9), strategy=s) as trainer:
        for _ in range(3):
            x = rng.normal(size=(14, 1, 8, 8)).astype(np.float32)
            trainer.step(x, rng.integers(0, 3, size=14))
        return model.parameters.copy()


mpi = train(backend="mpi", **layout)
threads = train(backend="threads", **layout)
serial = train()
assert_bitwise_equal(mpi, threads)
assert_bitwise_equal(mpi, serial)
report_ok(f"CNN with batch_norm, {name}, MPI equals threads and serial bit for bit")
