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


# Kinds that read image batches (N, C, H, W).
_IMAGE_KINDS = {"conv2d", "max_pool2d", "avg_pool2d", "global_avg_pool", "batch_norm"}


def _sample(kind):
    """A kind with its defaults and ints 4, floats 0.25, int lists (3,) (a
    3x3 kernel) for required attributes, and an input of shape (1, 3, 4) it
    takes (one sequence of 3 positions of 4 features: what attention needs,
    and any kind takes), or (2, 4, 5, 5) for an image kind."""
    required = {_capi.PARML_ATTR_INT: 4, _capi.PARML_ATTR_FLOAT: 0.25, _capi.PARML_ATTR_INTS: (3,)}
    args = {a.name: required[a.type] for a in kind.attributes if a.default is parml.layers.REQUIRED}
    layer = getattr(parml, kind.class_name)(**args)
    if kind.name in _IMAGE_KINDS:
        x = np.random.default_rng(0).uniform(-2, 2, size=(2, 4, 5, 5)).astype(np.float32)
    elif kind.takes_token_ids or kind.requires:
        x = (np.arange(12).reshape(1, 3, 4) % 4).astype(np.float32)
    else:
        x = np.random.default_rng(0).uniform(-2, 2, size=(1, 3, 4)).astype(np.float32)
    return layer, x


@pytest.mark.parametrize("kind", parml.layers.kinds(), ids=lambda k: k.name)
def test_every_kind_exports_what_onnxruntime_computes(kind, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    layer, x = _sample(kind)
    # A kind that needs an earlier one (a tied classifier) follows it.
    before = [_sample(next(k for k in parml.layers.kinds() if k.name == kind.requires))[0]] if kind.requires else []
    model = parml.Sequential(before + [layer], seed=2)
    model.export_onnx(tmp_path / "m.onnx", input_shape=x.shape)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    (out,) = session.run(["output"], {"input": x})
    np.testing.assert_allclose(out, model.predict(x), rtol=1e-5, atol=1e-6)


def test_layer_norm_without_bias_matches_torch():
    torch = pytest.importorskip("torch")
    model = parml.Sequential([parml.Linear(6, 8), parml.LayerNorm(8, bias=False), parml.Linear(8, 3)], seed=5)
    assert set(model.state_dict()) == {"0.weight", "0.bias", "1.weight", "2.weight", "2.bias"}
    ref = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.LayerNorm(8, bias=False), torch.nn.Linear(8, 3))
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    x = np.random.default_rng(3).normal(size=(10, 6)).astype(np.float32)
    y = np.arange(10) % 3
    opt = torch.optim.Adam(ref.parameters(), lr=0.01)
    with parml.Trainer(model, optimizer=parml.Adam(0.01)) as trainer:
        for _ in range(3):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(ref(torch.from_numpy(x)), torch.from_numpy(y)).backward()
            opt.step()
            trainer.step(x, y)
    for k, v in ref.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[k], v.numpy(), rtol=1e-5, atol=1e-6, err_msg=k)
