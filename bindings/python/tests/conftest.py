"""Shared fixtures. The tests import parml from this source tree
(bindings/python), so they test the code beside them whether or not the
package is installed; the library comes from $PARML_LIBRARY or the loader's
search (parml/_lib.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # bindings/python
REPO_ROOT = PACKAGE_ROOT.parent.parent
sys.path.insert(0, str(PACKAGE_ROOT))

import parml  # noqa: E402


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a child Python that imports this source tree."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PACKAGE_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def blobs(n: int = 600, features: int = 8, classes: int = 3, seed: int = 0):
    """A linearly separable classification problem: x (n, features) float32,
    y (n,) int64 labels."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(classes, features))
    y = rng.integers(0, classes, size=n)
    x = (centers[y] + rng.normal(size=(n, features))).astype(np.float32)
    return x, y


def mlp(features: int = 8, hidden: int = 32, classes: int = 3, seed: int = 1) -> "parml.Sequential":
    return parml.Sequential(
        [parml.Linear(features, hidden), parml.ReLU(), parml.Linear(hidden, classes)], seed=seed
    )


def expect_clipped_step(before, after, g, c: float, clipped: int) -> None:
    """A private SGD step at lr 1 and sigma 0 moved `before` to `after` by
    -(1/N) sum_i clip(g_i): g maps names to torch per-sample gradients
    (N, ...); at least `clipped` examples are clipped to norm c and one is not."""
    import torch

    norms = torch.sqrt(sum(v.flatten(1).pow(2).sum(1) for v in g.values()))
    factors = torch.clamp(c / norms, max=1.0)
    assert (factors < 1).sum() >= clipped and (factors == 1).sum() >= 1, norms  # some clipped, some not
    n = len(norms)
    for k in before:
        want = before[k] - (factors.view(-1, *[1] * (g[k].dim() - 1)) * g[k]).sum(0).numpy() / n
        np.testing.assert_allclose(after[k], want, rtol=0, atol=2e-6, err_msg=k)


@pytest.fixture
def data():
    return blobs()


@pytest.fixture
def model():
    m = mlp()
    yield m
    m.close()
