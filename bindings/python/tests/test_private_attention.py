"""DP-SGD through attention and a tied classifier (docs/privacy.md): one
private step of a small GPT against torch.func's per-sample gradients,
clipped, and a private character model that learns with its epsilon."""

from __future__ import annotations

import numpy as np
import pytest

import parml

from conftest import expect_clipped_step
from test_tied_classifier import VOCAB, T, batch, gpt, torch_gpt_logits


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_private_gpt_step_matches_torch_per_sample_clipping(tied):
    """Embedding, positions, two blocks of layer_norm + causal attention
    (4 heads) and an MLP, a classifier tied to the embedding or not: one
    private SGD step (lr 1, sigma 0) moves the parameters by
    -(1/N) sum_i clip(g_i), g_i example i's gradient of its own mean loss
    over its positions, from torch.func. For the tied matrix g_i holds
    both uses' gradients summed, as the clipping must see them."""
    torch = pytest.importorskip("torch")
    from torch.func import grad, vmap

    x, y = batch(0)
    c = 2.2 if tied else 9.0  # between the examples' norms: some clipped, some not
    with gpt(tied=tied) as model:
        before = model.state_dict()
        with parml.Trainer(model, optimizer=parml.SGD(1.0), privacy=parml.Privacy(noise_multiplier=0, max_grad_norm=c)) as t:
            t.step(x, y)
        after = model.state_dict()

    params = {k: torch.tensor(v, dtype=torch.float64) for k, v in before.items()}

    def loss(p, xi, yi):
        logits = torch_gpt_logits(torch, p, xi.unsqueeze(0))
        return torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), yi)

    g = vmap(grad(loss), in_dims=(None, 0, 0))(params, torch.tensor(x, dtype=torch.long), torch.tensor(y, dtype=torch.long))
    expect_clipped_step(before, after, g, c, clipped=2)


def test_private_character_gpt_learns_and_reports_epsilon():
    """A tiny character model (the tied GPT above, 16 symbols, windows of 6)
    trained privately with Poisson sampling: its loss falls well below the
    uniform guess's ln 16 and each epoch reports the accountant's epsilon."""
    text = "the cat sat on the mat. a hat on a cat. " * 40
    chars = sorted(set(text))
    assert len(chars) <= VOCAB
    ids = np.array([chars.index(ch) for ch in text], dtype=np.int32)
    starts = np.arange(0, len(ids) - T - 1, 3)
    x = np.stack([ids[s:s + T] for s in starts])
    y = np.stack([ids[s + 1:s + T + 1] for s in starts])
    n, b, epochs, sigma = len(x), 32, 6, 0.8
    privacy = parml.Privacy(noise_multiplier=sigma, max_grad_norm=1.0, delta=1e-5)
    with gpt(seed=5) as model, parml.Trainer(
        model, optimizer=parml.AdamW(1e-2, weight_decay=0.0), strategy=parml.Strategy(seed=3), privacy=privacy
    ) as t:
        history = t.fit(x, y, epochs=epochs, batch_size=b, verbose=False)
        losses = [m.train_loss for m in history]
        steps = -(-n // b)
        for e, m in enumerate(history, start=1):
            want = parml.privacy.epsilon(q=b / n, sigma=sigma, steps=steps * e, delta=1e-5)
            assert m.privacy_epsilon == pytest.approx(want, rel=1e-9), (e, m)
        assert losses[-1] < 0.4 * np.log(VOCAB), losses
        assert losses[-1] < losses[0], losses
        assert t.evaluate(x, y, batch_size=64).loss < 0.4 * np.log(VOCAB)
