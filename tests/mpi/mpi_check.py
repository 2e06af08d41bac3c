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


def report_ok(what: str) -> None:
    rank = int(os.environ["OMPI_COMM_WORLD_RANK"])
    print(f"rank {rank}: ok ({what})")
    sys.stdout.flush()
    parml._capi.parml_mpi_finalize()
