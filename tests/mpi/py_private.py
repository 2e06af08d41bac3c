"""DP-SGD under mpirun (issue 21): a private MLP (linear, layer_norm,
dropout, a linear pair) trained by fit with Poisson sampling in the layout named by argv[1]
with backend="mpi", then alone with the threads backend in the same layout,
then serially; parameters and the epsilon reported must be equal (the
parameters bit for bit; under tp, serial's within tp's rounding bound).
Under pp the per-example norms cross the stages, under tp they are summed
over the slices (docs/privacy.md). Prints "rank R: ok ..." or raises.
(tests/mpi/run_mpi_tests.sh)"""
import sys

import numpy as np

import parml
from mpi_check import assert_bitwise_equal, report_ok

LAYOUTS = {
    "dp2": dict(dp=2, zero=1),
    "pp2": dict(pp=2, micro_batches=3),
    "dp2pp2": dict(dp=2, pp=2, micro_batches=2, zero=1),
    "tp2": dict(tp=2),
}
name = sys.argv[1] if len(sys.argv) > 1 else "dp2"
layout = LAYOUTS[name]

rng = np.random.default_rng(5)
x = rng.normal(size=(96, 8)).astype(np.float32)
y = rng.integers(0, 3, size=96)


def train(**strategy):
    model = parml.Sequential(
        [parml.Linear(8, 16), parml.ReLU(), parml.LayerNorm(16), parml.Dropout(0.1), parml.Linear(16, 32), parml.GELU(),
         parml.Linear(32, 3)],
        seed=7,
    )  # under tp the last two linears are a column/row pair; the rest is replicated
    s = parml.Strategy(deterministic=True, grad_chunk=4, seed=3, blas_threads=1, **strategy)
    privacy = parml.Privacy(noise_multiplier=1.0, max_grad_norm=0.5, delta=1e-5)
    with model, parml.Trainer(model, optimizer=parml.SGD(0.1, momentum=0.9), strategy=s, privacy=privacy) as trainer:
        history = trainer.fit(x, y, epochs=2, batch_size=24, verbose=False)
        return model.parameters.copy(), history.last.privacy_epsilon


mpi, eps_mpi = train(backend="mpi", **layout)
threads, eps_threads = train(backend="threads", **layout)
serial, eps_serial = train()
assert_bitwise_equal(mpi, threads)
if "tp" in layout:
    # tp splits sums: serial within tp's rounding bound (2e-6 of the largest parameter per step, 8 steps).
    assert np.abs(mpi - serial).max() <= 2e-6 * 8 * np.abs(serial).max(), np.abs(mpi - serial).max()
else:
    assert_bitwise_equal(mpi, serial)
assert eps_mpi == eps_threads == eps_serial and eps_mpi > 0, (eps_mpi, eps_threads, eps_serial)
same = "within tp's rounding" if "tp" in layout else "bit for bit"
report_ok(f"private MLP, {name} under MPI equals threads bit for bit and serial {same}, epsilon {eps_mpi:.4f}")
