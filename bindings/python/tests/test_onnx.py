"""ONNX export: onnxruntime runs the exported file and matches parml."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import parml


def trained(layers, x, y, seed=3):
    model = parml.Sequential(layers, seed=seed)
    with parml.Trainer(model, optimizer=parml.Adam(1e-2)) as t:
        for _ in range(5):
            t.step(x, y)
    return model


def run_onnx(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(["output"], {"input": x})
    return out


@pytest.mark.parametrize("batch", [1, 7])
def test_every_layer_kind_matches_onnxruntime(tmp_path, batch):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 3, 4)).astype(np.float32)
    y = np.arange(32) % 5
    layers = [
        parml.Flatten(),
        parml.Linear(12, 16),
        parml.GELU(),
        parml.Residual([parml.LayerNorm(16, eps=1e-3), parml.Residual([parml.Linear(16, 16, bias=False), parml.Tanh()]), parml.Dropout(0.3)]),
        parml.Sigmoid(),
        parml.Linear(16, 16),
        parml.ReLU(),
        parml.Linear(16, 5),
    ]
    with trained(layers, x, y) as model:
        path = tmp_path / "model.onnx"
        model.export_onnx(path, input_shape=(1, 3, 4))
        probe = rng.normal(size=(batch, 3, 4)).astype(np.float32)
        want = model.predict(probe)
        got = run_onnx(path, probe)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_linear_on_rank_3_inputs_uses_matmul(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 5, 8)).astype(np.float32)
    with parml.Sequential([parml.Linear(8, 4), parml.Tanh(), parml.Linear(4, 3, bias=False)], seed=4) as model:
        path = tmp_path / "m.onnx"
        model.export_onnx(path, input_shape=(6, 5, 8))
        np.testing.assert_allclose(run_onnx(path, x), model.predict(x), rtol=1e-5, atol=1e-5)


def test_export_checks_its_arguments(tmp_path):
    with parml.Sequential([parml.Linear(8, 4)], seed=1) as model:
        with pytest.raises(parml.ShapeError):
            model.export_onnx(tmp_path / "m.onnx", input_shape=(2, 7))
        with pytest.raises(parml.ParmlIOError):
            model.export_onnx(tmp_path / "no" / "dir" / "m.onnx", input_shape=(2, 8))
    with parml.Model() as empty:
        empty.add(parml.Linear(2, 2))
        with pytest.raises(parml.StateError):
            empty.export_onnx(tmp_path / "m.onnx", input_shape=(1, 2))
