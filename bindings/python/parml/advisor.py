"""parml.advise and parml.Auto: the strategy advisor (docs/advisor.md).

The library predicts step time and peak memory per rank of every
dp x pp x tp layout from a cost model calibrated on this machine (the
first call measures it for a few seconds and caches the figures), and
ranks the layouts that fit your constraints fastest first.

>>> advice = parml.advise(model, sample_shape=(784,), batch=128, memory_budget=64 << 20)
>>> trainer = parml.Trainer(model, optimizer=parml.Adam(1e-3), strategy=parml.Auto(sample_shape=(784,), batch=128))
"""

from __future__ import annotations

from ctypes import POINTER, byref, c_char_p, c_int64
from dataclasses import dataclass
from typing import Any, Sequence

from . import _capi
from .errors import check, take_text
from .model import Model
from .optim import Optimizer
from .strategy import _BACKENDS, _SCHEDULES, Strategy, _enum
from .trainer import _LOSSES


@dataclass(frozen=True)
class Machines:
    """Machines parml is not running on: ``nodes`` x ``ranks_per_node`` ranks,
    ``cores_per_node`` cores each, links of ``inter_node_bandwidth`` bytes/s
    and ``inter_node_latency`` seconds between nodes."""

    nodes: int
    ranks_per_node: int
    cores_per_node: int
    inter_node_bandwidth: float = 12.5e9
    inter_node_latency: float = 5e-6


@dataclass(frozen=True)
class LayoutPrediction:
    """One ranked layout: seconds per step split into terms, and the fullest
    rank's bytes as Trainer.memory counts them."""

    dp: int
    pp: int
    tp: int
    micro_batches: int
    zero_stage: int
    blas_threads: int
    step_seconds: float
    compute_seconds: float
    communication_seconds: float
    bubble_seconds: float
    optimizer_seconds: float
    overhead_seconds: float
    parameter_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    scratch_bytes: int
    activation_bytes: int
    peak_bytes: int
    peak_stage: int
    reason: str
    schedule: str = "1f1b"
    virtual_stages: int = 1

    def strategy(self, **overrides: Any) -> Strategy:
        """This layout as a parml.Strategy (extra keywords: other settings)."""
        pipeline: dict[str, Any] = {}
        if self.schedule == "interleaved":
            pipeline = {"schedule": "interleaved", "virtual_stages": self.virtual_stages}
        return Strategy(
            dp=self.dp, pp=self.pp, tp=self.tp, micro_batches=self.micro_batches, zero=self.zero_stage, **pipeline, **overrides
        )


@dataclass(frozen=True)
class ExcludedLayout:
    """A layout the advisor left out, and why."""

    dp: int
    pp: int
    tp: int
    micro_batches: int
    zero_stage: int
    why: str
    schedule: str = "1f1b"
    virtual_stages: int = 1


def _schedule_name(code: int) -> str:
    return next((k for k, v in _SCHEDULES.items() if v == code), "1f1b")


class Advice:
    """The advisor's answer: ``ranked`` (fastest first), ``excluded`` (with
    why), and ``text``, the table ``print(advice)`` shows."""

    def __init__(self, ranked: list[LayoutPrediction], excluded: list[ExcludedLayout], text: str) -> None:
        self.ranked = ranked
        self.excluded = excluded
        self.text = text

    @property
    def first(self) -> LayoutPrediction | None:
        """The advisor's choice (None when nothing fits)."""
        return self.ranked[0] if self.ranked else None

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"<parml.Advice {len(self.ranked)} ranked, {len(self.excluded)} excluded>"


class Auto:
    """Strategy "auto" for parml.Trainer: the advisor's first layout for these
    constraints (the arguments are parml.advise's); Trainer.plan() says it was
    chosen and why."""

    def __init__(self, sample_shape: Sequence[int], batch: int, **constraints: Any) -> None:
        self.sample_shape = tuple(int(d) for d in sample_shape)
        self.batch = int(batch)
        self.constraints = constraints
        _params(self.sample_shape, self.batch, **constraints)  # refuse bad keywords now

    def _params(self) -> tuple[Any, Any]:
        return _params(self.sample_shape, self.batch, **self.constraints)


def _params(
    sample_shape: Sequence[int],
    batch: int,
    *,
    cores: int = 0,
    max_ranks: int = 0,
    memory_budget: int = 0,
    deterministic: bool = False,
    backend: str | int = "threads",
    cache_dir: str | None = None,
    machines: Machines | None = None,
) -> tuple[Any, Any]:
    p = _capi.parml_advice_params()
    check(_capi.parml_advice_params_init(p))
    dims = (c_int64 * max(len(sample_shape), 1))(*[int(d) for d in sample_shape])
    p.sample_dims = dims
    p.sample_rank = len(sample_shape)
    p.batch = int(batch)
    p.cores = int(cores)
    p.max_ranks = int(max_ranks)
    p.memory_budget = int(memory_budget)
    p.deterministic = 1 if deterministic else 0
    p.backend = _enum(backend, _BACKENDS, "backend")
    keep = None
    if cache_dir is not None:
        keep = str(cache_dir).encode()
        p.cache_dir = keep
    if machines is not None:
        p.nodes = machines.nodes
        p.ranks_per_node = machines.ranks_per_node
        p.cores_per_node = machines.cores_per_node
        p.inter_node_bandwidth = machines.inter_node_bandwidth
        p.inter_node_latency = machines.inter_node_latency
    return p, (dims, keep)  # the second keeps the arrays alive for the call


def loss_code(loss: str | int) -> int:
    return _enum(loss, _LOSSES, "loss")


def advise(
    model: Model,
    sample_shape: Sequence[int],
    batch: int,
    loss: str | int = "cross_entropy",
    optimizer: Optimizer | None = None,
    *,
    show: bool = True,
    **constraints: Any,
) -> Advice:
    """Predicts and ranks every dp x pp x tp layout (micro-batches, ZeRO) for
    ``batch`` samples shaped ``sample_shape`` (no batch dimension), and prints
    the table when ``show``.

    Constraints (keywords): ``cores`` (0: this machine's), ``max_ranks`` (0: 4),
    ``memory_budget`` bytes per rank (0: none), ``deterministic`` (only
    deterministic-mode layouts), ``backend`` ("threads", or "mpi": under
    mpirun every process calls it and gets the same layouts of all the
    job's processes; elsewhere with ``machines``). ``machines`` predicts
    for other machines. ``cache_dir``
    overrides where the calibration is cached ($PARML_CACHE_DIR,
    $XDG_CACHE_HOME/parml, ~/.cache/parml). Raises InvalidArgumentError for
    bad constraints, ShapeError when the model does not take such samples.
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be a parml.Model, got {type(model).__name__}")
    p, keep = _params(sample_shape, batch, **constraints)
    opt = optimizer.to_params() if optimizer is not None else None
    handle = _capi.parml_advice()
    with model._use() as m:
        check(_capi.parml_strategy_advise(m, loss_code(loss), opt, p, byref(handle)))
    try:
        ranked_n, excluded_n = _capi.c_ptrdiff_t(), _capi.c_ptrdiff_t()
        check(_capi.parml_advice_count(handle, byref(ranked_n), byref(excluded_n)))
        ranked = []
        for i in range(ranked_n.value):
            out = _capi.parml_layout_prediction()
            out.struct_size = _capi.ctypes.sizeof(out)
            reason = c_char_p()
            check(_capi.parml_advice_layout(handle, i, byref(out), byref(reason)))
            values = {f: getattr(out, f) for f, _ in out._fields_ if f != "struct_size"}
            s = _capi.parml_strategy_params()
            check(_capi.parml_strategy_params_init(s))
            check(_capi.parml_advice_strategy(handle, i, s))
            values["schedule"] = _schedule_name(s.pipeline_schedule)
            values["virtual_stages"] = s.virtual_stages if values["schedule"] == "interleaved" else 1
            ranked.append(LayoutPrediction(reason=(reason.value or b"").decode(), **values))
        excluded = []
        for i in range(excluded_n.value):
            s = _capi.parml_strategy_params()
            check(_capi.parml_strategy_params_init(s))
            why = c_char_p()
            check(_capi.parml_advice_excluded(handle, i, byref(s), byref(why)))
            schedule = _schedule_name(s.pipeline_schedule)
            excluded.append(ExcludedLayout(s.dp, s.pp, s.tp, s.micro_batches, s.zero_stage, (why.value or b"").decode(), schedule,
                                           s.virtual_stages if schedule == "interleaved" else 1))
        text = take_text(lambda t: _capi.parml_advice_text(handle, t))
    finally:
        _capi.parml_advice_free(handle)
    del keep
    advice = Advice(ranked, excluded, text)
    if show:
        print(text, end="")
    return advice
