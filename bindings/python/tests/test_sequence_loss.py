"""Cross-entropy over a sequence: logits (N, T, V), targets (N, T) of token
ids, the mean over all N*T predictions (as nanoGPT computes it), against
torch and across layouts."""

from __future__ import annotations

import numpy as np
import pytest

import parml

V, T, C = 12, 6, 8


def tokens(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, V, size=(n, T)).astype(np.float32)
    # Next-token targets: the input shifted by one (a learnable rule).
    y = (x + 1) % V
    return x, y


def lm_plain(seed=3):
    # No column/row pair: the classifier can be split by classes under tp.
    return parml.Sequential([parml.Embedding(V, C), parml.PositionEmbedding(T, C), parml.LayerNorm(C), parml.Linear(C, V)], seed=seed)


def lm(seed=3):
    return parml.Sequential(
        [parml.Embedding(V, C), parml.PositionEmbedding(T, C), parml.LayerNorm(C), parml.Linear(C, 16), parml.GELU(),
         parml.Linear(16, V)],
        seed=seed,
    )


def test_loss_and_gradient_match_torch():
    torch = pytest.importorskip("torch")
    x, y = tokens(12)
    model = lm()
    s = model.state_dict()

    class Ref(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.pos = torch.nn.Embedding(V, C), torch.nn.Embedding(T, C)
            self.body = torch.nn.Sequential(torch.nn.LayerNorm(C), torch.nn.Linear(C, 16), torch.nn.GELU(), torch.nn.Linear(16, V))

        def forward(self, idx):
            return self.body(self.tok(idx) + self.pos(torch.arange(idx.shape[1])))

    ref = Ref()
    names = {"tok.weight": "0.weight", "pos.weight": "1.weight", "body.0.weight": "2.weight", "body.0.bias": "2.bias",
             "body.1.weight": "3.weight", "body.1.bias": "3.bias", "body.3.weight": "5.weight", "body.3.bias": "5.bias"}
    ref.load_state_dict({k: torch.from_numpy(s[v]) for k, v in names.items()})
    opt = torch.optim.AdamW(ref.parameters(), lr=0.01, weight_decay=0.1)
    xt, yt = torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y.astype(np.int64))
    with parml.Trainer(model, optimizer=parml.AdamW(0.01, weight_decay=0.1)) as trainer:
        for _ in range(3):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(ref(xt).reshape(-1, V), yt.reshape(-1))
            loss.backward()
            opt.step()
            assert trainer.step(x, y) == pytest.approx(loss.item(), rel=1e-5)
    got = model.state_dict()
    for k, v in names.items():
        np.testing.assert_allclose(got[v], ref.state_dict()[k].numpy(), rtol=2e-5, atol=2e-6, err_msg=k)


def test_accuracy_counts_positions():
    x, y = tokens(20, seed=1)
    model = lm()
    with parml.Trainer(model) as trainer:
        e = trainer.evaluate(x, y)
        pred = model.predict(x).argmax(-1)
        assert e.accuracy == pytest.approx(float((pred == y).mean()))
        logits = model.predict(x).astype(np.float64)
        logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logits.max(-1, keepdims=True)
        want = -np.take_along_axis(logp, y.astype(int)[..., None], -1).mean()
        assert e.loss == pytest.approx(want, rel=1e-5)


def test_targets_must_have_the_logits_shape_without_classes():
    x, y = tokens(4)
    with lm() as model, parml.Trainer(model) as trainer:
        with pytest.raises(parml.ShapeError, match=r"expected \(4, 6\) class indices"):
            trainer.step(x, y[:, :5])
        bad = y.copy()
        bad[2, 3] = V
        with pytest.raises(parml.InvalidArgumentError, match=r"target 12.0 of element 15 \(sample 2\)"):
            trainer.step(x, bad)


@pytest.mark.parametrize(
    "layout", [dict(dp=2), dict(dp=2, zero=2), dict(pp=2, micro_batches=2), dict(tp=2), dict(tp=2, split_classifier=True)],
    ids=str,
)
def test_layouts_match_serial(layout):
    x, y = tokens(16, seed=2)

    make = lm_plain if layout.get("split_classifier") else lm

    def run(strategy):
        with make() as model, parml.Trainer(model, optimizer=parml.Adam(0.01), strategy=strategy) as t:
            losses = [t.step(x, y) for _ in range(3)]
            return losses, model.parameters

    serial, p0 = run(parml.Strategy(deterministic=True))
    split, p1 = run(parml.Strategy(deterministic=True, **layout))
    np.testing.assert_allclose(split, serial, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(p1, p0, rtol=1e-5, atol=1e-6)
