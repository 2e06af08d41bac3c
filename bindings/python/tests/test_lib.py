"""Finding the library: messages for a missing system library, and the
.proto files (the wheel itself is tested by tests/wheel/run_wheel_test.sh)."""

from __future__ import annotations

import pytest

import parml
from parml import _lib


@pytest.mark.parametrize(
    "missing, package",
    [("libprotobuf-c.so.1", "libprotobuf-c1"), ("libz.so.1", "zlib1g"), ("libstdc++.so.6", "libstdc++6")],
)
def test_a_missing_system_library_names_its_debian_package(missing, package):
    error = f"{missing}: cannot open shared object file: No such file or directory"
    hint = _lib.missing_dependency_hint(error)
    assert f"install the Debian package {package}" in hint and missing in hint
    assert _lib.missing_dependency_hint("libparml.so: cannot open shared object file") == ""


def test_missing_openblas_is_an_import_error_naming_the_package(monkeypatch):
    monkeypatch.delenv("PARML_OPENBLAS_LIBRARY", raising=False)
    monkeypatch.setattr(_lib.ctypes.util, "find_library", lambda name: None)
    with pytest.raises(ImportError, match="install the Debian package libopenblas0"):
        _lib.check_openblas()
    monkeypatch.setenv("PARML_OPENBLAS_LIBRARY", "/opt/openblas/libopenblas.so")
    _lib.check_openblas()  # the override is trusted


def test_proto_path_holds_the_schemas():
    d = parml.proto_path()
    assert (d / "parml.proto").is_file() and (d / "onnx_subset.proto").is_file()
    assert "message Checkpoint" in (d / "parml.proto").read_text()


def test_file_info_reads_a_checkpoint(tmp_path):
    import numpy as np

    x = np.random.default_rng(1).normal(size=(32, 4)).astype(np.float32)
    y = np.arange(32) % 2
    with parml.Sequential([parml.Linear(4, 8), parml.Tanh(), parml.Linear(8, 2)], seed=3) as m, parml.Trainer(
        m, optimizer=parml.SGD(0.1, momentum=0.9)
    ) as t:
        t.fit(x, y, epochs=2, batch_size=8, verbose=False)
        t.save_checkpoint(tmp_path / "c.ckpt")
    info = parml.file_info(tmp_path / "c.ckpt")
    assert (info["kind"], info["checksum"], info["step"], info["epoch"]) == ("checkpoint", "verified", 8, 2)
    assert info["optimizer"]["kind"] == "sgd" and info["optimizer_state"] == ["momentum_buffer"]
    assert [p["name"] for p in info["parameter_tensors"]] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    damaged = bytearray((tmp_path / "c.ckpt").read_bytes())
    damaged[len(damaged) // 2] ^= 1
    (tmp_path / "d.ckpt").write_bytes(bytes(damaged))
    with pytest.raises(parml.FormatError, match="damaged"):
        parml.file_info(tmp_path / "d.ckpt")


def test_loading_openblas_starts_no_thread_of_its_own():
    """parml runs OpenBLAS on one thread per call; the worker OpenBLAS would
    start at load time polled a core for its first few hundred ms. A fresh
    process: the threads before and after parml loads OpenBLAS, and the
    host's OPENBLAS_NUM_THREADS as it was."""
    import os
    import subprocess
    import sys

    from conftest import subprocess_env

    code = (
        "import os, parml\n"
        "before = len(os.listdir('/proc/self/task'))\n"
        "parml.blas_core()\n"
        "after = len(os.listdir('/proc/self/task'))\n"
        "import ctypes; libc = ctypes.CDLL(None); libc.getenv.restype = ctypes.c_char_p\n"
        "print(after - before, libc.getenv(b'OPENBLAS_NUM_THREADS'))\n"
    )
    if not os.path.isdir("/proc/self/task"):
        pytest.skip("no /proc/self/task on this system")
    env = subprocess_env()
    env["OPENBLAS_NUM_THREADS"] = "7"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "b'7'"], out.stdout
