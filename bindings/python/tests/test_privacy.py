"""parml.privacy against Google's dp-accounting (its RdpAccountant), the
reference implementation of the same analysis, over a grid; the issue's
fixed points without it. The oracle tests skip when dp_accounting is not
installed (tools/install-deps.sh installs it)."""

from __future__ import annotations

import itertools
import math

import pytest

import parml

MNIST_Q = 256 / 60000


@pytest.mark.parametrize(
    "sigma, steps, expected",
    [(1.12, 14062, 2.519), (0.6, 7031, 8.777), (1.2, 2343, 0.932)],
)
def test_issue_points(sigma, steps, expected):
    # Values dp-accounting 0.6.0 printed (2.5186, 8.7766, 0.9316), rounded as the issue states them.
    assert parml.privacy.epsilon(MNIST_Q, sigma, steps, 1e-5) == pytest.approx(expected, abs=6e-4)


def test_bad_input_is_refused_by_name():
    cases = [
        (dict(q=0, sigma=1, steps=1, delta=1e-5), "sampling rate q"),
        (dict(q=1.01, sigma=1, steps=1, delta=1e-5), "sampling rate q"),
        (dict(q=0.1, sigma=0, steps=1, delta=1e-5), "noise multiplier sigma"),
        (dict(q=0.1, sigma=1, steps=-1, delta=1e-5), "steps"),
        (dict(q=0.1, sigma=1, steps=1, delta=0), "delta"),
        (dict(q=0.1, sigma=1, steps=1, delta=1), "delta"),
    ]
    for kwargs, name in cases:
        with pytest.raises(parml.InvalidArgumentError, match=name):
            parml.privacy.epsilon(**kwargs)
    with pytest.raises(parml.InvalidArgumentError, match="exactly one of steps and epochs"):
        parml.privacy.sigma_for(1.0, 0.01, 1e-5)
    with pytest.raises(parml.InvalidArgumentError, match="target epsilon"):
        parml.privacy.sigma_for(-1.0, 0.01, 1e-5, steps=10)


def test_epochs_round_up_to_steps():
    assert parml.privacy.steps_for_epochs(60, MNIST_Q) == 14063
    sigma = parml.privacy.sigma_for(2.519, MNIST_Q, 1e-5, epochs=60)
    assert parml.privacy.epsilon(MNIST_Q, sigma, 14063, 1e-5) <= 2.519


def _oracle():
    return pytest.importorskip("dp_accounting")


def _oracle_epsilon(dpa, q, sigma, steps, delta):
    from dp_accounting.rdp import rdp_privacy_accountant

    acc = rdp_privacy_accountant.RdpAccountant()
    acc.compose(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma)), steps)
    return acc.get_epsilon(delta)


# 100 points, ~6 s of dp-accounting's time.
GRID = list(
    itertools.product(
        [1e-3, MNIST_Q, 0.05, 0.5, 1.0],  # q
        [0.5, 0.8, 1.1, 2.0, 5.0],  # sigma
        [1, 5000],  # steps
        [1e-5, 1e-3],  # delta
    )
)


def test_epsilon_matches_dp_accounting_over_a_grid():
    dpa = _oracle()
    worst = 0.0
    for q, sigma, steps, delta in GRID:
        ours = parml.privacy.epsilon(q, sigma, steps, delta)
        theirs = _oracle_epsilon(dpa, q, sigma, steps, delta)
        if math.isinf(theirs):
            assert math.isinf(ours), (q, sigma, steps, delta, ours)
            continue
        assert ours == pytest.approx(theirs, abs=0.01), (q, sigma, steps, delta)
        worst = max(worst, abs(ours - theirs))
    # Same arithmetic: far inside the 0.01 the issue asks for.
    assert worst < 1e-6, worst


@pytest.mark.parametrize("target, q, steps", [(2.519, MNIST_Q, 14062), (1.0, 0.01, 1000), (8.0, 0.1, 300)])
def test_sigma_for_reaches_the_target_under_dp_accounting(target, q, steps):
    dpa = _oracle()
    sigma = parml.privacy.sigma_for(target, q, 1e-5, steps=steps)
    theirs = _oracle_epsilon(dpa, q, sigma, steps, 1e-5)
    assert theirs <= target + 1e-9
    # One step of σ's tolerance below would overshoot: the σ is the smallest.
    assert _oracle_epsilon(dpa, q, sigma * (1 - 1e-4), steps, 1e-5) > target
