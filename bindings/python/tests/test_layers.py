"""The layer classes come from the library's kinds query: each kind is a
class, positional arguments fill attributes in declared order, and a model
built from them equals one built through the typed C functions."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

import parml
from parml import _capi
from parml.errors import check


def test_every_kind_is_a_class():
    kinds = parml.layers.kinds()
    names = {k.name for k in kinds}
    assert {"linear", "relu", "gelu", "tanh", "sigmoid", "layer_norm", "dropout", "flatten"} <= names
    for k in kinds:
        cls = getattr(parml, k.class_name)
        assert issubclass(cls, parml.Layer) and cls._kind.name == k.name
        assert k.class_name in parml.__all__
        assert k.doc in cls.__doc__


def test_attributes_positional_keyword_and_default():
    a = parml.Linear(784, 10)
    assert (a.in_features, a.out_features, a.bias) == (784, 10, True)
    assert repr(a) == "Linear(in_features=784, out_features=10, bias=True)"
    assert parml.Linear(784, out_features=10, bias=False).bias is False
    assert parml.LayerNorm(8).eps == pytest.approx(1e-5)
    assert parml.Dropout(0.1) == parml.Dropout(p=0.1) != parml.Dropout(0.2)
    assert repr(parml.ReLU()) == "ReLU()"
    with pytest.raises(TypeError, match="needs 'out_features'"):
        parml.Linear(784)
    with pytest.raises(TypeError, match="takes 3 attribute"):
        parml.Linear(1, 2, True, 4)
    with pytest.raises(TypeError, match="no attribute 'biass'"):
        parml.Linear(1, 2, biass=True)
    with pytest.raises(TypeError, match="'in_features' twice"):
        parml.Linear(1, 2, in_features=3)


def test_library_checks_values_and_names_the_attribute():
    with pytest.raises(parml.InvalidArgumentError, match=r"layer_norm: attribute 'eps' must be positive and finite"):
        parml.Sequential([parml.LayerNorm(4, eps=0.0)])


def _typed_model(seed: int):
    m = _capi.parml_model()
    check(_capi.parml_model_create(ctypes.byref(m)))
    check(_capi.parml_model_add_linear(m, 6, 8, 1))
    check(_capi.parml_model_add_activation(m, _capi.PARML_ACTIVATION_GELU))
    check(_capi.parml_model_add_layer_norm(m, 8, 1e-5))
    check(_capi.parml_model_add_dropout(m, 0.25))
    check(_capi.parml_model_add_linear(m, 8, 3, 0))
    check(_capi.parml_model_init(m, seed))
    n = ctypes.c_int64()
    check(_capi.parml_model_num_params(m, ctypes.byref(n)))
    out = np.empty(n.value, np.float32)
    check(_capi.parml_model_get_params(m, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), n.value))
    _capi.parml_model_free(m)
    return out


def test_classes_build_what_the_typed_functions_build():
    model = parml.Sequential(
        [parml.Linear(6, 8), parml.GELU(), parml.LayerNorm(8), parml.Dropout(0.25), parml.Linear(8, 3, bias=False)], seed=11
    )
    assert model.parameters.tobytes() == _typed_model(11).tobytes()
    assert "dropout p=0.25" in model.summary()
