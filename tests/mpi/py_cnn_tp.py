"""A CNN trained under mpirun (issue 18 items 4 and 5): a conv2d pair that
tensor parallelism splits by channels (max pooling and dropout between its
halves), fit over a dataset with augmentation (random crop and flip), in
the layout named by argv[1]. Each process trains with backend="mpi", then
alone with the threads backend and the same layout; the parameters must be
equal bit for bit (every process formed the same augmented batches), and
for the layouts without tp they must also equal serial training's.
Prints "rank R: ok ..." or raises. (tests/mpi/run_mpi_tests.sh)"""
import sys

import numpy as np

import parml
from mpi_check import assert_bitwise_equal, report_ok

LAYOUTS = {
    "dp2": dict(dp=2, zero=1),
    "tp2": dict(tp=2),
    "pp2tp2": dict(pp=2, tp=2, micro_batches=2),
}
name = sys.argv[1]
layout = LAYOUTS[name]
rng = np.random.default_rng(4)
x = rng.random((32, 1, 8, 8), dtype=np.float32)
y = (np.arange(32) % 3).astype(np.int64)


def train(**strategy) -> np.ndarray:
    model = parml.Sequential(
        [
            parml.Conv2d(1, 8, 3, padding=1), parml.ReLU(), parml.MaxPool2d(2), parml.Dropout(0.2),
            parml.Conv2d(8, 4, 3, padding=1), parml.ReLU(), parml.GlobalAvgPool2d(), parml.Linear(4, 3),
        ],
        seed=6,
    )
    s = parml.Strategy(deterministic=True, seed=3, blas_threads=1, **strategy)
    with model, parml.Trainer(model, optimizer=parml.SGD(0.1, 0.9), strategy=s) as trainer, parml.Dataset(x, y) as data:
        data.set_augmentation(crop_padding=2, horizontal_flip=True)
        trainer.fit(data, epochs=2, batch_size=8, verbose=False)
        return model.parameters.copy()


mpi = train(backend="mpi", **layout)
threads = train(backend="threads", **layout)
assert_bitwise_equal(mpi, threads)
if "tp" not in layout:
    serial = train()
    assert_bitwise_equal(mpi, serial)
report_ok(f"CNN, {name}, MPI equals threads bit for bit")
