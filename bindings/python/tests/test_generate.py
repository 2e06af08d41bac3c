"""Generation: greedy continuation of a learned rule, sampling reproducible
for a seed and distributed as the softmax says, the position limit."""

from __future__ import annotations

import numpy as np
import pytest

import parml

V, T, C = 8, 5, 16


def trained_counter():
    """A language model trained on 'the next token is this one + 1 (mod V)'."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, V, size=(256, T)).astype(np.float32)
    x = (x[:, :1] + np.arange(T)) % V
    y = (x + 1) % V
    model = parml.Sequential(
        [parml.Embedding(V, C), parml.PositionEmbedding(T, C), parml.Linear(C, 32), parml.GELU(), parml.Linear(32, V)], seed=1
    )
    with parml.Trainer(model, optimizer=parml.Adam(0.02)) as t:
        for _ in range(150):
            t.step(x, y)
        assert t.evaluate(x, y).accuracy == 1.0
    return model


@pytest.fixture(scope="module")
def counter():
    return trained_counter()


def test_greedy_continues_the_rule_past_the_position_limit(counter):
    out = counter.generate([3], 12, temperature=0)
    assert out.dtype == np.int64
    # 12 > T: later steps see only the latest T tokens.
    assert out.tolist() == [(3 + k) % V for k in range(1, 13)]
    assert counter.generate([6, 7], 3, top_k=1, seed=9).tolist() == [0, 1, 2]


def test_sampling_is_reproducible_and_follows_the_softmax():
    model = parml.Sequential([parml.Embedding(4, 4), parml.Linear(4, 4)], seed=2)
    # One logit row for every context: the last token is always 0.
    logits = model.predict(np.zeros((1, 1), np.float32))[0, -1].astype(np.float64)
    a = model.generate([0], 1, temperature=2.0, seed=5)
    assert np.array_equal(a, model.generate([0], 1, temperature=2.0, seed=5))
    counts = np.zeros(4)
    draws = [model.generate([0], 1, temperature=2.0, seed=s)[0] for s in range(3000)]
    counts = np.bincount(draws, minlength=4) / len(draws)
    p = np.exp((logits - logits.max()) / 2.0)
    p /= p.sum()
    # 3000 draws: each frequency within 4 standard errors.
    assert np.all(np.abs(counts - p) < 4 * np.sqrt(p * (1 - p) / 3000) + 1e-3), (counts, p)
    top2 = {model.generate([0], 1, temperature=1.0, top_k=2, seed=s)[0] for s in range(200)}
    assert top2 == set(np.argsort(-logits)[:2].tolist())


def test_misuse_is_refused(counter):
    with pytest.raises(parml.InvalidArgumentError, match="prompt"):
        counter.generate([], 3)
    with pytest.raises(parml.InvalidArgumentError, match="not a token id in 0..<8"):
        counter.generate([8], 3)
    with pytest.raises(parml.InvalidArgumentError, match="temperature"):
        counter.generate([1], 3, temperature=-1)
    mlp = parml.Sequential([parml.Linear(4, 4)], seed=0)
    with pytest.raises(parml.InvalidArgumentError, match="first layer reads token ids"):
        mlp.generate([1], 3)
    assert counter.generate([1], 0).size == 0


def test_the_key_value_cache_continues_as_a_forward_per_token_does():
    """A 2-block GPT (attention: the cached path) against predict over the
    latest T tokens for every token, prompts shorter and longer than T."""
    v, t, c = 11, 6, 16
    layers = [parml.Embedding(v, c), parml.PositionEmbedding(t, c)]
    for _ in range(2):
        layers.append(parml.Residual([parml.LayerNorm(c), parml.CausalSelfAttention(c, 4)]))
        layers.append(parml.Residual([parml.LayerNorm(c), parml.Linear(c, 4 * c), parml.GELU(), parml.Linear(4 * c, c)]))
    model = parml.Sequential(layers + [parml.LayerNorm(c), parml.Linear(c, v, bias=False)], seed=4)
    for prompt in ([5], [1, 9, 3], [2, 7, 7, 0, 10, 4, 8, 1]):
        ids = list(prompt)
        for _ in range(15):
            window = np.array([ids[-t:]], np.float32)
            ids.append(int(np.argmax(model.predict(window)[0, -1])))
        out = model.generate(prompt, 15, temperature=0)
        assert out.tolist() == ids[len(prompt):]
        assert len(set(out.tolist())) >= 3  # not one repeated token
