"""A GPT trained under mpirun (issue 17 item 5): token and position
embeddings, pre-LayerNorm blocks with causal attention (dropout on) and a
classifier tied to the token embedding, in the layout named by argv[1]
(the "split" ones split the vocabulary of both over tp ranks).
Each process trains with backend="mpi", then alone with the threads backend
and the same layout; the parameters must be equal bit for bit, and for the
deterministic layouts without tp they must also equal serial training's.
Prints "rank R: ok ..." or raises. (tests/mpi/run_mpi_tests.sh)"""
import sys

import numpy as np

import parml
from mpi_check import assert_bitwise_equal, report_ok, small_gpt

LAYOUTS = {
    "dp2": dict(dp=2, zero=1),
    "pp2": dict(pp=2, micro_batches=2),
    "tp2": dict(tp=2),
    "dp2pp2": dict(dp=2, pp=2, micro_batches=2, zero=1),
    "tp2split": dict(tp=2, split_classifier=True),
    "pp2tp2split": dict(pp=2, tp=2, micro_batches=2, split_classifier=True),
    "pp2v2": dict(pp=2, micro_batches=4, schedule="interleaved", virtual_stages=2),
    # Default mode: ZeRO-2/3 reduce gradients in buckets during backward.
    "dp2zero2fast": dict(dp=2, zero=2, deterministic=False),
    "dp3zero3fast": dict(dp=3, zero=3, deterministic=False),
    # Micro-batches with pages handed back (small buckets): each
    # micro-batch's buckets reduce-scattered into the shard.
    "dp3zero2m2fast": dict(dp=3, zero=2, micro_batches=2, bucket_bytes=400, deterministic=False),
    "dp3zero3m2fast": dict(dp=3, zero=3, micro_batches=2, bucket_bytes=400, deterministic=False),
    # Default mode at every ZeRO stage: under MPI with overlap on the buckets
    # are reduced on a communication thread while backward goes on, on
    # threads after backward; and MPI with overlap auto (off on one machine)
    # gives the same bits too.
    "dp2fast": dict(dp=2, deterministic=False),
    "dp3fast": dict(dp=3, deterministic=False),
    "dp2zero1fast": dict(dp=2, zero=1, deterministic=False),
    "dp2pp2fast": dict(dp=2, pp=2, micro_batches=2, deterministic=False),
}
name = sys.argv[1]
layout = LAYOUTS[name]
vocab, t, c = 16, 8, 16


def train(**strategy) -> np.ndarray:
    model = small_gpt(vocab, t, c)
    rng = np.random.default_rng(8)
    opt = parml.AdamW(3e-3, betas=(0.9, 0.99), weight_decay=0.1, clip_grad_norm=1.0, decay_by_kind=True)
    s = parml.Strategy(**{"deterministic": True, "seed": 3, "blas_threads": 1, **strategy})
    with model, parml.Trainer(model, optimizer=opt, strategy=s) as trainer:
        overlapped = "overlapped with backward on a communication thread" in trainer.plan()
        # Overlap auto is on only for MPI processes on more than one machine,
        # so here (one machine) only "on" overlaps, in the default mode with dp > 1.
        applies = not s.fields["deterministic"] and layout.get("dp", 1) > 1
        assert overlapped == (applies and strategy.get("overlap", "auto") == "on"), trainer.plan()
        for _ in range(4):
            ids = rng.integers(0, vocab, size=(8, t + 1)).astype(np.int32)
            trainer.step(ids[:, :-1], ids[:, 1:])
        trainer.gather_params()  # ZeRO-3 under MPI keeps a shard between steps (collective; a no-op elsewhere)
        return model.parameters.copy()


fast = not layout.get("deterministic", True)
mpi = train(backend="mpi", **layout, **({"overlap": "on"} if fast else {}))
threads = train(backend="threads", **layout)
assert_bitwise_equal(mpi, threads)
if fast:
    assert_bitwise_equal(mpi, train(backend="mpi", **layout))
if "tp" not in layout and layout.get("deterministic", True):
    serial = train()
    assert_bitwise_equal(mpi, serial)
report_ok(f"GPT, {name}, MPI equals threads bit for bit")
