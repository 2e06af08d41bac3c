"""What every Python host under tests/mpi/run_mpi_tests.sh ends with: bitwise
comparisons of trained parameters, and the "rank R: ok" line the runner
counts (printed only after every assertion held), then MPI's finalize."""
import os
import sys

import numpy as np

import parml


def assert_bitwise_equal(a: np.ndarray, b: np.ndarray) -> None:
    """float32 arrays equal bit for bit (so -0.0 differs from 0.0, as it would in a file)."""
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32)), np.abs(a - b).max()


def small_gpt(vocab: int, t: int, c: int) -> parml.Model:
    """The GPT py_gpt.py and py_zero3.py train: token and position
    embeddings, two pre-LayerNorm blocks with dropout, a classifier tied to
    the token embedding."""
    layers = [parml.Embedding(vocab, c, init_std=0.02), parml.PositionEmbedding(t, c, init_std=0.02)]
    for _ in range(2):
        layers += [
            parml.Residual([parml.LayerNorm(c), parml.CausalSelfAttention(c, 4, dropout=0.1), parml.Dropout(0.1)]),
            parml.Residual([parml.LayerNorm(c), parml.Linear(c, 4 * c), parml.GELU(), parml.Linear(4 * c, c), parml.Dropout(0.1)]),
        ]
    layers += [parml.LayerNorm(c), parml.TiedClassifier(vocab, c)]
    return parml.Sequential(layers, seed=5)


def report_ok(what: str) -> None:
    rank = int(os.environ["OMPI_COMM_WORLD_RANK"])
    print(f"rank {rank}: ok ({what})")
    sys.stdout.flush()
    parml._capi.parml_mpi_finalize()
