"""ZeRO-3 under mpirun (issue 17): each process keeps only its shard of the
parameters between steps and gathers every layer's just before use.

A small GPT (embeddings, two pre-LayerNorm blocks with dropout, a classifier
tied to the token embedding) trains with backend="mpi" and ZeRO-3 in the
layout named by argv[1], then alone on the threads backend with ZeRO-3 and
ZeRO-1 (and serially in deterministic mode, without tp: tp splits inner
sums); the parameters must be equal bit for bit. With tp = 2 each process
shards and gathers its tensor-parallel slices, and gathering assembles the
host's model from every tp rank's. Steps include a batch of one sample, which leaves a replica
without rows (those steps gather whole runs instead of layer by layer; so
do all steps of the deterministic layouts here, whose batches of at most
8 samples are one chunk of grad_chunk 32, run by one replica: the "fast"
layouts are the ones that gather layer by layer).
Between steps the host's model is partial: reading it raises StateError,
parml_trainer_memory reports the shard plus the largest layer's part
outside it, and gather_params (collective) makes it whole until the next
step; save_checkpoint gathers by itself. Prints "rank R: ok ..." or raises.
(tests/mpi/run_mpi_tests.sh)"""
import os
import sys
import tempfile

import numpy as np

import parml
from mpi_check import assert_bitwise_equal, report_ok, small_gpt

LAYOUTS = {
    "dp2": dict(dp=2),
    "dp2fast": dict(dp=2, deterministic=False),
    "dp3fast": dict(dp=3, deterministic=False),
    # Overlap (auto is off on one machine): the gathers then run on a
    # communicator of their own beside the communication thread's.
    "dp2fastoverlap": dict(dp=2, deterministic=False, overlap="on"),
    "dp2pp2": dict(dp=2, pp=2, micro_batches=2),
    "dp2tp2": dict(dp=2, tp=2),
    "dp2tp2fast": dict(dp=2, tp=2, deterministic=False),
}
name = sys.argv[1]
layout = LAYOUTS[name]
vocab, t, c = 16, 8, 16
rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", "0"))


def sharding(count: int, parts: int, index: int, alignment: int = 1024) -> range:
    """Sharding.range: contiguous shards cut on 1024-element blocks."""
    blocks = (count + alignment - 1) // alignment
    base, extra = divmod(blocks, parts)
    first = index * base + min(index, extra)
    mine = base + (1 if index < extra else 0)
    return range(min(count, first * alignment), min(count, (first + mine) * alignment))


def split(key: str, shape: tuple, tp: int) -> int:
    """Floats of one named tensor in a tp rank's arena (docs/model-parallel.md):
    attention is split by heads (q, k, v rows and the output projection's
    columns; its bias stays whole on every rank), the MLP's first Linear by
    rows and its second by columns (its bias whole); layer norms, the
    embeddings and the tied classifier are replicated."""
    n = int(np.prod(shape))
    path = key.split(".")
    if tp == 1 or len(path) < 3 or path[1] == "0":
        return n  # outside the residual blocks, or their layer norm
    if path[-2:] == ["c_proj", "bias"] or path[1:] == ["3", "bias"]:
        return n  # the bias of a row-parallel layer, added after the sum
    return n // tp


def layer_counts(model: parml.Model, tp: int) -> dict[int, int]:
    """Floats of each top-level layer in a tp rank's arena. The arena holds
    the named tensors in order and the tied classifier's copy of the
    embedding in the last layer."""
    counts: dict[int, int] = {}
    for key, shape in model.parameter_shapes.items():
        layer = int(key.split(".")[0])
        counts[layer] = counts.get(layer, 0) + split(key, shape, tp)
    last = len(model.layers) - 1
    counts[last] = counts.get(last, 0) + vocab * c
    return counts


def expected_parameter_bytes(model: parml.Model, dp: int, d: int, tp: int = 1) -> int:
    """One run (pp = 1): the shard of data rank d of its tp rank's arena plus
    the largest top-level layer's part outside it."""
    counts = layer_counts(model, tp)
    n = sum(counts.values())
    owned = sharding(n, dp, d)
    outside, start = 0, 0
    for layer in sorted(counts):
        lo, hi = start, start + counts[layer]
        inside = max(0, min(hi, owned.stop) - max(lo, owned.start))
        outside = max(outside, hi - lo - inside)
        start = hi
    return 4 * (len(owned) + outside)


def model() -> parml.Model:
    return small_gpt(vocab, t, c)


def batches() -> list[np.ndarray]:
    rng = np.random.default_rng(8)
    # The third batch holds one sample: with dp > 1 a replica has no rows.
    return [rng.integers(0, vocab, size=(n, t + 1)).astype(np.int32) for n in (8, 7, 1, 8)]


def train(check_host: bool = False, **strategy) -> np.ndarray:
    m = model()
    opt = parml.AdamW(3e-3, betas=(0.9, 0.99), weight_decay=0.1, clip_grad_norm=1.0, decay_by_kind=True)
    s = parml.Strategy(**{"deterministic": True, "seed": 3, "blas_threads": 1, **strategy})
    with m, parml.Trainer(m, optimizer=opt, strategy=s) as trainer:
        for ids in batches():
            trainer.step(ids[:, :-1], ids[:, 1:])
        if strategy.get("backend") == "threads" and strategy.get("zero") == 1 and "pp" not in strategy:
            # Every rank holds its tp rank's whole arena: the counts the
            # MPI memory check below relies on.
            tp = strategy.get("tp", 1)
            for r in range(strategy["dp"] * tp):
                assert trainer.memory(r).parameter_bytes == 4 * sum(layer_counts(m, tp).values()), r
        if check_host:
            check_partial_model(m, trainer, strategy)
        trainer.gather_params()  # collective; returns at once where the model is whole
        assert trainer.params_whole
        return m.parameters.copy()


def check_partial_model(m: parml.Model, trainer: parml.Trainer, strategy: dict) -> None:
    """Between steps under MPI ZeRO-3: partial, refused reads, the memory
    report, then whole after gathering (and after save_checkpoint)."""
    assert not trainer.params_whole
    ids = batches()[0]
    refused = {
        "parameters": lambda: m.parameters,
        "predict": lambda: m.predict(ids[:, :-1]),
        "generate": lambda: m.generate(ids[0, :3], 2),
        "state_dict": lambda: m.state_dict(),
        "to_bytes": lambda: m.to_bytes(),
        "evaluate": lambda: trainer.evaluate(ids[:, :-1], ids[:, 1:]),
        "another trainer": lambda: parml.Trainer(m, optimizer=parml.SGD(0.1)),
    }
    for what, call in refused.items():
        try:
            call()
        except parml.StateError as e:
            assert "parml_trainer_gather_params" in str(e), (what, str(e))
        else:
            raise AssertionError(f"{what} read a partial model")
    if strategy.get("pp", 1) == 1:
        tp = strategy.get("tp", 1)
        want = expected_parameter_bytes(m, strategy["dp"], rank // tp, tp)
        got = trainer.memory(rank).parameter_bytes
        assert got == want, (got, want)
        assert got < 4 * sum(layer_counts(m, tp).values()), (got, m.num_params)
    # A checkpoint gathers by itself (every process calls it).
    with tempfile.TemporaryDirectory() as d:
        trainer.save_checkpoint(os.path.join(d, "ck.pb"))
    assert trainer.params_whole
    before = m.parameters.copy()
    # The next step drops them again.
    ids = batches()[3]
    trainer.step(ids[:, :-1], ids[:, 1:])
    assert not trainer.params_whole
    trainer.gather_params()
    assert trainer.params_whole and not np.array_equal(before, m.parameters)


mpi = train(backend="mpi", zero=3, **layout)
threads3 = train(backend="threads", zero=3, **layout)
threads1 = train(backend="threads", zero=1, **layout)
assert_bitwise_equal(mpi, threads3)
assert_bitwise_equal(mpi, threads1)
if layout.get("deterministic", True) and "tp" not in layout:
    assert_bitwise_equal(mpi, train())
# The host-call checks take one more step: compare that run too.
mpi_more = train(check_host=True, backend="mpi", zero=3, **layout)
batches_more = batches() + [batches()[3]]


def train_more(**strategy) -> np.ndarray:
    m = model()
    opt = parml.AdamW(3e-3, betas=(0.9, 0.99), weight_decay=0.1, clip_grad_norm=1.0, decay_by_kind=True)
    s = parml.Strategy(**{"deterministic": True, "seed": 3, "blas_threads": 1, **strategy})
    with m, parml.Trainer(m, optimizer=opt, strategy=s) as trainer:
        for ids in batches_more:
            trainer.step(ids[:, :-1], ids[:, 1:])
        return m.parameters.copy()


assert_bitwise_equal(mpi_more, train_more(backend="threads", zero=3, **layout))
report_ok(f"ZeRO-3 per-layer gathering, {name}: MPI equals threads ZeRO-3 and ZeRO-1 bit for bit; partial model refused until gathered")
