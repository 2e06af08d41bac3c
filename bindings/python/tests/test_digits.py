"""scikit-learn's digits table (1797 8x8 images, ../shared/data beside the
checkout): a small real data set, trained through the whole Python stack.

Measured here (Adam 3e-3, 64-128-10 MLP, 40 epochs of batch 32, fixed 80/20
split): 0.97-0.98 test accuracy across model seeds; the test asks for 0.95."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

import parml

from conftest import REPO_ROOT

DIGITS = REPO_ROOT.parent / "shared" / "data" / "sklearn-digits" / "digits.csv.gz"
THRESHOLD = 0.95


def load_digits():
    with gzip.open(DIGITS, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    assert table.shape == (1797, 65)
    return table[:, :64].astype(np.float32) / 16.0, table[:, 64]


def train_digits(seed: int = 0, strategy: parml.Strategy | None = None):
    x, y = load_digits()
    order = np.random.default_rng(2024).permutation(len(x))
    split = int(0.8 * len(x))
    train, test = order[:split], order[split:]
    model = parml.Sequential([parml.Linear(64, 128), parml.ReLU(), parml.Linear(128, 10)], seed=seed)
    with model, parml.Trainer(model, optimizer=parml.Adam(3e-3), strategy=strategy) as trainer:
        history = trainer.fit(
            x[train], y[train], epochs=40, batch_size=32, validation_data=(x[test], y[test]), verbose=False
        )
        result = trainer.evaluate(x[test], y[test])
    return result, history


@pytest.mark.skipif(not DIGITS.exists(), reason=f"the digits table is not at {DIGITS}")
def test_digits_test_accuracy():
    result, history = train_digits()
    assert history.last.val_accuracy == pytest.approx(result.accuracy)
    assert result.accuracy >= THRESHOLD, result
