"""Fit callbacks under mpirun -np 2 (docs/callbacks.md): early stopping with
restore, a keep-best model file, reduce-on-plateau and a callback that saves
a checkpoint (collective) and evaluates, with the MPI backend and dp 2; then,
alone, the same with the threads backend. Every process must stop at the
same epoch with the same rates and end with the threads run's parameters,
bit for bit; the keep-best file is written once, by rank 0, and holds the
best epoch's model. Prints "rank R: ok ..." or raises.
(tests/mpi/run_mpi_tests.sh)"""
import os
import sys
import tempfile

import numpy as np

import parml
from parml.callbacks import Callback, EarlyStopping, ModelCheckpoint, ReduceLROnPlateau

rank = int(os.environ["OMPI_COMM_WORLD_RANK"])
work = sys.argv[1]
rng = np.random.default_rng(4)
x = rng.standard_normal((160, 8), dtype=np.float32) * 3
y = (np.arange(160) % 3).astype(np.float32)
x[np.arange(160), (np.arange(160) % 3)] += 2.5
val = (x[120:], y[120:])
x, y = x[:120], y[:120]


class Busy(Callback):
    def __init__(self, path):
        self.path = path
        self.lr = []

    def on_epoch_end(self, trainer, metrics):
        trainer.save_checkpoint(self.path)  # collective: every process
        trainer.evaluate(*val, batch_size=16)
        self.lr.append(metrics.learning_rate)


def train(backend: str, tag: str):
    model = parml.Sequential([parml.Linear(8, 32), parml.Tanh(), parml.Linear(32, 3)], seed=9)
    strategy = parml.Strategy(backend=backend, dp=2, deterministic=True, grad_chunk=8, seed=2, blas_threads=1)
    best = os.path.join(work, f"best-{tag}.parml")
    stop = EarlyStopping(monitor="val_loss", min_delta=0.005, patience=3, restore_best_weights=True)
    keep = ModelCheckpoint(best, monitor="val_loss", min_delta=0.005)  # the same rule as stop: its file holds the restored model
    plateau = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1, min_delta=0.005)
    busy = Busy(os.path.join(work, f"ck-{tag}.pb"))
    with model, parml.Trainer(model, optimizer=parml.SGD(0.05, momentum=0.9), strategy=strategy) as t:
        h = t.fit(x, y, epochs=40, batch_size=24, validation_data=val, verbose=False, callbacks=[stop, keep, plateau, busy])
        return model.parameters.copy(), len(h), stop.best_epoch, busy.lr, keep.saved_epochs, best


mpi, epochs, best_epoch, lrs, saved, best_path = train("mpi", "mpi")
assert epochs < 40, "the run must stop early"
if rank == 0:
    threads, t_epochs, t_best, t_lrs, t_saved, _ = train("threads", f"threads{rank}")
    assert np.array_equal(mpi.view(np.uint32), threads.view(np.uint32)), np.abs(mpi - threads).max()
    assert (epochs, best_epoch, lrs, saved) == (t_epochs, t_best, t_lrs, t_saved), ((epochs, best_epoch, lrs, saved), (t_epochs, t_best, t_lrs, t_saved))
parml._capi.parml_mpi_finalize()
with parml.Model.load(best_path) as m:  # the best epoch's model: restored weights equal it
    assert np.array_equal(m.parameters.view(np.uint32), mpi.view(np.uint32))
print(f"rank {rank}: ok (stopped after {epochs} epochs, best {best_epoch}, saved {saved}, lr {lrs[-1]:.4g})")
