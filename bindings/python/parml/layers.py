"""Layer specifications for parml.Sequential / Model.add.

A layer object only describes a layer; the model builds it in C when it is
added (parml_model_add_layer). The same object can be added to several
models. Values are checked by the library, which raises InvalidArgumentError
naming the bad one.

The layer classes (Linear, ReLU, LayerNorm, ...) are not written here one by
one: they are made at import from the library's list of layer kinds
(``kinds()``), so a kind the library adds is a class here with no change.
"""

from __future__ import annotations

import ctypes
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

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


@dataclass(frozen=True)
class AttributeInfo:
    """One attribute of a layer kind, as the library describes it."""

    name: str
    type: int  # _capi.PARML_ATTR_*
    default: Any  # the parsed default; REQUIRED when the attribute has none
    rule: str | None  # what a valid value is, in words
    doc: str


@dataclass(frozen=True)
class KindInfo:
    """A layer kind, as the library describes it (parml_layer_kind_info)."""

    name: str  # for parml_model_add_layer: "linear"
    class_name: str  # the class this module makes for it: "Linear"
    doc: str
    attributes: tuple[AttributeInfo, ...]
    takes_token_ids: bool  # its input is token ids (embedding), not values
    requires: str | None = None  # the kind of an earlier layer it needs (tied_classifier: "embedding")


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: The default of an attribute the caller must give.
REQUIRED: Any = _Required()

def _ints(v: Any) -> tuple[int, ...]:
    # As PyTorch's Conv2d(1, 16, 3, padding=1) and MaxPool2d(2, stride=None):
    # an int stands for itself in every dimension, None for the kind's default.
    if v is None:
        return ()
    if isinstance(v, numbers.Integral):
        return (int(v),)
    return tuple(int(x) for x in v)


_PY_TYPES: dict[int, Callable[[Any], Any]] = {
    _capi.PARML_ATTR_INT: int,
    _capi.PARML_ATTR_FLOAT: float,
    _capi.PARML_ATTR_BOOL: bool,
    _capi.PARML_ATTR_STRING: str,
    _capi.PARML_ATTR_INTS: _ints,
}


def _parse_default(type_code: int, text: bytes | None) -> Any:
    if text is None:
        return REQUIRED
    t = text.decode()
    if type_code == _capi.PARML_ATTR_BOOL:
        return t == "true"
    if type_code == _capi.PARML_ATTR_INTS:
        return tuple(int(x) for x in t.strip("[]").split(",") if x)
    if type_code == _capi.PARML_ATTR_STRING:
        return t
    return _PY_TYPES[type_code](t)


def kinds() -> tuple[KindInfo, ...]:
    """Every layer kind the loaded library knows, with its attributes."""
    count = ctypes.c_int64()
    check(_capi.parml_layer_kind_count(ctypes.byref(count)))
    out = []
    for i in range(count.value):
        name, class_name, doc = ctypes.c_char_p(), ctypes.c_char_p(), ctypes.c_char_p()
        n = ctypes.c_int64()
        takes = ctypes.c_int32()
        check(
            _capi.parml_layer_kind_info(
                i, ctypes.byref(name), ctypes.byref(class_name), ctypes.byref(doc), ctypes.byref(n), ctypes.byref(takes)
            )
        )
        requires = ctypes.c_char_p()
        check(_capi.parml_layer_kind_requires(i, ctypes.byref(requires)))
        attrs = []
        for j in range(n.value):
            a_name, a_default, a_rule, a_doc = (ctypes.c_char_p() for _ in range(4))
            a_type = ctypes.c_int32()
            check(
                _capi.parml_layer_kind_attribute(
                    i, j, ctypes.byref(a_name), ctypes.byref(a_type), ctypes.byref(a_default), ctypes.byref(a_rule),
                    ctypes.byref(a_doc),
                )
            )
            attrs.append(
                AttributeInfo(
                    name=(a_name.value or b"").decode(),
                    type=a_type.value,
                    default=_parse_default(a_type.value, a_default.value),
                    rule=a_rule.value.decode() if a_rule.value is not None else None,
                    doc=(a_doc.value or b"").decode(),
                )
            )
        out.append(
            KindInfo(
                name=(name.value or b"").decode(),
                class_name=(class_name.value or b"").decode(),
                doc=(doc.value or b"").decode(),
                attributes=tuple(attrs),
                takes_token_ids=takes.value == _capi.PARML_LAYER_INPUT_TOKEN_IDS,
                requires=requires.value.decode() if requires.value is not None else None,
            )
        )
    return tuple(out)


class KindLayer(Layer):
    """A layer of one of the library's kinds. The classes (Linear, ReLU,
    LayerNorm, ...) are made from the library's kinds query when this module
    is imported: positional arguments fill the kind's attributes in the
    order it declares them, keywords by name, the rest take their defaults.
    The values are checked when the layer is added to a model."""

    _kind: KindInfo

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        specs = self._kind.attributes
        cls = type(self).__name__
        if len(args) > len(specs):
            raise TypeError(f"{cls}() takes {len(specs)} attribute(s), got {len(args)} positional")
        values: dict[str, Any] = {}
        for spec, value in zip(specs, args):
            values[spec.name] = value
        for key, value in kwargs.items():
            if not any(s.name == key for s in specs):
                names = ", ".join(s.name for s in specs) or "none"
                raise TypeError(f"{cls}() has no attribute {key!r} (its attributes: {names})")
            if key in values:
                raise TypeError(f"{cls}() got {key!r} twice")
            values[key] = value
        for spec in specs:
            if spec.name not in values:
                if spec.default is REQUIRED:
                    raise TypeError(f"{cls}() needs {spec.name!r}")
                values[spec.name] = spec.default
            setattr(self, spec.name, _PY_TYPES[spec.type](values[spec.name]))

    def _emit(self, model: Any) -> None:
        specs = self._kind.attributes
        attrs = (_capi.parml_attribute * max(len(specs), 1))()
        keep = []  # the ints arrays, alive for the call
        for a, spec in zip(attrs, specs):
            value = getattr(self, spec.name)
            a.name = spec.name.encode()
            a.type = spec.type
            if spec.type in (_capi.PARML_ATTR_INT, _capi.PARML_ATTR_BOOL):
                a.int_value = int(value)
            elif spec.type == _capi.PARML_ATTR_FLOAT:
                a.float_value = float(value)
            elif spec.type == _capi.PARML_ATTR_STRING:
                a.string_value = str(value).encode()
            else:
                arr = (ctypes.c_int64 * max(len(value), 1))(*value)
                keep.append(arr)
                a.ints = ctypes.cast(arr, ctypes.POINTER(ctypes.c_int64))
                a.n_ints = len(value)
        check(_capi.parml_model_add_layer(model, self._kind.name.encode(), attrs, len(specs)))


def _make_class(info: KindInfo) -> type[KindLayer]:
    lines = [info.doc + "."]
    if info.attributes:
        lines.append("")
        lines.append("Attributes:")
        for a in info.attributes:
            default = "" if a.default is REQUIRED else f" (default {a.default!r})"
            rule = f"; {a.rule}" if a.rule else ""
            lines.append(f"    {a.name}: {a.doc}{default}{rule}")
    return type(info.class_name, (KindLayer,), {"_kind": info, "__doc__": "\n".join(lines), "__module__": __name__})


_KINDS = kinds()
_CLASSES = {info.class_name: _make_class(info) for info in _KINDS}
globals().update(_CLASSES)


class StageBoundary(Layer):
    """Not a layer: where a pipeline stage starts. With boundaries in the
    model, a trainer with pp > 1 cuts there (pp = boundaries + 1) instead of
    balancing stages by the cost the layers state. Top level only."""

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


__all__ = ["Layer", "KindLayer", "Residual", "StageBoundary", "kinds", "KindInfo", "AttributeInfo", "REQUIRED"] + sorted(_CLASSES)
