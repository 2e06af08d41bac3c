"""The C entry points of parml's MPI layer from Python, under mpirun
(tests/mpi/run_mpi_tests.sh). Prints "rank R: ok" or raises."""
import ctypes
import os

from parml import _capi


def query(fn) -> int:
    value = ctypes.c_int32(-1)
    assert fn(ctypes.byref(value)) == 0, _capi.parml_last_error()
    return value.value


assert (query(_capi.parml_mpi_rank), query(_capi.parml_mpi_world_size)) == (0, 1), "MPI touched before init"
assert _capi.parml_mpi_init() == 0, _capi.parml_last_error()
rank = query(_capi.parml_mpi_rank)
assert rank == int(os.environ["OMPI_COMM_WORLD_RANK"]), rank
assert query(_capi.parml_mpi_world_size) == int(os.environ["OMPI_COMM_WORLD_SIZE"])
assert _capi.parml_mpi_finalize() == 0, _capi.parml_last_error()
print(f"rank {rank}: ok (Python host)")
