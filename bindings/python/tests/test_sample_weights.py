"""Per-sample loss weights (Keras's sample_weight=): the loss is
Σ wᵢ·lossᵢ / Σ wᵢ over each batch, wᵢ = sample weight × class weight. Checked
against torch's reduction='none' then weighted (loss and gradient), a numpy
reference, layouts, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

import parml

from test_imbalance import C, F, gradient_after_sgd_step, model, skewed, torch_gradient, torch_twin


def sample_weights(n, seed=3):
    w = np.random.default_rng(seed).uniform(0, 2, size=n).astype(np.float32)
    w[::7] = 0  # a weight of 0 leaves a sample out
    return w


@pytest.mark.parametrize("loss_kind", ["cross_entropy", "bce_with_logits", "mse"])
def test_weighted_loss_and_gradient_match_torch(loss_kind):
    torch = pytest.importorskip("torch")
    F_ = torch.nn.functional
    x, y = skewed()
    s = sample_weights(len(x))
    m = model()
    ref = torch_twin(torch, m)
    options = {}
    cw = np.array([0.3, 1.5, 2.0, 5.0], dtype=np.float32)
    if loss_kind == "cross_entropy":
        options = dict(class_weight=cw, label_smoothing=0.1)
    else:
        y = (np.random.default_rng(2).random(size=(len(x), C)) < 0.3).astype(np.float32)
    with parml.Trainer(m, loss=loss_kind, optimizer=parml.SGD(1.0), **options) as trainer:
        trainer_loss = lambda: trainer.step(x, y, sample_weight=s)  # noqa: E731
        before = m.parameters.copy()
        loss = trainer_loss()
        grad = before - m.parameters.copy()
    st = torch.from_numpy(s)

    def weighted():
        out = ref(torch.from_numpy(x))
        if loss_kind == "cross_entropy":
            t = torch.from_numpy(y)
            per = F_.cross_entropy(out, t, weight=torch.from_numpy(cw), label_smoothing=0.1, reduction="none")
            return (st * per).sum() / (st * torch.from_numpy(cw)[t]).sum()
        per = (F_.binary_cross_entropy_with_logits if loss_kind == "bce_with_logits" else F_.mse_loss)(
            out, torch.from_numpy(y), reduction="none")
        return (st[:, None] * per).sum() / (st.sum() * C)

    want_loss, want_grad = torch_gradient(torch, ref, weighted)
    assert loss == pytest.approx(want_loss, rel=1e-5)
    np.testing.assert_allclose(grad, want_grad, atol=1e-6, rtol=1e-4)


def log_softmax(z):
    z = z.astype(np.float64)
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def test_fit_and_evaluate_are_the_numpy_weighted_mean():
    """evaluate(sample_weight=) against numpy; fit(sample_weight=) trains as
    fit on Dataset.with_sample_weight, bit for bit, and dp=2 as serial."""
    x, y = skewed(90)
    s = sample_weights(90)
    cw = np.array([0.5, 1, 2, 4], dtype=np.float32)
    m = model()
    with parml.Trainer(m, class_weight=cw) as t:
        got = t.evaluate(x, y, batch_size=16, sample_weight=s)
        plain = t.evaluate(x, y, batch_size=16)
    nll = -log_softmax(m.predict(x))[np.arange(90), y]
    w = s.astype(np.float64) * cw[y]
    assert got.loss == pytest.approx((w * nll).sum() / w.sum(), rel=1e-6)
    assert plain.loss != pytest.approx(got.loss, rel=1e-3)

    def fit(how, **layout):
        m = model()
        with parml.Trainer(m, optimizer=parml.Adam(1e-2), strategy=parml.Strategy(deterministic=True, seed=3, **layout)) as t:
            if how == "kwarg":
                h = t.fit(x, y, epochs=2, batch_size=16, sample_weight=s, verbose=False,
                          validation_data=(x, y, s))
            else:
                with parml.Dataset(x, y) as d, d.with_sample_weight(s) as dw:
                    h = t.fit(dw, epochs=2, batch_size=16, verbose=False, validation_data=dw)
            return m.parameters.copy(), h.last.val_loss

    serial, val = fit("kwarg")
    same, val2 = fit("dataset")
    assert np.array_equal(serial, same) and val == val2
    assert np.array_equal(fit("kwarg", dp=2)[0], serial)
    unweighted = model()
    with parml.Trainer(unweighted, optimizer=parml.Adam(1e-2), strategy=parml.Strategy(deterministic=True, seed=3)) as t:
        t.fit(x, y, epochs=2, batch_size=16, verbose=False)
    assert not np.array_equal(unweighted.parameters, serial)


def test_weights_are_copied_and_follow_a_split():
    """Weights that depend on the class only act as class weights: each part
    of a split of the weighted dataset evaluates as the same part of the
    plain dataset under those class weights (the split's rows do not
    depend on the weights), so every sample kept its own weight."""
    x, y = skewed(40)
    f = np.array([0.5, 1.0, 3.0, 2.0], dtype=np.float32)
    s = f[y]
    m = model()
    with parml.Dataset(x, y) as d, parml.Trainer(m) as plain_t, parml.Trainer(m, class_weight=f) as class_t:
        dw = d.with_sample_weight(s)
        s[:] = 0  # the dataset holds its own copy of the weights
        parts_w = dw.split(0.3, seed=1)
        parts = d.split(0.3, seed=1)
        for pw, p in zip(parts_w, parts):
            assert len(pw) == len(p)
            assert plain_t.evaluate(pw).loss == pytest.approx(class_t.evaluate(p).loss, rel=1e-6)
            assert plain_t.evaluate(pw).loss != pytest.approx(plain_t.evaluate(p).loss, rel=1e-4)
        for part in (*parts_w, *parts):
            part.close()
    # The weighted dataset keeps the samples alive after its source is closed.
    assert len(dw) == 40 and np.isfinite(parml.Trainer(model()).evaluate(dw).loss)
    dw.close()


def test_bad_sample_weights():
    x, y = skewed(16)
    with parml.Trainer(model()) as t:
        for bad, match in [(np.ones(3), "3 weights for 16 samples"), (np.r_[np.ones(15), -1], "weight 15"),
                           (np.r_[np.nan, np.ones(15)], "finite"), (np.zeros(16), "every weight is 0")]:
            with pytest.raises(parml.InvalidArgumentError, match=match):
                t.fit(x, y, sample_weight=bad, verbose=False)
            with pytest.raises(parml.InvalidArgumentError, match=match):
                t.evaluate(x, y, sample_weight=bad)
        with pytest.raises(ValueError, match="1-D"):
            t.fit(x, y, sample_weight=np.ones((16, 1)), verbose=False)
        with pytest.raises(parml.ShapeError, match=r"\(16\)"):
            t.step(x, y, sample_weight=np.ones(4))
        with pytest.raises(parml.InvalidArgumentError, match="row 2"):
            t.step(x, y, sample_weight=np.r_[1, 1, np.inf, np.ones(13)])
        with pytest.raises(parml.InvalidArgumentError, match="weight 0"):
            t.step(x, y, sample_weight=np.zeros(16))
        assert t.step_count == 0
    tokens = parml.TokenDataset(np.arange(100, dtype=np.int32), 8)
    with tokens, pytest.raises(parml.InvalidArgumentError, match="in memory"):
        tokens.with_sample_weight(np.ones(len(tokens)))
