"""The MPI entry points from a process that never asked for MPI: rank 0 of
1, argument errors, and Open MPI left unloaded. (Under mpirun they are
tested by tests/mpi/run_mpi_tests.sh.)"""

from __future__ import annotations

import ctypes
from ctypes import byref

from parml import _capi


def libmpi_mapped() -> bool:
    with open("/proc/self/maps", encoding="utf-8") as f:
        return any("libmpi" in line for line in f)


def test_rank_and_size_without_mpi():
    value = ctypes.c_int32(-7)
    assert _capi.parml_mpi_rank(byref(value)) == _capi.PARML_OK
    assert value.value == 0
    assert _capi.parml_mpi_world_size(byref(value)) == _capi.PARML_OK
    assert value.value == 1
    assert not libmpi_mapped()


def test_bad_arguments_leave_outputs_alone():
    assert _capi.parml_mpi_rank(None) == _capi.PARML_ERR_INVALID_ARGUMENT
    assert b"rank_out" in _capi.parml_last_error()
    assert _capi.parml_mpi_world_size(None) == _capi.PARML_ERR_INVALID_ARGUMENT
    assert _capi.parml_mpi_use_comm(None) == _capi.PARML_ERR_INVALID_ARGUMENT
    dummy = ctypes.c_int32(5)
    # A communicator while MPI is not initialised: refused, nothing loaded.
    assert _capi.parml_mpi_use_comm(ctypes.addressof(dummy)) == _capi.PARML_ERR_STATE
    assert b"not initialized" in _capi.parml_last_error()
    assert dummy.value == 5
    assert not libmpi_mapped()


def test_finalize_without_init_is_a_no_op():
    assert _capi.parml_mpi_finalize() == _capi.PARML_OK
    assert not libmpi_mapped()
