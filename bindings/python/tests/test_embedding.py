"""Token and position embeddings against torch: lookups, the scatter-add
gradient of repeated ids, and a training step of a small model that starts
with them."""

from __future__ import annotations

import numpy as np
import pytest

import parml


def ids(b, t, vocab, seed=0):
    # Repeated ids on purpose: their gradients add up in one row.
    return np.random.default_rng(seed).integers(0, vocab, size=(b, t)).astype(np.float32)


def test_lookup_and_positions():
    model = parml.Sequential([parml.Embedding(11, 4), parml.PositionEmbedding(6, 4)], seed=3)
    s = model.state_dict()
    x = ids(2, 5, 11)
    want = s["0.weight"][x.astype(int)] + s["1.weight"][:5]
    np.testing.assert_allclose(model.predict(x), want, rtol=0, atol=1e-6)
    assert model.output_shape((2, 5)) == (2, 5, 4)


def test_bad_ids_and_lengths_are_refused():
    model = parml.Sequential([parml.Embedding(11, 4), parml.PositionEmbedding(6, 4)], seed=3)
    with pytest.raises(parml.InvalidArgumentError, match=r"embedding: input element 3 is 11.0, not a token id in 0..<11"):
        model.predict(np.array([[0, 1, 2, 11]], np.float32))
    with pytest.raises(parml.InvalidArgumentError, match="not a token id"):
        model.predict(np.array([[0.5]], np.float32))
    with pytest.raises(parml.ShapeError, match=r"T ≤ 6"):
        model.predict(ids(1, 7, 11))
    with pytest.raises(parml.InvalidArgumentError, match="num_embeddings"):
        parml.Sequential([parml.Embedding(0, 4)])


def test_init_std():
    model = parml.Sequential([parml.Embedding(1000, 64, init_std=0.02)], seed=1)
    w = model.state_dict()["0.weight"]
    assert abs(float(w.std()) - 0.02) < 0.001 and abs(float(w.mean())) < 0.001


def test_training_step_matches_torch():
    torch = pytest.importorskip("torch")
    vocab, t, c, classes = 13, 6, 8, 3
    x = ids(16, t, vocab, seed=2)
    y = np.arange(16) % classes
    model = parml.Sequential(
        [parml.Embedding(vocab, c), parml.PositionEmbedding(t, c), parml.LayerNorm(c), parml.Flatten(), parml.Linear(t * c, classes)],
        seed=4,
    )
    start = model.state_dict()

    class Ref(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = torch.nn.Embedding(vocab, c)
            self.pos = torch.nn.Embedding(t, c)
            self.norm = torch.nn.LayerNorm(c)
            self.head = torch.nn.Linear(t * c, classes)

        def forward(self, idx):
            h = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
            return self.head(self.norm(h).flatten(1))

    ref = Ref()
    names = {"tok.weight": "0.weight", "pos.weight": "1.weight", "norm.weight": "2.weight", "norm.bias": "2.bias",
             "head.weight": "4.weight", "head.bias": "4.bias"}
    ref.load_state_dict({k: torch.from_numpy(start[v]) for k, v in names.items()})
    opt = torch.optim.SGD(ref.parameters(), lr=0.5, momentum=0.9)
    xt, yt = torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y)
    with parml.Trainer(model, optimizer=parml.SGD(0.5, momentum=0.9)) as trainer:
        for _ in range(3):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(ref(xt), yt)
            loss.backward()
            opt.step()
            ours = trainer.step(x, y)
            assert ours == pytest.approx(loss.item(), rel=1e-5)
    got = model.state_dict()
    for k, v in names.items():
        np.testing.assert_allclose(got[v], ref.state_dict()[k].numpy(), rtol=1e-5, atol=1e-6, err_msg=k)
