"""decay_by_kind: weight decay only on the parameters whose layer kind
declares it (linear weights), not on biases or LayerNorm: the parameter
groups nanoGPT builds for torch.optim.AdamW, checked against torch."""

from __future__ import annotations

import numpy as np
import pytest

import parml

from conftest import blobs


def net(seed=4):
    return parml.Sequential(
        [parml.Linear(8, 16), parml.LayerNorm(16), parml.GELU(), parml.Linear(16, 16), parml.Tanh(), parml.Linear(16, 3)],
        seed=seed,
    )


def train(optimizer, strategy=None, steps=4):
    x, y = blobs(96, seed=6)
    with net() as model, parml.Trainer(model, optimizer=optimizer, strategy=strategy or parml.Strategy()) as t:
        for _ in range(steps):
            t.step(x, y)
        return model.state_dict()


def test_only_kinds_that_decay_are_decayed():
    by_kind = train(parml.AdamW(0.01, weight_decay=0.5, decay_by_kind=True))
    everything = train(parml.AdamW(0.01, weight_decay=0.5))
    nothing = train(parml.AdamW(0.01, weight_decay=0.0))
    assert not np.array_equal(by_kind["0.weight"], nothing["0.weight"])
    assert not np.array_equal(by_kind["1.weight"], everything["1.weight"])


@pytest.mark.parametrize("kind", ["adamw", "adam", "sgd_momentum", "sgd"])
def test_matches_torch_parameter_groups(kind):
    torch = pytest.importorskip("torch")
    x, y = blobs(96, seed=6)
    start = net().state_dict()
    ref = torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.GELU(), torch.nn.Linear(16, 16), torch.nn.Tanh(),
        torch.nn.Linear(16, 3),
    )
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in start.items()})
    decay = [p for n, p in ref.named_parameters() if n.endswith("weight") and n.split(".")[0] in ("0", "3", "5")]
    rest = [p for n, p in ref.named_parameters() if not any(p is q for q in decay)]
    groups = [{"params": decay, "weight_decay": 0.3}, {"params": rest, "weight_decay": 0.0}]
    if kind == "adamw":
        opt, ours = torch.optim.AdamW(groups, lr=0.01), parml.AdamW(0.01, weight_decay=0.3, decay_by_kind=True)
    elif kind == "adam":
        opt, ours = torch.optim.Adam(groups, lr=0.01), parml.Adam(0.01, weight_decay=0.3, decay_by_kind=True)
    elif kind == "sgd_momentum":
        opt, ours = torch.optim.SGD(groups, lr=0.05, momentum=0.9), parml.SGD(0.05, 0.9, weight_decay=0.3, decay_by_kind=True)
    else:
        opt, ours = torch.optim.SGD(groups, lr=0.05), parml.SGD(0.05, weight_decay=0.3, decay_by_kind=True)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(4):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(ref(xt), yt).backward()
        opt.step()
    got = train(ours)
    for name, value in ref.state_dict().items():
        np.testing.assert_allclose(got[name], value.detach().numpy(), rtol=1e-5, atol=2e-6, err_msg=name)


@pytest.mark.parametrize("layout", [dict(dp=2, zero=1), dict(dp=2, zero=3), dict(tp=2), dict(pp=2, micro_batches=2)])
def test_layouts_decay_what_serial_decays(layout):
    opt = parml.AdamW(0.01, weight_decay=0.3, decay_by_kind=True)
    serial = train(opt, parml.Strategy(deterministic=True))
    split = train(opt, parml.Strategy(deterministic=True, **layout))
    for name in serial:
        np.testing.assert_allclose(split[name], serial[name], rtol=1e-6, atol=1e-6, err_msg=name)
