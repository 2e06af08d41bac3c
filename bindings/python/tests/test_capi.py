"""The 1:1 layer against the C headers: every function bound with the
header's types, structs laid out as the ABI record says, constants equal,
handle kinds distinct."""

from __future__ import annotations

import ctypes
import inspect
import re
from ctypes import POINTER, byref

import numpy as np
import pytest

import parml
from parml import _capi

from conftest import REPO_ROOT

HEADER = REPO_ROOT / "include" / "parml.h"
TYPES_HEADER = REPO_ROOT / "include" / "parml_types.h"
ABI_RECORD = REPO_ROOT / "abi" / "parml.abi"

DECL = re.compile(r"^PARML_API\s+(?P<ret>[^;(]*?)\s*\b(?P<name>parml_\w+)\((?P<args>[^)]*)\);", re.M)


def header_functions() -> dict[str, tuple[str, list[str], str]]:
    """name -> (return type, [parameter types], the declaration line)."""
    out = {}
    for m in DECL.finditer(HEADER.read_text()):
        args = m.group("args").strip()
        params = [] if args in ("", "void") else [a.strip() for a in args.split(",")]
        types = []
        for p in params:
            # drop the parameter name: the last identifier, unless the whole thing is a type
            t = re.sub(r"\s*\b\w+$", "", p) if re.search(r"[\w*]\s+\w+$", p) else p
            types.append(" ".join(t.split()))
        out[m.group("name")] = (" ".join(m.group("ret").split()), types, m.group(0))
    return out


def expected_ctype(c: str):
    """The ctypes type a C type from the header must be bound as."""
    base = {
        "parml_status": _capi.parml_status,
        "int32_t": ctypes.c_int32,
        "int64_t": ctypes.c_int64,
        "uint64_t": ctypes.c_uint64,
        "ptrdiff_t": _capi.c_ptrdiff_t,
        "size_t": ctypes.c_size_t,
        "float": ctypes.c_float,
        "double": ctypes.c_double,
        "void *": ctypes.c_void_p,
        "void const *": ctypes.c_void_p,
        "void **": POINTER(ctypes.c_void_p),
        "char const *": ctypes.c_char_p,
        "char const **": POINTER(ctypes.c_char_p),
        "char **": POINTER(POINTER(ctypes.c_char)),
        **_capi.HANDLE_TYPES,
        **{k + " *": POINTER(v) for k, v in _capi.HANDLE_TYPES.items()},
        **{k + " *": POINTER(v) for k, v in _capi.STRUCT_TYPES.items()},
        **{k + " const *": POINTER(v) for k, v in _capi.STRUCT_TYPES.items()},
    }
    if c in base:
        return base[c]
    m = re.fullmatch(r"(int64_t|float|double|ptrdiff_t|int32_t|size_t)( const)? \*", c)
    if m:
        return POINTER(base[m.group(1)])
    m = re.fullmatch(r"(float) \*\*", c)
    if m:
        return POINTER(POINTER(base[m.group(1)]))
    raise AssertionError(f"the test does not know the C type {c!r}: teach expected_ctype")


def test_every_header_function_is_bound():
    declared = header_functions()
    assert len(declared) >= 48
    missing = sorted(set(declared) - set(_capi.BOUND))
    extra = sorted(set(_capi.BOUND) - set(declared))
    assert not missing, f"declared in include/parml.h but not bound in parml/_capi.py: {missing}"
    assert not extra, f"bound in parml/_capi.py but not declared in include/parml.h: {extra}"


@pytest.mark.parametrize("name", sorted(header_functions()))
def test_binding_types_match_header(name):
    ret, params, _ = header_functions()[name]
    fn = _capi.BOUND[name]
    want_args = [expected_ctype(t) for t in params]
    assert list(fn.argtypes) == want_args, f"{name}: argtypes {fn.argtypes} != header {params}"
    assert fn.c_function.argtypes == want_args
    want_ret = None if ret == "void" else expected_ctype(ret)
    assert fn.restype == want_ret and fn.c_function.restype == want_ret, f"{name}: restype"


def test_each_binding_quotes_its_prototype():
    source = inspect.getsource(_capi)
    for name, (_, _, decl) in header_functions().items():
        assert f"# {decl}" in source, f"{name}: the comment above its binding is not the header's prototype"


def header_structs() -> dict[str, list[str]]:
    text = TYPES_HEADER.read_text()
    out = {}
    for m in re.finditer(r"typedef struct (\w+) \{(.*?)\} \1;", text, re.S):
        body = re.sub(r"/\*.*?\*/", "", m.group(2), flags=re.S)
        out[m.group(1)] = [re.findall(r"(\w+)$", decl.strip())[0] for decl in body.split(";") if decl.strip()]
    return out


def test_structs_mirror_header_order_and_abi_layout():
    structs = header_structs()
    assert set(structs) == set(_capi.STRUCT_TYPES)
    layout: dict[str, dict[str, tuple[int, int]]] = {}
    sizes: dict[str, int] = {}
    for line in ABI_RECORD.read_text().splitlines():
        m = re.match(r"field (\w+)\.(\w+) = offset (\d+) size (\d+)", line)
        if m:
            layout.setdefault(m.group(1), {})[m.group(2)] = (int(m.group(3)), int(m.group(4)))
        m = re.match(r"struct (\w+) = size (\d+)", line)
        if m:
            sizes[m.group(1)] = int(m.group(2))
    for name, cls in _capi.STRUCT_TYPES.items():
        fields = [f[0] for f in cls._fields_]
        assert fields == structs[name], f"{name}: fields not in header order"
        assert ctypes.sizeof(cls) == sizes[name], name
        for field in fields:
            descr = getattr(cls, field)
            assert (descr.offset, descr.size) == layout[name][field], f"{name}.{field}"


def test_constants_match_header():
    for m in re.finditer(r"^#define (PARML_\w+)\s+(-?\d+)\b", TYPES_HEADER.read_text(), re.M):
        assert getattr(_capi, m.group(1)) == int(m.group(2)), m.group(1)
    version = re.search(r'#define PARML_VERSION_STRING "([^"]+)"', TYPES_HEADER.read_text()).group(1)
    assert _capi.PARML_VERSION_STRING == version


def test_params_are_filled_by_the_library():
    p = _capi.parml_optimizer_params()
    assert _capi.parml_optimizer_params_init(p) == 0
    assert p.struct_size == ctypes.sizeof(p)
    assert (p.kind, p.schedule, p.step_size) == (_capi.PARML_OPTIMIZER_SGD, _capi.PARML_SCHEDULE_CONSTANT, 1)
    assert p.learning_rate == pytest.approx(0.01)
    s = _capi.parml_strategy_params()
    assert _capi.parml_strategy_params_init(s) == 0
    assert (s.dp, s.tp, s.pp, s.backend, s.grad_chunk) == (1, 1, 1, _capi.PARML_BACKEND_THREADS, 32)
    f = _capi.parml_fit_params()
    assert _capi.parml_fit_params_init(f) == 0
    assert (f.epochs, f.batch_size, f.shuffle, f.drop_last) == (1, 64, 1, 0)
    assert not f.validation and not f.progress
    # the Python classes start from the same init call
    assert parml.SGD(0.5).to_params().beta2 == pytest.approx(p.beta2)
    assert parml.Strategy().to_params().watchdog_seconds == s.watchdog_seconds


def test_wrong_handle_kind_is_a_type_error(model):
    # tier 2: a model where a trainer is expected
    with model._use() as m:
        with pytest.raises(TypeError, match="parml_trainer"):
            _capi.parml_trainer_free(m)
        with pytest.raises(TypeError):
            _capi.parml_dataset_size(m, byref(ctypes.c_int64()))
    with pytest.raises(TypeError):
        _capi.parml_model_num_params(12345, byref(ctypes.c_int64()))
    with pytest.raises(TypeError):
        _capi.parml_model_num_params(ctypes.c_void_p(1), byref(ctypes.c_int64()))
    # a wrapper passes as its own handle, and only as that
    n = ctypes.c_int64()
    assert _capi.parml_model_num_params(model, byref(n)) == 0 and n.value == model.num_params
    x, y = np.zeros((4, 8), np.float32), np.zeros(4, np.float32)
    with parml.Trainer(model) as trainer, parml.Dataset(x, y) as ds:
        with pytest.raises(TypeError):
            _capi.parml_model_num_params(trainer, byref(n))
        with pytest.raises(TypeError):
            _capi.parml_trainer_evaluate(trainer, model, 4, None, None)
        # tier 3
        with pytest.raises(TypeError, match="parml.Model"):
            parml.Trainer(trainer)
        with pytest.raises(TypeError, match="parml.Model"):
            parml.Trainer(ds)
        with pytest.raises(TypeError):
            parml.Trainer(model, optimizer=parml.Strategy())
        with pytest.raises(TypeError):
            parml.Sequential([parml.Linear(2, 2), "relu"])


def test_version_and_blas():
    assert _capi.parml_version_number() == _capi.PARML_VERSION_NUMBER
    assert parml.library_version() == _capi.PARML_VERSION_STRING
    assert parml.blas_core()
    before = parml.blas_threads()
    parml.set_blas_threads(1)
    assert parml.blas_threads() == 1
    parml.set_blas_threads(before)
    assert _capi.parml_status_string(_capi.PARML_ERR_SHAPE).startswith(b"PARML_ERR_SHAPE")
