"""numpy in and out: the dtype and stride rule of parml/_arrays.py, no
Python-side copy of float32 C-contiguous arrays, results as new arrays."""

from __future__ import annotations

import numpy as np
import pytest

import parml
from parml import _arrays

from conftest import blobs, mlp


def numpy_forward(model, x):
    """Linear(8, 32) -> ReLU -> Linear(32, 3) from the flat parameters."""
    p = model.parameters.astype(np.float64)
    w1, p = p[: 32 * 8].reshape(32, 8), p[32 * 8 :]
    b1, p = p[:32], p[32:]
    w2, p = p[: 3 * 32].reshape(3, 32), p[3 * 32 :]
    b2 = p[:3]
    h = np.maximum(x.astype(np.float64) @ w1.T + b1, 0)
    return h @ w2.T + b2


def test_float32_c_contiguous_is_passed_as_is(monkeypatch):
    x, y = blobs(32)
    assert _arrays.as_float32(x, "x") is x
    seen = []
    real = _arrays.tensor_from_array

    def spy(arr):
        seen.append(arr)
        return real(arr)

    monkeypatch.setattr(_arrays, "tensor_from_array", spy)
    y32 = y.astype(np.float32)
    with mlp() as model, parml.Trainer(model) as trainer:
        trainer.step(x, y32)
        assert seen[0] is x and seen[1] is y32  # handed to C without a copy
        seen.clear()
        model.predict(x)
        assert seen[0] is x


def test_dtype_conversions():
    x64 = np.arange(12, dtype=np.float64).reshape(3, 4) / 7
    c = _arrays.as_float32(x64, "x")
    assert c.dtype == np.float32 and c.flags.c_contiguous and np.allclose(c, x64)
    for dt in (np.int8, np.int32, np.int64, np.uint8, np.uint16, np.float16, np.bool_):
        a = np.ones((2, 3), dtype=dt)
        assert _arrays.as_float32(a, "a").dtype == np.float32
    big_endian = np.arange(6, dtype=">f4").reshape(2, 3)
    assert np.array_equal(_arrays.as_float32(big_endian, "x"), np.arange(6, dtype=np.float32).reshape(2, 3))
    assert _arrays.as_float32([[1, 2], [3, 4]], "x").dtype == np.float32
    labels = np.array([0, 5, 2**24], dtype=np.int64)
    assert np.array_equal(_arrays.as_float32(labels, "y"), [0, 5, 2**24])


def test_rejected_inputs():
    with pytest.raises(ValueError, match="2\\^24"):
        _arrays.as_float32(np.array([2**24 + 1]), "y")
    for bad in (np.zeros(3, np.complex64), np.array(["a", "b"]), np.array([object(), None])):
        with pytest.raises(TypeError, match="float32"):
            _arrays.as_float32(bad, "x")
    with pytest.raises(ValueError, match="0-d"):
        _arrays.as_float32(np.float32(3.0), "x")
    with pytest.raises(ValueError, match="0-d"):
        _arrays.as_float32(np.array(3.0, np.float32), "x")


def test_non_contiguous_inputs_are_copied_to_c_order():
    rng = np.random.default_rng(1)
    wide = rng.normal(size=(20, 16)).astype(np.float32)
    strided = wide[:, ::2]  # (20, 8), stride 2
    fortran = np.asfortranarray(strided)
    transposed = np.ascontiguousarray(strided.T).T  # (20, 8) F-ordered view
    with mlp() as model:
        want = model.predict(np.ascontiguousarray(strided))
        for view in (strided, fortran, transposed, strided.astype(np.float64)):
            assert not (view.dtype == np.float32 and view.flags.c_contiguous)
            assert np.array_equal(model.predict(view), want)


def test_predict_matches_numpy_and_returns_new_arrays():
    x, _ = blobs(50)
    with mlp() as model:
        out = model.predict(x)
        assert out.dtype == np.float32 and out.shape == (50, 3) and out.flags.owndata
        np.testing.assert_allclose(out, numpy_forward(model, x), rtol=1e-5, atol=1e-5)
        batched = model.predict(x, batch_size=7)
        np.testing.assert_allclose(batched, out, rtol=1e-6, atol=1e-6)
        assert model.output_shape((50, 8)) == (50, 3)
        with pytest.raises(ValueError):
            model.predict(x, batch_size=0)


def test_parameters_are_copies_and_settable():
    with mlp() as model:
        p = model.parameters
        assert p.dtype == np.float32 and p.shape == (model.num_params,) == (8 * 32 + 32 + 32 * 3 + 3,)
        p[:] = 0
        assert np.any(model.parameters != 0)  # the copy is not the model's memory
        new = np.linspace(-1, 1, model.num_params)  # float64, converted
        model.set_parameters(new)
        np.testing.assert_allclose(model.parameters, new.astype(np.float32))
        model.set_parameters(new.astype(np.float32).reshape(-1, 1))  # any shape of that size


def test_labels_of_several_dtypes_train_alike():
    x, y = blobs(64)
    losses = []
    for labels in (y, y.astype(np.int32), y.astype(np.uint8), y.astype(np.float32), y.astype(np.float64)):
        with mlp() as model, parml.Trainer(model) as trainer:
            losses.append(trainer.step(x, labels))
    assert len(set(losses)) == 1


def test_tensor_round_trip():
    x, _ = blobs(10)
    with parml.Tensor(x) as t:
        assert t.shape == x.shape and t.size == x.size
        back = t.numpy()
        assert np.array_equal(back, x) and back is not x
        t.write(x * 2)
        assert np.array_equal(t.numpy(), x * 2)
    with parml.Tensor.zeros((3, 2)) as z:
        assert np.array_equal(z.numpy(), np.zeros((3, 2), np.float32))


def test_tensors_can_feed_steps():
    x, y = blobs(64)
    with mlp() as m1, mlp() as m2, parml.Trainer(m1) as t1, parml.Trainer(m2) as t2:
        with parml.Tensor(x) as xt, parml.Tensor(y) as yt:
            for _ in range(3):
                a = t1.step(xt, yt)
                b = t2.step(x, y)
                assert a == b
        assert np.array_equal(m1.parameters, m2.parameters)
