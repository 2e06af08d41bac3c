"""parml.TokenDataset: windows of token ids cut by the library, for fit and
evaluate: they are the slices a host would cut (checked bit for bit against
trainer.step on host-made windows), the same in every layout, and read from
arrays or nanoGPT-style flat files."""

from __future__ import annotations

import numpy as np
import pytest

import parml

V, T, C = 11, 6, 8


def ids(n=301, seed=0):
    # Mostly "next id = id + 1", with a random jump now and then.
    rng = np.random.default_rng(seed)
    out = np.cumsum(np.where(rng.random(n) < 0.1, rng.integers(2, V, n), 1)) % V
    return out.astype(np.int64)


def lm(seed=3):
    return parml.Sequential(
        [parml.Embedding(V, C), parml.PositionEmbedding(T, C), parml.LayerNorm(C), parml.Linear(C, 16), parml.GELU(),
         parml.Linear(16, V)],
        seed=seed,
    )


def trainer(model, **layout):
    return parml.Trainer(model, optimizer=parml.Adam(0.01), strategy=parml.Strategy(deterministic=True, seed=5, **layout))


def test_queries():
    d = parml.TokenDataset(ids(301), T)
    assert len(d) == 50  # (301 - 1) // 6
    assert d.input_shape == (50, T)
    assert d.num_classes == int(ids(301).max()) + 1
    r = parml.TokenDataset(ids(301), T, seed=4, windows_per_epoch=7)
    assert len(r) == 7 and r.input_shape == (7, T)
    assert "7 random windows of 6 tokens" in repr(r)
    assert isinstance(r, parml.Dataset)


def test_sequential_windows_are_the_slices_a_host_cuts():
    """fit over sequential windows (no shuffle) = trainer.step on the host's
    windows ids[jT:jT+T] -> ids[jT+1:jT+T+1], bit for bit."""
    data = ids(301)
    n = (len(data) - 1) // T
    x = np.stack([data[j * T : j * T + T] for j in range(n)])
    y = np.stack([data[j * T + 1 : j * T + T + 1] for j in range(n)])
    with lm() as host_model, trainer(host_model) as t:
        for b in range(0, n, 10):
            t.step(x[b : b + 10], y[b : b + 10])
        host = host_model.parameters
    with lm() as model, trainer(model) as t, parml.TokenDataset(data, T, mode="sequential") as d:
        t.fit(d, batch_size=10, shuffle=False, verbose=False)
        assert t.step_count == 5
        np.testing.assert_array_equal(model.parameters, host)
        # evaluate reads the same windows as evaluate on the host's arrays.
        assert t.evaluate(d, batch_size=16).loss == t.evaluate(x, y, batch_size=16).loss


@pytest.mark.parametrize("layout", [dict(dp=2), dict(pp=2, micro_batches=2), dict(dp=2, zero=1)], ids=str)
def test_random_windows_are_the_same_in_every_layout(layout):
    data = ids(1201, seed=1)

    def run(**strategy):
        with lm() as model, trainer(model, **strategy) as t:
            d = parml.TokenDataset(data, T, seed=9, windows_per_epoch=64)
            h = t.fit(d, epochs=2, batch_size=16, verbose=False)
            return [e.train_loss for e in h], model.parameters

    serial_losses, serial = run()
    losses, params = run(**layout)
    assert losses == serial_losses
    np.testing.assert_array_equal(params, serial)


def test_random_windows_follow_the_seed_and_training_lowers_the_loss():
    data = ids(1201, seed=1)
    val = parml.TokenDataset(ids(601, seed=2), T, seed=1, windows_per_epoch=64)

    def run(seed):
        with lm() as model, trainer(model) as t:
            before = t.evaluate(val, batch_size=32).loss
            t.fit(parml.TokenDataset(data, T, seed=seed, windows_per_epoch=256), batch_size=16, verbose=False)
            return before, t.evaluate(val, batch_size=32).loss, model.parameters

    before, after, a = run(9)
    _, _, again = run(9)
    _, _, other = run(10)
    np.testing.assert_array_equal(a, again)
    assert not np.array_equal(a, other)
    assert before > 2.0 and after < 0.8 * before, (before, after)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.int32])
def test_a_flat_file_trains_as_the_array(tmp_path, dtype):
    data = ids(301)
    path = tmp_path / "train.bin"
    data.astype(np.dtype(dtype).newbyteorder("<")).tofile(path)
    results = []
    for d in (parml.TokenDataset.load(path, T, dtype=dtype, mode="sequential"), parml.TokenDataset(data, T, mode="sequential")):
        with d, lm() as model, trainer(model) as t:
            t.fit(d, batch_size=10, verbose=False)
            results.append(model.parameters)
    np.testing.assert_array_equal(results[0], results[1])


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        parml.TokenDataset(ids(), T, mode="shuffled")
    with pytest.raises(ValueError, match="1-D"):
        parml.TokenDataset(ids(300).reshape(50, 6), T)
    with pytest.raises(parml.InvalidArgumentError, match="make no window"):
        parml.TokenDataset(np.arange(6), T)
    with pytest.raises(parml.InvalidArgumentError, match="block_size"):
        parml.TokenDataset(ids(), 0)
    with pytest.raises(parml.InvalidArgumentError, match="-2"):
        parml.TokenDataset(np.array([1, 2, -2, 3]), 1)
    with pytest.raises(parml.InvalidArgumentError, match="random mode"):
        parml.TokenDataset(ids(), T, mode="sequential", windows_per_epoch=3)
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"\x01\x00\x02")
    with pytest.raises(parml.FormatError, match="3 bytes"):
        parml.TokenDataset.load(odd, 1)
    with pytest.raises(parml.ParmlIOError):
        parml.TokenDataset.load(tmp_path / "missing.bin", 1)
    with pytest.raises(ValueError, match="dtype"):
        parml.TokenDataset.load(odd, 1, dtype=np.int64)
    # A head with fewer classes than the ids is refused before any step.
    with parml.Sequential([parml.Embedding(V, C), parml.Linear(C, V - 1)], seed=0) as model, parml.Trainer(model) as t:
        with pytest.raises(parml.InvalidArgumentError, match="not a class index"):
            t.fit(parml.TokenDataset(ids(), T), verbose=False)
        assert t.step_count == 0
