"""DP-SGD in the trainer (docs/privacy.md): per-example clipping against
torch's per-sample gradients (torch.func), the epsilon fit reports against
the accountant, dp, pp and tp against serial, and refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest

import parml

from conftest import blobs, expect_clipped_step


def _model(seed: int = 3) -> parml.Sequential:
    return parml.Sequential(
        [parml.Linear(8, 16), parml.Tanh(), parml.LayerNorm(16), parml.Linear(16, 3)], seed=seed
    )


def test_private_step_matches_torch_per_sample_clipping():
    """One private SGD step (lr 1, sigma 0) moves the parameters by
    -(1/N) sum_i clip(g_i), g_i from torch.func's per-sample gradients of
    the same model."""
    torch = pytest.importorskip("torch")
    from torch.func import functional_call, grad, vmap

    x, y = blobs(24, seed=5)
    c = 3.6
    with _model() as model:
        before = model.state_dict()
        with parml.Trainer(model, optimizer=parml.SGD(1.0), privacy=parml.Privacy(noise_multiplier=0, max_grad_norm=c)) as t:
            t.step(x, y)
        after = model.state_dict()

    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.LayerNorm(16), torch.nn.Linear(16, 3))
    net.load_state_dict({k: torch.from_numpy(v.astype(np.float64)) for k, v in before.items()})
    net = net.double()
    params = {k: v.detach() for k, v in net.named_parameters()}

    def loss(p, xi, yi):
        out = functional_call(net, p, (xi.unsqueeze(0),))
        return torch.nn.functional.cross_entropy(out, yi.unsqueeze(0))

    g = vmap(grad(loss), in_dims=(None, 0, 0))(params, torch.from_numpy(x).double(), torch.from_numpy(y))
    expect_clipped_step(before, after, g, c, clipped=3)


def test_private_cnn_step_matches_torch_per_sample_clipping():
    """The tanh CNN of the MNIST report (both conv2d norm forms: the first
    layer materialised, the second Gram) on 12x12 images: one private step
    (lr 1, sigma 0) against torch.func's per-sample gradients, clipped."""
    torch = pytest.importorskip("torch")
    from torch.func import functional_call, grad, vmap

    rng = np.random.default_rng(7)
    x = rng.standard_normal((10, 1, 12, 12)).astype(np.float32)
    y = rng.integers(0, 4, 10).astype(np.int32)
    c = 2.9
    layers = lambda m: [  # noqa: E731 (same structure in both libraries)
        m.Conv2d(1, 6, 4, stride=2, padding=1), m.Tanh(), m.MaxPool2d(2, stride=1),  # (N, 6, 5, 5)
        m.Conv2d(6, 16, 3, stride=2), m.Tanh(), m.Flatten(), m.Linear(16 * 2 * 2, 4),  # (N, 16, 2, 2)
    ]
    with parml.Sequential(layers(parml), seed=2) as model:
        before = model.state_dict()
        with parml.Trainer(model, optimizer=parml.SGD(1.0), privacy=parml.Privacy(noise_multiplier=0, max_grad_norm=c)) as t:
            t.step(x, y)
        after = model.state_dict()

    net = torch.nn.Sequential(*layers(torch.nn)).double()
    net.load_state_dict({k: torch.from_numpy(v.astype(np.float64)) for k, v in before.items()})
    params = {k: v.detach() for k, v in net.named_parameters()}

    def loss(p, xi, yi):
        return torch.nn.functional.cross_entropy(functional_call(net, p, (xi.unsqueeze(0),)), yi.unsqueeze(0).long())

    g = vmap(grad(loss), in_dims=(None, 0, 0))(params, torch.from_numpy(x).double(), torch.from_numpy(y))
    expect_clipped_step(before, after, g, c, clipped=2)


def test_fit_reports_the_accountants_epsilon():
    x, y = blobs(400, seed=2)
    privacy = parml.Privacy(noise_multiplier=1.1, max_grad_norm=1.0, delta=1e-5)
    with parml.Sequential([parml.Linear(8, 16), parml.ReLU(), parml.Linear(16, 3)], seed=1) as model:
        with parml.Trainer(model, optimizer=parml.SGD(0.2, momentum=0.5), privacy=privacy) as t:
            assert t.epsilon == 0.0
            history = t.fit(x, y, epochs=3, batch_size=40, verbose=False)
            q = 40 / 400
            for e, m in enumerate(history, start=1):
                want = parml.privacy.epsilon(q=q, sigma=1.1, steps=10 * e, delta=1e-5)
                assert m.privacy_epsilon == pytest.approx(want, rel=1e-9), (e, m)
            assert t.epsilon == pytest.approx(history.last.privacy_epsilon, rel=1e-12)
            assert t.privacy_spent(1e-3) < t.epsilon
            assert "eps " in history.last.line()
            assert history.last.train_accuracy > 0.8, history.last
            # Shuffled batches count at the same q (the docs say the guarantee is not the same).
            t.set_privacy(parml.Privacy(noise_multiplier=1.1, max_grad_norm=1.0, sampling="shuffled"))
            t.fit(x, y, epochs=1, batch_size=40, verbose=False)
            assert t.epsilon == pytest.approx(parml.privacy.epsilon(q=q, sigma=1.1, steps=40, delta=1e-5), rel=1e-9)


def test_a_checkpoint_carries_the_accounting(tmp_path):
    """Two epochs, a checkpoint, one more epoch in a new trainer: the same
    epsilon and parameters as three epochs uninterrupted (deterministic)."""
    x, y = blobs(200, seed=3)
    privacy = parml.Privacy(noise_multiplier=1.1, max_grad_norm=0.5)

    def trainer(model):
        s = parml.Strategy(deterministic=True, seed=4)
        return parml.Trainer(model, optimizer=parml.SGD(0.2, momentum=0.9), strategy=s, privacy=privacy)

    with _model(1) as ref, trainer(ref) as t:
        t.fit(x, y, epochs=3, batch_size=25, verbose=False)
        want_eps, want = t.epsilon, ref.parameters
    with _model(1) as m, trainer(m) as t:
        t.fit(x, y, epochs=2, batch_size=25, verbose=False)
        eps2 = t.epsilon
        t.save_checkpoint(tmp_path / "run.ckpt")
    with _model(8) as m, trainer(m) as t:
        t.load_checkpoint(tmp_path / "run.ckpt")
        assert t.epsilon == eps2 == pytest.approx(parml.privacy.epsilon(q=25 / 200, sigma=1.1, steps=16, delta=1e-5), rel=1e-12)
        t.fit(x, y, epochs=1, batch_size=25, verbose=False)
        assert t.epsilon == want_eps
        np.testing.assert_array_equal(m.parameters, want)


def test_sigma_zero_and_huge_norm_is_ordinary_training():
    x, y = blobs(64, seed=4)
    with _model() as a, _model() as b:
        with parml.Trainer(a, optimizer=parml.SGD(0.1, momentum=0.9)) as ta, parml.Trainer(
            b, optimizer=parml.SGD(0.1, momentum=0.9), privacy=parml.Privacy(noise_multiplier=0, max_grad_norm=1e30)
        ) as tb:
            for _ in range(3):
                assert ta.step(x, y) == tb.step(x, y)
            assert math.isinf(tb.epsilon)  # no noise: no guarantee
        np.testing.assert_array_equal(a.parameters, b.parameters)


@pytest.mark.parametrize(
    "layout",
    [
        dict(dp=2),
        dict(pp=2),
        dict(pp=2, micro_batches=3, schedule="gpipe"),
        dict(pp=2, micro_batches=2),
        dict(dp=2, pp=2, micro_batches=2, zero=1),
    ],
    ids=["dp2", "pp2", "pp2_m3_gpipe", "pp2_m2_1f1b", "dp2pp2"],
)
def test_private_training_in_a_layout_is_bit_identical_to_serial(layout):
    np.testing.assert_array_equal(_private_fit(**layout), _private_fit())


def _private_fit(model=_model, **layout) -> np.ndarray:
    x, y = blobs(96, seed=6)
    s = parml.Strategy(deterministic=True, seed=9, **layout)
    with model() as m, parml.Trainer(
        m, optimizer=parml.SGD(0.1), strategy=s, privacy=parml.Privacy(noise_multiplier=1.0, max_grad_norm=0.5)
    ) as t:
        t.fit(x, y, epochs=2, batch_size=32, verbose=False)
        return m.parameters


def test_tp2_private_training_matches_serial_within_rounding():
    # A column/row pair (8 -> 32 -> 8) between a replicated linear and layer_norm and the classifier.
    def model() -> parml.Sequential:
        return parml.Sequential(
            [parml.Linear(8, 16), parml.Tanh(), parml.LayerNorm(16), parml.Linear(16, 32), parml.GELU(),
             parml.Linear(32, 16), parml.Tanh(), parml.Linear(16, 3)],
            seed=3,
        )

    serial = _private_fit(model)
    got = _private_fit(model, tp=2)
    # tp's rounding bound (docs/model-parallel.md): 2e-6 of the largest parameter per step, 6 steps.
    assert np.abs(got - serial).max() <= 2e-6 * 6 * np.abs(serial).max()
    np.testing.assert_array_equal(_private_fit(model, tp=2, pp=2, micro_batches=2), got)


def test_refusals():
    with _model() as m, parml.Trainer(m) as t:
        for bad in (dict(noise_multiplier=-1.0), dict(max_grad_norm=0.0), dict(max_grad_norm=math.nan), dict(delta=1.0)):
            with pytest.raises(parml.InvalidArgumentError):
                t.set_privacy(parml.Privacy(**bad))
        assert t.epsilon is None
        with pytest.raises(parml.InvalidArgumentError, match="sampling"):
            parml.Privacy(sampling="uniform")
    bn = parml.Sequential([parml.Linear(8, 4), parml.BatchNorm(4), parml.Linear(4, 3)], seed=1)
    with bn, parml.Trainer(bn) as t:
        with pytest.raises(parml.UnsupportedError, match="layer_norm"):
            t.set_privacy(parml.Privacy())
    four = parml.Sequential([parml.Linear(8, 16), parml.Tanh(), parml.LayerNorm(16), parml.Linear(16, 4)], seed=1)
    with four:
        with pytest.raises(parml.UnsupportedError, match="private training with split_classifier"):
            parml.Trainer(four, strategy=parml.Strategy(tp=2, split_classifier=True), privacy=parml.Privacy())
    with _model() as m:
        interleaved = parml.Strategy(pp=2, schedule="interleaved", virtual_stages=2, micro_batches=2)
        with pytest.raises(parml.UnsupportedError, match="interleaved 1F1B"):
            parml.Trainer(m, strategy=interleaved, privacy=parml.Privacy())
