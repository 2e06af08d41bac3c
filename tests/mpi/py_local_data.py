"""Local data per process under mpirun -np 2 (docs/data.md, "Local data per
process"): each process fits its own data, of uneven size, with
Trainer.set_local_data. Case "uneven": 1,000 samples on rank 0 and 10 on
rank 1 (and again with each process's own sample weights); case "none": rank 1 has no data at all (an empty stream: a rank
past the last shard). Every process must finish (the epochs end together,
no hang) with the parameters of a serial run that steps on each step's
concatenated rows (each step's mean over the rows actually there), and
fit's epoch loss must be that run's row-weighted mean. Prints
"rank R: ok CASE" or raises. (tests/mpi/run_mpi_tests.sh)"""
import os
import sys
import tempfile

import numpy as np

import parml

rank = int(os.environ["OMPI_COMM_WORLD_RANK"])
F, C, B, EPOCHS = 8, 3, 50, 2


def data(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n).astype(np.int64)
    x = rng.standard_normal((n, F)).astype(np.float32)
    x[np.arange(n), y] += 2.0
    return x, y


def model():
    return parml.Sequential([parml.Linear(F, 16), parml.Tanh(), parml.Linear(16, C)], seed=5)


def reference(parts, weights=None):
    """Serial steps on the concatenation of each replica's batch s (with
    each replica's sample weights: the epoch loss is then weighted by each
    step's total weight)."""
    m = model()
    with m, parml.Trainer(m, optimizer=parml.SGD(0.05, momentum=0.9), strategy=parml.Strategy(blas_threads=1)) as t:
        steps = max((len(x) + B - 1) // B for x, _ in parts)
        losses = []
        for _ in range(EPOCHS):
            total = rows = 0
            for s in range(steps):
                xs = np.concatenate([x[s * B : (s + 1) * B] for x, _ in parts])
                ys = np.concatenate([y[s * B : (s + 1) * B] for _, y in parts])
                ws = None if weights is None else np.concatenate([w[s * B : (s + 1) * B] for w in weights])
                loss = t.step(xs, ys, sample_weight=ws)
                weight = len(xs) if ws is None else float(ws.sum())
                total += loss * weight
                rows += weight
            losses.append(total / rows)
        return m.parameters.copy(), losses


def mpi_trainer():
    m = model()
    t = parml.Trainer(m, optimizer=parml.SGD(0.05, momentum=0.9), strategy=parml.Strategy(backend="mpi", dp=2, blas_threads=1, seed=2))
    t.set_local_data()
    return m, t


def check(case, params, losses, want_params, want_losses):
    diff = float(np.max(np.abs(params - want_params)))
    if diff > 2e-5:
        raise SystemExit(f"rank {rank}: {case}: parameters differ from the serial run by {diff}")
    if not np.allclose(losses, want_losses, rtol=1e-5):
        raise SystemExit(f"rank {rank}: {case}: epoch losses {losses}, serial {want_losses}")
    print(f"rank {rank}: ok {case} (max difference {diff:.2e})", flush=True)


# Uneven: 1,000 samples here, 10 there; fit in file order (shuffle=False) so the serial run can follow.
parts = [data(1000, 1), data(10, 2)]
want_params, want_losses = reference(parts)
m, t = mpi_trainer()
with m, t:
    x, y = parts[rank]
    h = t.fit(x, y, epochs=EPOCHS, batch_size=B, shuffle=False, verbose=False)
    check("uneven 1000/10", m.parameters.copy(), [e.train_loss for e in h.epochs], want_params, want_losses)

# Weighted: each process's own sample weights follow its own rows; each
# step's mean is over the weight of both replicas' rows.
weights = [np.random.default_rng(4).uniform(0, 2, 1000).astype(np.float32), np.full(10, 3.0, np.float32)]
want_params, want_losses = reference(parts, weights)
m, t = mpi_trainer()
with m, t:
    x, y = parts[rank]
    h = t.fit(x, y, epochs=EPOCHS, batch_size=B, shuffle=False, verbose=False, sample_weight=weights[rank])
    check("uneven 1000/10, sample weights", m.parameters.copy(), [e.train_loss for e in h.epochs], want_params, want_losses)

# None: one shard, which rank 0 streams; rank 1 gets an empty dataset.
x, y = data(130, 3)
want_params, want_losses = reference([(x, y)])
with tempfile.TemporaryDirectory() as d:
    np.save(os.path.join(d, "x.npy"), x)
    np.save(os.path.join(d, "y.npy"), y)
    with open(os.path.join(d, "manifest.txt"), "w") as f:
        f.write("parml-shards 1\nshard x.npy y.npy 130\n")
    m, t = mpi_trainer()
    with m, t, parml.open_shards(d, shuffle_buffer=1, rank=rank, ranks=2) as mine:
        assert len(mine) == (130 if rank == 0 else 0)
        h = t.fit(mine, epochs=EPOCHS, batch_size=B, verbose=False)
        check("rank 1 without data", m.parameters.copy(), [e.train_loss for e in h.epochs], want_params, want_losses)
parml._capi.parml_mpi_finalize()
