"""Training from Python under mpirun (issue 6: `mpirun -np N python train.py`
with backend="mpi"): each process trains the same data with the MPI backend,
then, alone, with the threads backend and the same layout; the parameters
must be equal bit for bit. Prints "rank R: ok ..." or raises.
(tests/mpi/run_mpi_tests.sh)"""
import os

import numpy as np

import parml
from mpi_check import assert_bitwise_equal, report_ok

size = int(os.environ["OMPI_COMM_WORLD_SIZE"])
layout = dict(dp=2, pp=size // 2) if size > 2 else dict(dp=size)
rng = np.random.default_rng(3)
x = rng.standard_normal((96, 8), dtype=np.float32)
y = (np.arange(96) % 3).astype(np.float32)


def train(backend: str) -> np.ndarray:
    model = parml.Sequential(
        [parml.Linear(8, 32), parml.ReLU(), parml.Linear(32, 16), parml.GELU(), parml.Linear(16, 3)], seed=9
    )
    strategy = parml.Strategy(backend=backend, deterministic=True, grad_chunk=8, seed=2, blas_threads=1, **layout)
    with model, parml.Trainer(model, optimizer=parml.AdamW(1e-2, clip_grad_norm=1.0), strategy=strategy) as t:
        t.fit(x, y, epochs=2, batch_size=40, verbose=False)
        return model.parameters.copy()


mpi = train("mpi")
threads = train("threads")
assert_bitwise_equal(mpi, threads)
report_ok(f"{layout}, MPI equals threads bit for bit")
