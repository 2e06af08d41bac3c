"""Layer specifications for parml.Sequential / Model.add.

A layer object only describes a layer; the model builds it in C when it is
added (parml_model_add_*). The same object can be added to several models.
Values are checked by the library, which raises InvalidArgumentError naming
the bad one.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from . import _capi
from .errors import check


class Layer:
    """Base class of the layer specifications."""

    def _emit(self, model: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)


class Linear(Layer):
    """y = x W^T + b with W (out_features, in_features), as torch.nn.Linear.
    Input (..., in_features) -> (..., out_features)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.bias = bool(bias)

    def _emit(self, model: Any) -> None:
        check(_capi.parml_model_add_linear(model, self.in_features, self.out_features, int(self.bias)))


class _Activation(Layer):
    _kind: int

    def __init__(self) -> None:
        pass

    def _emit(self, model: Any) -> None:
        check(_capi.parml_model_add_activation(model, self._kind))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ReLU(_Activation):
    """max(x, 0)."""

    _kind = _capi.PARML_ACTIVATION_RELU


class GELU(_Activation):
    """The exact (erf) GELU, as torch.nn.GELU()."""

    _kind = _capi.PARML_ACTIVATION_GELU


class Tanh(_Activation):
    """tanh(x)."""

    _kind = _capi.PARML_ACTIVATION_TANH


class Sigmoid(_Activation):
    """1 / (1 + exp(-x))."""

    _kind = _capi.PARML_ACTIVATION_SIGMOID


class LayerNorm(Layer):
    """Layer normalisation over the last dimension (size `features`), with a
    learned scale (init 1) and shift (init 0). eps defaults to PyTorch's 1e-5."""

    def __init__(self, features: int, eps: float = 1e-5) -> None:
        self.features = int(features)
        self.eps = float(eps)

    def _emit(self, model: Any) -> None:
        check(_capi.parml_model_add_layer_norm(model, self.features, self.eps))


class Dropout(Layer):
    """Inverted dropout with drop probability p in [0, 1); active in training
    only, masks drawn from the strategy's seed."""

    def __init__(self, p: float) -> None:
        self.p = float(p)

    def _emit(self, model: Any) -> None:
        check(_capi.parml_model_add_dropout(model, self.p))


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...)."""

    def __init__(self) -> None:
        pass

    def _emit(self, model: Any) -> None:
        check(_capi.parml_model_add_flatten(model))

    def __repr__(self) -> str:
        return "Flatten()"


class StageBoundary(Layer):
    """Not a layer: where a pipeline stage starts. With boundaries in the
    model, a trainer with pp > 1 cuts there (pp = boundaries + 1) instead of
    balancing stages by parameter count. Top level only."""

    def __init__(self) -> None:
        pass

    def _emit(self, model: Any) -> None:
        check(_capi.parml_model_add_stage_boundary(model))

    def __repr__(self) -> str:
        return "StageBoundary()"


class Residual(Layer):
    """y = x + f(x), f being the given layers (which must keep the shape).
    Residual blocks nest."""

    def __init__(self, layers: Iterable[Layer]) -> None:
        self.layers: list[Layer] = list(layers)
        for layer in self.layers:
            _require_layer(layer)

    def _emit(self, model: Any) -> None:
        check(_capi.parml_model_begin_residual(model))
        for layer in self.layers:
            layer._emit(model)
        check(_capi.parml_model_end_residual(model))


def _require_layer(layer: object) -> None:
    if not isinstance(layer, Layer):
        raise TypeError(f"expected a parml layer (Linear, ReLU, ...), got {type(layer).__name__}")


def require_layers(layers: Sequence[object]) -> None:
    for layer in layers:
        _require_layer(layer)


__all__ = [
    "Layer",
    "Linear",
    "ReLU",
    "GELU",
    "Tanh",
    "Sigmoid",
    "LayerNorm",
    "Dropout",
    "Flatten",
    "Residual",
]
