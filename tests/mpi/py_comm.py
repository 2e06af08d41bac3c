"""Gradient compression and local SGD under mpirun (issue 20), and bf16
products (issue 23): a small MLP
trained with dp = 2 and the mode named by argv[1] gives, in each process
(backend="mpi"), the bits the threads backend gives for the same layout.
"diloco_resume": local SGD with DiLoCo's outer step, resumed from a
checkpoint (its outer state gathered from the processes), continues as the
run that was not interrupted did.
Prints "rank R: ok ..." or raises. (tests/mpi/run_mpi_tests.sh)"""
import sys

import numpy as np

import parml
from mpi_check import assert_bitwise_equal, report_ok

MODES = {
    "bf16": dict(gradient_compression="bf16"),
    "fp16": dict(gradient_compression="fp16"),
    "powersgd": dict(gradient_compression="powersgd", compression_rank=2),
    "local3": dict(local_steps=3),
    # bf16 products (issue 23), alone, in deterministic mode, and with bf16 on the wire too
    "precision_bf16": dict(precision="bf16"),
    "precision_bf16_det": dict(precision="bf16", deterministic=True),
    "precision_bf16_wire": dict(precision="bf16", gradient_compression="bf16"),
}
name = sys.argv[1]


def train(**strategy) -> tuple[np.ndarray, str]:
    """(parameters after six steps, the trainer's plan)."""
    model = parml.Sequential([parml.Linear(20, 32), parml.ReLU(), parml.Linear(32, 5)], seed=9)
    rng = np.random.default_rng(2)
    s = parml.Strategy(dp=2, seed=3, blas_threads=1, **strategy)
    with model, parml.Trainer(model, optimizer=parml.Adam(1e-2), strategy=s) as trainer:
        # Six steps: a multiple of local_steps, where the replicas agree (in
        # between, each process's host model is its own replica's).
        for _ in range(6):
            x = rng.normal(size=(16, 20)).astype(np.float32)
            trainer.step(x, rng.integers(0, 5, size=16))
        return model.parameters.copy(), trainer.plan()


def resumed(backend: str) -> tuple[np.ndarray, np.ndarray]:
    """(continued, resumed): 4 steps, a checkpoint, 4 more; and a new trainer
    that loads the checkpoint and takes the same 4. Plain SGD, so no inner
    optimizer state differs between replicas."""
    rng = np.random.default_rng(5)
    batches = [(rng.normal(size=(16, 20)).astype(np.float32), rng.integers(0, 5, size=16)) for _ in range(8)]
    s = parml.Strategy(dp=2, seed=3, blas_threads=1, backend=backend, local_steps=2, outer_learning_rate=0.7, outer_momentum=0.9)
    out, saved = [], b""
    for resume in (False, True):
        model = parml.Sequential([parml.Linear(20, 32), parml.ReLU(), parml.Linear(32, 5)], seed=9)
        with model, parml.Trainer(model, optimizer=parml.SGD(0.05), strategy=s) as trainer:
            if resume:
                trainer.load_checkpoint_bytes(saved)
            for k in range(4 if resume else 0, 8):
                trainer.step(*batches[k])
                if k == 3 and not resume:
                    saved = trainer.checkpoint_bytes()  # collective: every process gets the whole state
            out.append(model.parameters.copy())
    return out[0], out[1]


if name == "diloco_resume":
    continued, again = resumed("mpi")
    assert_bitwise_equal(continued, again)
    assert_bitwise_equal(continued, resumed("threads")[0])
    report_ok("DiLoCo, dp 2: resumed from a checkpoint equals the uninterrupted run, MPI equals threads, bit for bit")
else:
    mode = MODES[name]
    mpi, plan = train(backend="mpi", **mode)
    threads, _ = train(backend="threads", **mode)
    assert_bitwise_equal(mpi, threads)
    # A CPU without AVX512-BF16 trains bf16 precision in float32 (the plan
    # says so): the bits of the same mode in float32.
    fallback = "precision" in mode and "precision: bf16 products" not in plan
    if fallback:
        float32, _ = train(backend="threads", **{k: v for k, v in mode.items() if k != "precision"})
        assert_bitwise_equal(mpi, float32)
    else:
        plain, _ = train(backend="threads")
        assert not np.array_equal(mpi, plain)
    report_ok(f"{name}, dp 2: MPI equals threads bit for bit" + (" (float32 fallback: no bf16 products here)" if fallback else ""))
