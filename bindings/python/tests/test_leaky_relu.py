"""leaky_relu, the kind added by docs/adding-a-layer.md, from Python: its
class comes from the kinds query, it trains under tensor parallelism inside
a column/row pair as serially, and it matches PyTorch and onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

import parml

from conftest import blobs


def net(seed=5):
    return parml.Sequential(
        [parml.Linear(8, 16), parml.LeakyReLU(0.1), parml.Linear(16, 8), parml.LeakyReLU(), parml.Linear(8, 3)], seed=seed
    )


def test_class_from_the_kinds_query():
    layer = parml.LeakyReLU()
    assert layer.negative_slope == pytest.approx(0.01)
    assert repr(parml.LeakyReLU(0.2)) == "LeakyReLU(negative_slope=0.2)"
    assert "negative_slope" in parml.LeakyReLU.__doc__
    with pytest.raises(parml.InvalidArgumentError, match="leaky_relu: attribute 'negative_slope' must be finite"):
        parml.Sequential([parml.Linear(2, 2), parml.LeakyReLU(float("nan"))])


def test_predicts_the_formula_and_round_trips(tmp_path):
    x, _ = blobs(64, seed=1)
    model = parml.Sequential([parml.LeakyReLU(0.3)], seed=0)
    np.testing.assert_array_equal(model.predict(x), np.where(x >= 0, x, np.float32(0.3) * x))
    m = net()
    m.save(tmp_path / "m.pb")
    back = parml.Model.load(tmp_path / "m.pb")
    assert back.summary() == m.summary() and "leaky_relu negative_slope=0.1" in back.summary()
    np.testing.assert_array_equal(back.predict(x), m.predict(x))


def test_tensor_parallel_pair_matches_serial():
    x, y = blobs(256, seed=2)

    def losses(strategy):
        with net() as model, parml.Trainer(model, optimizer=parml.SGD(0.1), strategy=strategy) as t:
            return [t.step(x, y) for _ in range(5)], t.plan()

    serial, _ = losses(parml.Strategy(deterministic=True))
    split, plan = losses(parml.Strategy(tp=2, dp=2, deterministic=True))
    assert "leaky_relu on each rank's 8 of 16 features" in plan, plan
    np.testing.assert_allclose(split, serial, rtol=1e-6, atol=1e-6)


def test_matches_torch_and_onnxruntime(tmp_path):
    x, _ = blobs(32, seed=3)
    model = net()
    state = model.state_dict()
    torch = pytest.importorskip("torch")
    ref = torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.LeakyReLU(0.1), torch.nn.Linear(16, 8), torch.nn.LeakyReLU(), torch.nn.Linear(8, 3)
    )
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    with torch.no_grad():
        np.testing.assert_allclose(model.predict(x), ref(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-6)
    ort = pytest.importorskip("onnxruntime")
    model.export_onnx(tmp_path / "m.onnx", input_shape=(32, 8))
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    (out,) = session.run(["output"], {"input": x})
    np.testing.assert_allclose(out, model.predict(x), rtol=1e-5, atol=1e-6)
