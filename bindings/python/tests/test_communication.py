"""Issue 20 from Python: gradient compression (bf16, fp16, PowerSGD) and
local SGD with DiLoCo's outer step are Strategy settings; the plan says what
each sends; combinations the library refuses raise its error."""

from __future__ import annotations

import numpy as np
import pytest

import parml


def train(steps=6, **strategy):
    model = parml.Sequential([parml.Linear(12, 24), parml.ReLU(), parml.Linear(24, 3)], seed=4)
    rng = np.random.default_rng(1)
    with model, parml.Trainer(model, optimizer=parml.Adam(1e-2), strategy=parml.Strategy(dp=2, seed=2, **strategy)) as t:
        losses = [t.step(rng.normal(size=(16, 12)).astype(np.float32), rng.integers(0, 3, size=16)) for _ in range(steps)]
        return losses, model.parameters.copy(), t.plan()


@pytest.mark.parametrize(
    "mode, text",
    [
        (dict(gradient_compression="bf16"), "in bf16 with error feedback"),
        (dict(gradient_compression="fp16"), "in fp16 with error feedback"),
        (dict(gradient_compression="powersgd", compression_rank=2), "PowerSGD rank 2"),
        (dict(local_steps=3), "local SGD, each replica steps on its own rows"),
        (dict(local_steps=3, outer_learning_rate=0.7, outer_momentum=0.9), "DiLoCo's outer Nesterov step (lr 0.7, momentum 0.9)"),
    ],
)
def test_each_mode_trains_close_to_plain_data_parallelism(mode, text):
    plain_losses, plain, _ = train()
    losses, params, plan = train(**mode)
    assert text in plan, plan
    assert not np.array_equal(params, plain)
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    assert np.abs(np.array(losses) - np.array(plain_losses)).max() < 0.2


def test_refusals():
    with pytest.raises(ValueError, match="unknown gradient compression 'zip'"):
        parml.Strategy(gradient_compression="zip")
    model = parml.Sequential([parml.Linear(4, 2)], seed=1)
    with model:
        for strategy, match in [
            (parml.Strategy(dp=2, gradient_compression="bf16", deterministic=True), "deterministic mode promises"),
            (parml.Strategy(dp=2, gradient_compression="bf16", zero=1), "needs zero_stage 0"),
            (parml.Strategy(dp=2, gradient_compression="bf16", local_steps=2), "choose one"),
            (parml.Strategy(dp=2, local_steps=2, outer_momentum=1.0), "outer_momentum in \\[0, 1\\)"),
            (parml.Strategy(dp=2, gradient_compression="powersgd", compression_rank=0), "compression_rank must be in 1...1024"),
        ]:
            with pytest.raises(parml.InvalidArgumentError, match=match):
                parml.Trainer(model, strategy=strategy)
