"""Every status code the API can be made to return becomes its exception,
carrying parml_last_error()'s message."""

from __future__ import annotations

import gzip
import signal
import subprocess
import sys

import numpy as np
import pytest

import parml
from parml import _capi
from parml.errors import ERRORS, error_for

from conftest import blobs, mlp, subprocess_env


def test_every_code_has_its_class():
    expected = {
        _capi.PARML_ERR_INVALID_ARGUMENT: (parml.InvalidArgumentError, ValueError),
        _capi.PARML_ERR_SHAPE: (parml.ShapeError, ValueError),
        _capi.PARML_ERR_UNSUPPORTED: (parml.UnsupportedError, NotImplementedError),
        _capi.PARML_ERR_OUT_OF_MEMORY: (parml.OutOfMemoryError, MemoryError),
        _capi.PARML_ERR_IO: (parml.ParmlIOError, OSError),
        _capi.PARML_ERR_FORMAT: (parml.FormatError, ValueError),
        _capi.PARML_ERR_STATE: (parml.StateError, RuntimeError),
        _capi.PARML_ERR_BLAS: (parml.BLASError, RuntimeError),
        _capi.PARML_ERR_CANCELLED: (parml.CancelledError, parml.ParmlError),
        _capi.PARML_ERR_INTERNAL: (parml.InternalError, RuntimeError),
        _capi.PARML_ERR_COMMUNICATION: (parml.CommunicationError, RuntimeError),
        _capi.PARML_ERR_NONFINITE: (parml.NonFiniteError, ArithmeticError),
        _capi.PARML_ERR_AUTH_MISSING: (parml.MissingTagError, parml.AuthenticationError),
        _capi.PARML_ERR_AUTH_KEY: (parml.WrongKeyError, parml.AuthenticationError),
        _capi.PARML_ERR_AUTH_FAILED: (parml.TamperedError, parml.AuthenticationError),
    }
    assert set(ERRORS) == set(expected)
    for code, (cls, builtin) in expected.items():
        e = error_for(code, "boom")
        assert type(e) is cls and isinstance(e, builtin) and isinstance(e, parml.ParmlError)
        assert e.code == code and str(e) == "boom"
        assert e.status == _capi.parml_status_string(code).decode().split(":")[0]
    unknown = error_for(99, "from a newer library")
    assert type(unknown) is parml.ParmlError and unknown.code == 99


def test_invalid_argument():
    with pytest.raises(parml.InvalidArgumentError, match=r"parml_model_add_layer: dropout: attribute 'p' must be in \[0, 1\), got 1.5"):
        parml.Sequential([parml.Linear(2, 2), parml.Dropout(1.5)])
    with pytest.raises(parml.InvalidArgumentError, match="ndim"):
        parml.Tensor(np.zeros((1,) * 9, np.float32))
    x, _ = blobs(8)
    with mlp() as model, parml.Trainer(model) as trainer:
        # a target that is not a class index: nothing is updated
        before = model.parameters
        with pytest.raises(parml.InvalidArgumentError) as info:
            trainer.step(x, np.array([0, 1, 2, 7, 0, 1, 2, 0]))
        assert info.value.code == _capi.PARML_ERR_INVALID_ARGUMENT
        assert info.value.message and "parml_trainer_step" in info.value.message
        assert np.array_equal(model.parameters, before) and trainer.step_count == 0
    with pytest.raises(parml.InvalidArgumentError):
        with mlp() as model:
            parml.Trainer(model, optimizer=parml.SGD(0.1, momentum=-1.0))


def test_shape():
    x, y = blobs(16)
    with mlp() as model, parml.Trainer(model) as trainer:
        with pytest.raises(parml.ShapeError) as info:
            trainer.step(x[:, :5], y)
        assert "parml_trainer_step" in str(info.value)
        with pytest.raises(parml.ShapeError):
            model.set_parameters(np.zeros(3, np.float32))
        with pytest.raises(parml.ShapeError):
            model.output_shape((4, 7))
    with pytest.raises(parml.ShapeError):
        parml.Dataset(x, y[:-1])


def test_mpi_layout_needs_mpirun():
    with mlp() as model:
        with pytest.raises(parml.InvalidArgumentError, match="not started by mpirun"):
            parml.Trainer(model, strategy=parml.Strategy(dp=2, backend="mpi"))


def test_tp_must_divide_the_split_width():
    with mlp(hidden=30) as model:
        with pytest.raises(parml.InvalidArgumentError, match="tp=4 does not divide the width 30"):
            parml.Trainer(model, strategy=parml.Strategy(tp=4))


def test_out_of_memory():
    # 2^38 floats (1 TiB): the allocation fails and the library says so
    with pytest.raises(parml.OutOfMemoryError, match="allocate") as info:
        parml.Tensor.zeros((1 << 20, 1 << 18))
    assert isinstance(info.value, MemoryError)


def test_io(tmp_path):
    missing = tmp_path / "no-such-images.gz"
    with pytest.raises(parml.ParmlIOError, match="no-such-images") as info:
        parml.load_idx(missing, tmp_path / "no-such-labels.gz")
    assert isinstance(info.value, OSError)


def test_format(tmp_path):
    junk = tmp_path / "images.gz"
    with gzip.open(junk, "wb") as f:
        f.write(b"this is not an IDX file at all")
    with pytest.raises(parml.FormatError):
        parml.load_idx(junk, junk)


def test_state():
    m = parml.Model().add(parml.Linear(2, 3))
    with m:
        with pytest.raises(parml.StateError):
            m.predict(np.zeros((1, 2), np.float32))
        with pytest.raises(parml.StateError):
            parml.Trainer(m)
        with pytest.raises(parml.StateError):
            m.parameters
        m.initialize(3)
        with pytest.raises(parml.StateError):
            m.add(parml.ReLU())
    with parml.Model() as empty:
        with pytest.raises(parml.StateError, match="no layers"):
            empty.initialize()


def test_blas_error_in_a_fresh_process():
    # OpenBLAS loads once per process: point parml at a library without cblas_sgemm.
    code = (
        "import parml\n"
        "try:\n"
        "    parml.blas_core()\n"
        "except parml.BLASError as e:\n"
        "    print('BLASError', e.code, e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=subprocess_env(PARML_OPENBLAS_LIBRARY="libz.so.1"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"BLASError {_capi.PARML_ERR_BLAS} ") and "cblas_sgemm" in out.stdout


def test_cancelled():
    x, y = blobs(64)
    with mlp() as model, parml.Trainer(model) as trainer, parml.Dataset(x, y) as ds:
        # through the C API: a progress function returning nonzero
        fn = _capi.parml_progress_fn(lambda metrics, user: 1)
        params = _capi.parml_fit_params()
        parml.check(_capi.parml_fit_params_init(params))
        params.epochs = 3
        params.progress = fn
        status = _capi.parml_trainer_fit(trainer, ds, params, None)
        assert status == _capi.PARML_ERR_CANCELLED
        with pytest.raises(parml.CancelledError):
            parml.check(status)
        assert trainer.step_count == 1  # the first epoch stays applied
        # the Pythonic callback stops without an error
        history = trainer.fit(ds, epochs=5, verbose=False, callback=lambda m: m.epoch == 2)
        assert history.stopped_early and len(history) == 2


def test_message_is_read_on_the_failing_thread():
    import threading

    with pytest.raises(parml.ShapeError):
        parml.Dataset(np.zeros((3, 2), np.float32), np.zeros(2, np.float32))
    mine = _capi.parml_last_error()
    caught = []

    def worker():
        try:
            parml.Tensor(np.zeros((1,) * 9, np.float32))
        except parml.InvalidArgumentError as e:
            caught.append(str(e))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert caught and "ndim" in caught[0]
    assert _capi.parml_last_error() == mine  # this thread's message is its own


COMMUNICATION_SCRIPT = """
import os
import numpy as np, parml
x = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
y = np.arange(64) % 3
for _ in range(300):
    model = parml.Sequential([parml.Linear(8, 32), parml.ReLU(), parml.Linear(32, 3)])
    trainer = parml.Trainer(model, strategy=parml.Strategy(dp=2, watchdog_seconds=1e-9))
    for _ in range(3):
        try:
            trainer.step(x, y)
        except parml.CommunicationError as e:
            # one write(2) per line: the process may crash right after (see below)
            os.write(1, f"COMMUNICATION {e.code} {e}\\n".encode())
            try:
                trainer.step(x, y)
            except parml.StateError as e:
                os.write(1, f"STATE {e}\\n".encode())
            os._exit(0)
    trainer.close()
    model.close()
os.write(1, b"NO TIMEOUT\\n")
os._exit(0)
"""


# The child's limit, for a hang: it ends in about a second (numpy and parml
# imports, one trainer, one step). Generous on purpose (issue 24, item 8: it
# was 60 s): it only tells a hang from an end, on a machine of any load.
COMMUNICATION_LIMIT_S = 300


def test_communication():
    # A watchdog of 1 ns on dp=2: a step times out when one rank reaches a
    # collective before the other. The first rank to arrive always waits for
    # the second, so the first step times out: measured 60 of 60 runs at the
    # first step (2026-12-04; 30 on an idle machine, 30 with both cores busy
    # with other loops). The script still tries up to 300 trainers, so a
    # machine where both ranks arrive within 1 ns now and then does not fail
    # it. It runs in a child process so that a crash (a rank thread waking
    # after the host gave up on its step once ran a cleared body in RankPool,
    # now fixed) fails this test instead of the suite.
    out = subprocess.run(
        [sys.executable, "-c", COMMUNICATION_SCRIPT],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=COMMUNICATION_LIMIT_S,
    )
    lines = out.stdout.splitlines()
    assert "NO TIMEOUT" not in lines
    if lines:
        assert lines[0].startswith(f"COMMUNICATION {_capi.PARML_ERR_COMMUNICATION} parml_trainer_step")
        assert "1e-09 s" in lines[0]
    if len(lines) > 1:
        # the trainer refuses further steps: its replicas may disagree
        assert lines[1].startswith("STATE") and "earlier step failed" in lines[1]
    assert out.returncode == 0, out.stderr
    assert len(lines) == 2


def test_internal_is_mapped():
    # PARML_ERR_INTERNAL (a bug in parml) has no trigger a host can pull; its
    # mapping is checked here and in test_every_code_has_its_class.
    assert ERRORS[_capi.PARML_ERR_INTERNAL] is parml.InternalError
