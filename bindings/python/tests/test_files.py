"""Model files, tensor messages and checkpoints through the bindings."""

from __future__ import annotations

import numpy as np
import pytest

import parml


def every_kind(seed: int) -> parml.Sequential:
    return parml.Sequential(
        [
            parml.Flatten(),
            parml.Linear(12, 16),
            parml.ReLU(),
            parml.Residual([parml.LayerNorm(16, eps=1e-3), parml.Residual([parml.Linear(16, 16, bias=False), parml.GELU()]), parml.Dropout(0.2)]),
            parml.Tanh(),
            parml.Linear(16, 4),
            parml.Sigmoid(),
        ],
        seed=seed,
    )


def batch(step: int, n: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(100 + step)
    return rng.normal(size=(n, 3, 4)).astype(np.float32), (np.arange(n) * 7 + step) % 4


def test_model_save_load_and_bytes(tmp_path):
    x, _ = batch(0)
    with every_kind(5) as model:
        path = tmp_path / "model.pb"
        model.save(path)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pb"]
        assert model.to_bytes() == path.read_bytes()
        for back in (parml.Model.load(path), parml.Model.from_bytes(path.read_bytes())):
            with back:
                assert back.initialized
                assert back.summary() == model.summary()
                np.testing.assert_array_equal(back.parameters, model.parameters)
                np.testing.assert_array_equal(back.predict(x), model.predict(x))


def test_tensor_bytes_round_trip():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7
    with parml.Tensor(a) as t, parml.Tensor.from_bytes(t.to_bytes()) as back:
        assert back.shape == (2, 3, 4)
        np.testing.assert_array_equal(back.numpy(), a)


def make_trainer(model: parml.Model, dp: int, zero: int) -> parml.Trainer:
    strategy = parml.Strategy(dp=dp, zero=zero, deterministic=True, grad_chunk=8, seed=3)
    return parml.Trainer(model, optimizer=parml.AdamW(1e-2), strategy=strategy)


def test_checkpoint_resumes_under_another_layout(tmp_path):
    with every_kind(5) as ref_model, make_trainer(ref_model, 1, 0) as ref:
        for k in range(4):
            ref.step(*batch(k))
        with every_kind(5) as m1, make_trainer(m1, 2, 1) as t1:
            for k in range(2):
                t1.step(*batch(k))
            t1.save_checkpoint(tmp_path / "c.ckpt")
            data = t1.checkpoint_bytes()
        assert data == (tmp_path / "c.ckpt").read_bytes()
        with every_kind(99) as m2, make_trainer(m2, 3, 3) as t2:
            t2.load_checkpoint(tmp_path / "c.ckpt")
            assert t2.step_count == 2
            for k in range(2, 4):
                t2.step(*batch(k))
            np.testing.assert_array_equal(m2.parameters, ref_model.parameters)
        with every_kind(7) as m3, make_trainer(m3, 1, 0) as t3:
            t3.load_checkpoint_bytes(data)
            assert t3.step_count == 2
        # A process with only the checkpoint gets the model out of it.
        with parml.Model.load(tmp_path / "c.ckpt") as m4, make_trainer(m4, 2, 2) as t4:
            t4.load_checkpoint(tmp_path / "c.ckpt")
            for k in range(2, 4):
                t4.step(*batch(k))
            np.testing.assert_array_equal(m4.parameters, ref_model.parameters)


def test_bad_files_raise(tmp_path):
    junk = tmp_path / "junk.pb"
    junk.write_bytes(b"\x0a\x03abc" * 10)
    with pytest.raises(parml.FormatError, match="parml_model_load"):
        parml.Model.load(junk)
    with pytest.raises(parml.ParmlIOError):
        parml.Model.load(tmp_path / "missing.pb")
    with every_kind(1) as model:
        data = model.to_bytes()
        with pytest.raises(parml.FormatError, match="truncated"):
            parml.Model.from_bytes(data[:-9])
        with make_trainer(model, 1, 0) as t, pytest.raises(parml.FormatError):
            t.load_checkpoint_bytes(data)
    with pytest.raises(TypeError):
        parml.Model.from_bytes("not bytes")
