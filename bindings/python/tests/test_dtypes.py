"""Integer tensors: int32/int64 arrays go in as they are, class labels are
exact at any size, token ids work as inputs, files carry the dtype."""

from __future__ import annotations

import numpy as np
import pytest

import parml
from parml import _arrays

from conftest import blobs, mlp


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64])
def test_tensor_round_trips_keep_dtype_and_values(dtype):
    a = (np.arange(24).reshape(2, 3, 4) * 3 - 20).astype(dtype)
    if dtype == np.int64:
        a[0, 0, 0] = 1 << 40  # past int32 and float32: kept exactly
    t = parml.Tensor(a)
    assert t.dtype == dtype and t.shape == (2, 3, 4)
    back = t.numpy()
    assert back.dtype == dtype and np.array_equal(back, a)
    again = parml.Tensor.from_bytes(t.to_bytes()).numpy()
    assert again.dtype == dtype and np.array_equal(again, a)


def test_int_arrays_are_not_converted_in_python():
    for dtype in (np.int32, np.int64):
        a = np.arange(6, dtype=dtype)
        assert _arrays.as_model_array(a, "y") is a
    assert _arrays.as_model_array(np.arange(3, dtype=np.uint8), "y").dtype == np.int64


@pytest.mark.parametrize("layout", [{}, dict(dp=2), dict(tp=2), dict(tp=2, split_classifier=True)], ids=str)
def test_int_labels_train_bit_identically_to_float_labels(layout):
    x, y = blobs(96, classes=4, seed=5)

    def net():
        if layout.get("split_classifier"):  # no column/row pair: the classifier is split by classes
            return parml.Sequential([parml.Linear(8, 16), parml.ReLU(), parml.LayerNorm(16), parml.Linear(16, 4)], seed=2)
        return mlp(classes=4)

    def run(labels):
        with net() as model, parml.Trainer(model, optimizer=parml.SGD(0.1, 0.9), strategy=parml.Strategy(**layout)) as t:
            losses = [t.step(x, labels) for _ in range(4)]
            ev = t.evaluate(x, labels)
            return losses, model.parameters, ev

    f_losses, f_params, f_ev = run(y.astype(np.float32))
    for dtype in (np.int32, np.int64):
        losses, params, ev = run(y.astype(dtype))
        assert losses == f_losses
        assert params.tobytes() == f_params.tobytes()
        assert (ev.loss, ev.accuracy) == (f_ev.loss, f_ev.accuracy)


def test_class_indices_past_two_to_the_24():
    x = np.zeros((3, 2), np.float32)
    big = np.array([0, 1, (1 << 24) + 1], np.int64)
    assert parml.Dataset(x, big).num_classes == (1 << 24) + 2
    with pytest.raises(parml.InvalidArgumentError, match="int32 cannot hold exactly"):
        parml.Dataset(x, np.array([0, 1, 1 << 40], np.int64))


def test_token_ids_as_integer_inputs():
    ids = np.array([[1, 4, 2], [0, 3, 3]])
    model = parml.Sequential([parml.Embedding(5, 3), parml.Flatten(), parml.Linear(9, 2)], seed=1)
    np.testing.assert_array_equal(model.predict(ids), model.predict(ids.astype(np.float32)))
    y = np.array([0, 1])
    losses = []
    for inputs in (ids, ids.astype(np.int32), ids.astype(np.float32)):
        m = parml.Sequential([parml.Embedding(5, 3), parml.Flatten(), parml.Linear(9, 2)], seed=1)
        with parml.Trainer(m, optimizer=parml.SGD(0.1)) as t:
            losses.append([t.step(inputs, y) for _ in range(3)])
    assert losses[0] == losses[1] == losses[2]


def test_misuse():
    x, y = blobs(8)
    with mlp() as model, parml.Trainer(model, loss="mse") as t:
        # Integer regression targets are compared as floats (exact up to 2^24), as before 0.3.
        ints = np.arange(24).reshape(8, 3) % 5
        assert t.evaluate(x, ints).loss == t.evaluate(x, ints.astype(np.float32)).loss
        with pytest.raises(parml.InvalidArgumentError, match="mse targets element 0 is 16777217"):
            t.step(x, np.full((8, 3), (1 << 24) + 1, np.int64))
    t = parml.Tensor(np.arange(4, dtype=np.int32))
    with pytest.raises(parml.InvalidArgumentError, match="holds int32 values"):
        t.write(np.zeros(4, np.float32))
