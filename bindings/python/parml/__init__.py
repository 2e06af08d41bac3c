"""parml: Python bindings for libparml, a CPU training engine.

Three tiers (as llama-cpp-python):

- ``parml._lib`` finds and loads libparml.so ($PARML_LIBRARY, the package
  directory, the repository's .build/release, then the system loader) and
  checks its version;
- ``parml._capi`` binds every C function of include/parml.h 1:1;
- this package: Sequential and the layers, optimizers and schedules,
  Strategy, Trainer, Dataset, Tensor, with exceptions for every error
  status; model and checkpoint files (Model.save/load, export_onnx,
  Trainer.save_checkpoint/load_checkpoint), Trainer.plan() and traces.

>>> import numpy as np, parml
>>> model = parml.Sequential([parml.Linear(2, 16), parml.Tanh(), parml.Linear(16, 2)], seed=42)
>>> with parml.Trainer(model, loss="cross_entropy", optimizer=parml.Adam(0.05)) as trainer:
...     history = trainer.fit(x, y, epochs=20, batch_size=32)

bindings/python/README.md lists the whole API.
"""

from __future__ import annotations

from . import _capi, callbacks, privacy, schedules
from ._lib import LIBRARY_PATH as library_path
from ._lib import proto_path
from ._version import __version__
from . import data
from .data import Dataset, TokenDataset, load_csv, load_idx, load_npy, load_npz, open_shards
from .errors import (
    BLASError,
    CancelledError,
    ClosedError,
    CommunicationError,
    NonFiniteError,
    AuthenticationError,
    MissingTagError,
    WrongKeyError,
    TamperedError,
    FormatError,
    InternalError,
    InvalidArgumentError,
    LibraryNotFoundError,
    LibraryVersionError,
    OutOfMemoryError,
    ParmlError,
    ParmlIOError,
    ShapeError,
    StateError,
    UnsupportedError,
    check,
)
from . import layers as _layers
from .layers import *  # noqa: F403 - every layer kind of the library, one class each (layers.kinds())
from .model import Model, Sequential, file_info
from .optim import SGD, Adam, AdamW, Optimizer
from .privacy import Privacy
from .strategy import Strategy
from .tensor import Tensor
from .trainer import EpochMetrics, Evaluation, History, MemoryReport, Metrics, Trainer


def library_version() -> str:
    """The loaded library's version string ("MAJOR.MINOR.PATCH")."""
    return _capi.parml_version_string().decode()


def blas_core() -> str:
    """Loads OpenBLAS if needed and names the kernel family in use ("SkylakeX", ...)."""
    from ctypes import byref, c_char_p

    core = c_char_p()
    check(_capi.parml_blas_core(byref(core)))
    return (core.value or b"").decode()


def blas_threads() -> int:
    """The number of OpenBLAS threads in effect."""
    from ctypes import byref, c_int32

    n = c_int32()
    check(_capi.parml_blas_threads(byref(n)))
    return n.value


def set_blas_threads(threads: int) -> None:
    """Sets the OpenBLAS threads of this process (1...1024); trainers set it
    from their strategy when created, and this overrides it until the next."""
    check(_capi.parml_blas_set_threads(int(threads)))


__all__ = [
    "__version__",
    "library_path",
    "proto_path",
    "file_info",
    "library_version",
    "blas_core",
    "blas_threads",
    "set_blas_threads",
    # model
    "Model",
    "Sequential",
    *_layers.__all__,
    # training
    "Optimizer",
    "SGD",
    "Adam",
    "AdamW",
    "schedules",
    "privacy",
    "Privacy",
    "Strategy",
    "Trainer",
    "History",
    "EpochMetrics",
    "Evaluation",
    "Metrics",
    "MemoryReport",
    # data
    "Dataset",
    "TokenDataset",
    "load_idx",
    "load_npy",
    "load_npz",
    "load_csv",
    "open_shards",
    "data",
    "Tensor",
    # errors
    "ParmlError",
    "InvalidArgumentError",
    "ShapeError",
    "UnsupportedError",
    "OutOfMemoryError",
    "ParmlIOError",
    "FormatError",
    "StateError",
    "BLASError",
    "CancelledError",
    "InternalError",
    "CommunicationError",
    "NonFiniteError",
    "AuthenticationError",
    "MissingTagError",
    "WrongKeyError",
    "TamperedError",
    "ClosedError",
    "LibraryNotFoundError",
    "LibraryVersionError",
]
