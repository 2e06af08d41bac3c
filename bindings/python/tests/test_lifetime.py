"""close(), context managers, use after close, parents kept alive, shutdown,
and the per-handle lock that serialises Python threads."""

from __future__ import annotations

import ctypes
import gc
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import parml

from conftest import blobs, mlp, subprocess_env


def make_all():
    x, y = blobs(32)
    model = mlp()
    trainer = parml.Trainer(model)
    ds = parml.Dataset(x, y)
    tensor = parml.Tensor(x)
    return x, y, model, trainer, ds, tensor


def test_close_twice_and_closed():
    _, _, model, trainer, ds, tensor = make_all()
    for obj in (trainer, model, ds, tensor):
        assert not obj.closed
        obj.close()
        assert obj.closed
        obj.close()  # a no-op
        assert obj.closed
        assert "closed" in repr(obj)


def test_use_after_close_raises_not_crashes():
    x, y, model, trainer, ds, tensor = make_all()
    for obj in (trainer, model, ds, tensor):
        obj.close()
    calls = [
        lambda: model.predict(x),
        lambda: model.parameters,
        lambda: model.set_parameters(np.zeros(10)),
        lambda: model.num_params,
        lambda: model.summary(),
        lambda: model.add(parml.ReLU()),
        lambda: model.initialize(1),
        lambda: model.output_shape((1, 8)),
        lambda: trainer.step(x, y),
        lambda: trainer.fit(x, y, verbose=False),
        lambda: trainer.evaluate(x, y),
        lambda: trainer.step_count,
        lambda: trainer.learning_rate,
        lambda: trainer.memory(0),
        lambda: len(ds),
        lambda: ds.input_shape,
        lambda: ds.num_classes,
        lambda: tensor.numpy(),
        lambda: tensor.shape,
        lambda: tensor.write(x),
        lambda: parml.Trainer(model),
        lambda: model.detach(),
        lambda: parml._capi.parml_model_num_params(model, None),
    ]
    for call in calls:
        with pytest.raises(parml.ClosedError, match="closed"):
            call()
    # a fresh trainer on a closed dataset
    with mlp() as m2, parml.Trainer(m2) as t2:
        with pytest.raises(parml.ClosedError):
            t2.fit(ds, verbose=False)
        with pytest.raises(parml.ClosedError):
            t2.step(tensor, tensor)
    assert issubclass(parml.ClosedError, parml.InvalidArgumentError)


def test_context_managers():
    x, y = blobs(32)
    with mlp() as model:
        with parml.Trainer(model) as trainer:
            trainer.step(x, y)
        assert trainer.closed and not model.closed
    assert model.closed
    with pytest.raises(parml.ClosedError):
        with model:
            pass


def test_trainer_keeps_its_model_alive():
    x, y = blobs(32)
    model = mlp()
    trainer = parml.Trainer(model)
    params = model.parameters
    del model
    gc.collect()
    trainer.step(x, y)
    assert not trainer.model.closed
    assert not np.array_equal(trainer.model.parameters, params)
    trainer.close()


def test_closing_the_model_first_is_safe():
    # The C trainer holds its own reference to the model.
    x, y = blobs(32)
    model = mlp()
    trainer = parml.Trainer(model)
    model.close()
    assert trainer.step(x, y) > 0
    with pytest.raises(parml.ClosedError):
        trainer.model.predict(x)
    trainer.close()


def test_detach_hands_over_the_pointer():
    model = mlp()
    n = model.num_params
    ptr = model.detach()
    assert model.closed
    out = ctypes.c_int64()
    assert parml._capi.parml_model_num_params(ptr, ctypes.byref(out)) == 0
    assert out.value == n
    parml._capi.parml_model_free(ptr)


def test_garbage_collection_frees_without_close():
    x, y = blobs(32)
    for _ in range(20):
        model = mlp()
        trainer = parml.Trainer(model)
        trainer.step(x, y)
        parml.Dataset(x, y)
    del model, trainer
    gc.collect()


def test_objects_left_open_at_interpreter_exit():
    # Objects alive in module globals (and in a reference cycle) at exit,
    # including a dp=2 trainer whose rank thread is running: no crash, no noise.
    code = textwrap.dedent(
        """
        import numpy as np, parml
        x = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
        y = np.arange(64) % 3
        model = parml.Sequential([parml.Linear(8, 16), parml.ReLU(), parml.Linear(16, 3)])
        trainer = parml.Trainer(model, strategy=parml.Strategy(dp=2))
        trainer.step(x, y)
        ds = parml.Dataset(x, y)
        cycle = [trainer, ds]
        cycle.append(cycle)
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok" and out.stderr == ""


def test_two_threads_on_one_trainer_are_serialised():
    x, y = blobs(64)
    with mlp() as model, parml.Trainer(model, optimizer=parml.SGD(0.01)) as trainer:
        errors = []

        def work():
            try:
                for _ in range(25):
                    trainer.step(x, y)
                    model.predict(x[:4])
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert trainer.step_count == 50


def test_a_held_handle_blocks_other_threads():
    # The model and its trainer share one lock: while one thread holds it,
    # another thread's call waits instead of entering C concurrently.
    x, y = blobs(32)
    with mlp() as model, parml.Trainer(model) as trainer:
        assert trainer._guard is model._guard
        done = threading.Event()

        def other():
            trainer.step(x, y)
            done.set()

        with model._use():
            t = threading.Thread(target=other)
            t.start()
            time.sleep(0.2)
            assert not done.is_set()
        t.join(10)
        assert done.is_set() and trainer.step_count == 1


def test_callback_may_not_step_its_trainer():
    x, y = blobs(64)
    with mlp() as model, parml.Trainer(model) as trainer:
        with pytest.raises(parml.StateError, match="inside the callback"):
            trainer.fit(x, y, epochs=2, verbose=False, callback=lambda m: trainer.step(x, y))
        with pytest.raises(ZeroDivisionError):
            trainer.fit(x, y, epochs=2, verbose=False, callback=lambda m: 1 / 0)
        # usable afterwards; each failed fit ran one epoch
        assert trainer.step_count == 2
        trainer.step(x, y)
