"""batch_norm from Python (issue 18, part 3): PyTorch's BatchNorm1d/2d
numbers from the same weights (training steps, running statistics, evaluation),
files and ONNX keep the running statistics, and the global ('SyncBatchNorm')
statistics make dp and pp train serial training's bits."""

from __future__ import annotations

import numpy as np
import pytest

import parml


def bn_cnn(seed=5, statistics="global"):
    return parml.Sequential(
        [
            parml.Conv2d(1, 4, 3, padding=1),
            parml.BatchNorm(4, statistics=statistics),
            parml.ReLU(),
            parml.MaxPool2d(2),
            parml.Flatten(),
            parml.Linear(4 * 4 * 5, 6),
            parml.BatchNorm(6, momentum=0.2, eps=1e-3),
            parml.ReLU(),
            parml.Linear(6, 3),
        ],
        seed=seed,
    )


def torch_cnn(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 5, 6),
        nn.BatchNorm1d(6, momentum=0.2, eps=1e-3),
        nn.ReLU(),
        nn.Linear(6, 3),
    )


def batch(n=10, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 1, 8, 10)) * 2 + 0.5).astype(np.float32), rng.integers(0, 3, size=n)


def test_parameters_and_running_statistics_are_named_as_torch_names_them(tmp_path):
    with bn_cnn() as m:
        state = m.state_dict()
        assert [k for k in state if k.startswith("1.")] == ["1.weight", "1.bias", "1.running_mean", "1.running_var"]
        np.testing.assert_array_equal(state["1.running_mean"], np.zeros(4, np.float32))
        np.testing.assert_array_equal(state["1.running_var"], np.ones(4, np.float32))
        assert "batch_norm num_features=4 eps=1e-05 momentum=0.1 affine=true statistics='global'" in m.summary()
    with pytest.raises(parml.InvalidArgumentError, match="statistics"):
        parml.Sequential([parml.BatchNorm(3, statistics="per_rank")])
    with pytest.raises(parml.InvalidArgumentError, match="momentum"):
        parml.Sequential([parml.BatchNorm(3, momentum=1.5)])
    with parml.Sequential([parml.BatchNorm(3)], seed=1) as m:
        with pytest.raises(parml.ShapeError, match=r"batch_norm\(3\) expects input"):
            m.predict(np.zeros((2, 4), np.float32))


def test_trains_as_torch_does_from_the_same_weights(tmp_path):
    """Five SGD-momentum steps in training mode: every loss, every parameter
    and both layers' running statistics agree with PyTorch's; then the
    evaluation outputs (running statistics) agree too, also after a save and
    a load."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    batches = [batch(10, seed=k) for k in range(5)]
    with bn_cnn() as model:
        ref = torch_cnn(torch)
        ref.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()}, strict=False)
        opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
        want = []
        for x, y in batches:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(ref(torch.from_numpy(x)), torch.from_numpy(y))
            loss.backward()
            opt.step()
            want.append(loss.item())
        with parml.Trainer(model, optimizer=parml.SGD(0.1, 0.9)) as trainer:
            got = [trainer.step(x, y) for x, y in batches]
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)
        theirs = ref.state_dict()
        for name, p in model.state_dict().items():
            np.testing.assert_allclose(p, theirs[name].numpy(), rtol=1e-5, atol=2e-5, err_msg=name)
        ref.eval()
        x, _ = batch(7, seed=9)
        with torch.no_grad():
            expected = ref(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(model.predict(x), expected, rtol=1e-4, atol=1e-4)
        model.save(tmp_path / "bn.pb")
        with parml.Model.load(tmp_path / "bn.pb") as back:
            np.testing.assert_array_equal(back.predict(x), model.predict(x))
            np.testing.assert_array_equal(back.state_dict()["6.running_var"], model.state_dict()["6.running_var"])


def test_onnx_export_matches_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    with bn_cnn() as model:
        with parml.Trainer(model, optimizer=parml.SGD(0.1, 0.9)) as trainer:
            for k in range(3):
                trainer.step(*batch(10, seed=k))
        model.export_onnx(tmp_path / "bn.onnx", input_shape=(2, 1, 8, 10))
        session = ort.InferenceSession(str(tmp_path / "bn.onnx"), providers=["CPUExecutionProvider"])
        for n in (1, 6):
            x, _ = batch(n, seed=20 + n)
            (out,) = session.run(["output"], {"input": x})
            np.testing.assert_allclose(out, model.predict(x), rtol=1e-4, atol=1e-4)


def train(strategy, statistics="global", steps=3):
    with bn_cnn(statistics=statistics) as model, parml.Trainer(model, optimizer=parml.SGD(0.1, 0.9), strategy=strategy) as t:
        losses = [t.step(*batch(13, seed=k)) for k in range(steps)]
        return losses, model.state_dict(), t.plan()


@pytest.mark.parametrize(
    "layout",
    [dict(dp=2), dict(dp=3, zero=3), dict(pp=2, micro_batches=3), dict(dp=2, pp=2, micro_batches=2, zero=2), dict(tp=2)],
)
def test_global_statistics_make_every_layout_serial_bit_for_bit(layout):
    _, serial, _ = train(parml.Strategy(deterministic=True, grad_chunk=4))
    _, split, plan = train(parml.Strategy(deterministic=True, grad_chunk=4, **layout))
    assert "batch_norm: each one waits for all of a step's micro-batches" in plan
    for name in serial:
        np.testing.assert_array_equal(split[name], serial[name], err_msg=name)


def test_local_statistics_are_each_ranks_own_in_the_default_mode():
    """PyTorch's BatchNorm under DDP without SyncBatchNorm: each rank
    normalises its own rows, so dp = 2 no longer follows serial training."""
    _, serial, _ = train(parml.Strategy(), statistics="local")
    _, dp2, _ = train(parml.Strategy(dp=2), statistics="local")
    assert max(np.abs(dp2[k] - serial[k]).max() for k in serial) > 1e-3
    _, dp2_global, _ = train(parml.Strategy(dp=2))
    _, serial_global, _ = train(parml.Strategy())
    for name in serial_global:
        np.testing.assert_allclose(dp2_global[name], serial_global[name], rtol=0, atol=2e-5, err_msg=name)
