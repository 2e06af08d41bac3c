"""parml.Strategy: how training is laid out on ranks."""

from __future__ import annotations

from typing import Any

from . import _capi
from .errors import check

_SCHEDULES = {
    "gpipe": _capi.PARML_PIPELINE_GPIPE,
    "1f1b": _capi.PARML_PIPELINE_1F1B,
    "interleaved": _capi.PARML_PIPELINE_INTERLEAVED_1F1B,
}
_BACKENDS = {"threads": _capi.PARML_BACKEND_THREADS, "mpi": _capi.PARML_BACKEND_MPI}
_COMPRESSIONS = {
    "none": _capi.PARML_COMPRESSION_NONE,
    "bf16": _capi.PARML_COMPRESSION_BF16,
    "fp16": _capi.PARML_COMPRESSION_FP16,
    "powersgd": _capi.PARML_COMPRESSION_POWERSGD,
}
_OVERLAPS = {"auto": _capi.PARML_OVERLAP_AUTO, "on": _capi.PARML_OVERLAP_ON, "off": _capi.PARML_OVERLAP_OFF}
_PRECISIONS = {"fp32": _capi.PARML_PRECISION_FP32, "float32": _capi.PARML_PRECISION_FP32, "bf16": _capi.PARML_PRECISION_BF16}


def _enum(value: Any, names: dict[str, int], what: str) -> int:
    if isinstance(value, str):
        try:
            return names[value.lower()]
        except KeyError:
            raise ValueError(f"unknown {what} {value!r}; one of {sorted(names)}") from None
    return int(value)


def _overlap(value: Any) -> int:
    # True and False read as "on" and "off" (bool is an int subclass: test it first).
    if isinstance(value, bool):
        return _capi.PARML_OVERLAP_ON if value else _capi.PARML_OVERLAP_OFF
    return _enum(value, _OVERLAPS, "overlap")


class Strategy:
    """The parallel layout (parml_strategy_params). Arguments left as None
    keep the library's defaults: serial (dp = tp = pp = 1), threads backend,
    fast (non-deterministic-layout) mode, threads per rank = cores / ranks,
    seed 0, 60 s watchdog, 32-sample gradient chunks, 4 MiB buckets.

    Args:
        dp: data-parallel ranks (threads of this process).
        pp, micro_batches, schedule: pipeline stages (consecutive
            top-level layers, balanced by parameter count), micro-batches
            per step, and the schedule ("gpipe", "1f1b" or "interleaved").
        virtual_stages: with schedule="interleaved" (Megatron-LM's
            interleaved 1F1B), the runs of layers each stage holds (>= 2):
            the model is cut into pp × virtual_stages runs, stage s holds
            runs s, s+pp, ..., and micro_batches must be a multiple of pp.
            Bubble (pp−1)/(virtual_stages·micro_batches+pp−1).
        tp: tensor-parallel ranks: each Linear → element-wise → Linear pair
            is split Megatron-style (column then row); other layers are
            replicated; tp must divide the split widths.
        split_classifier: with tp > 1, True splits the classifier (the
            model's last Linear, or a TiedClassifier) by classes and
            computes the cross-entropy on the sharded logits, and splits
            token embeddings by vocabulary rows (tp must divide the
            vocabulary); False (default) runs them whole on every tp rank.
            Pays for many classes only.
        zero: ZeRO stage 0..3 on the dp axis.
        backend: "threads" (default: ranks are threads of this process) or
            "mpi": one rank per process under mpirun (every process runs the
            same script and passes the same data; docs/mpi.md).
        deterministic: True for layout-invariant training: every dp, pp,
            micro-batch count and ZeRO stage gives serial training's
            parameters bit for bit.
        grad_chunk: deterministic mode's samples per gradient chunk.
        blas_threads: threads per rank for its products and element-wise
            work (parml's own) and convolutions (0 = cores / ranks, counting
            the cores this process may run on, or 1 when deterministic).
        seed: dropout masks and shuffling.
        watchdog_seconds: a rank waiting longer in a collective fails the step.
        bucket_bytes: gradient all-reduce bucket size.
        gradient_compression: "none" (default), "bf16" or "fp16": dp > 1
            sums gradients in a ring carrying 16-bit values (half the
            bytes), each rounding's error added back at the next step;
            "powersgd": each matrix as rank-compression_rank factors
            (PowerSGD, with error feedback). Default mode and zero 0 only;
            not equivalent to serial training (docs/communication.md).
        compression_rank: PowerSGD's rank (default 4).
        outer_learning_rate, outer_momentum: local SGD's outer optimizer
            (DiLoCo): at each average, a Nesterov SGD step on the outer
            gradient θ_last − mean(θ); 1 and 0 (defaults) is plain
            averaging, DiLoCo uses 0.7 and 0.9.
        local_steps: local SGD: dp replicas step on their own rows and
            average their parameters every local_steps steps; 1 (default)
            sums gradients every step.
        precision: "fp32" (default) or "bf16": the products of Linear
            layers, attention projections and oneDNN convolutions on bf16
            operands with float32 accumulation (oneDNN on the CPU's
            AVX512-BF16 instructions); weights, optimizer state, losses and
            reductions stay float32. Where the host cannot (no AVX512-BF16,
            no oneDNN) training runs float32 and Trainer.plan() says why
            (docs/precision.md).
        overlap: "auto" (default), "on" or "off": dp > 1 reduces gradient
            buckets (runs of whole layers, bucket_bytes or more) on a
            communication thread per rank while backward computes earlier
            layers, at every ZeRO stage; the same bits either way. "auto" is
            on for MPI processes on more than one machine and off otherwise
            (one machine's cores, over shared memory or loopback), as
            measured (docs/communication.md); "on" with deterministic mode,
            compression or local SGD is refused.
    """

    def __init__(
        self,
        dp: int | None = None,
        tp: int | None = None,
        pp: int | None = None,
        micro_batches: int | None = None,
        schedule: str | int | None = None,
        zero: int | None = None,
        backend: str | int | None = None,
        deterministic: bool | None = None,
        grad_chunk: int | None = None,
        blas_threads: int | None = None,
        seed: int | None = None,
        watchdog_seconds: float | None = None,
        bucket_bytes: int | None = None,
        split_classifier: bool | None = None,
        virtual_stages: int | None = None,
        gradient_compression: str | int | None = None,
        local_steps: int | None = None,
        compression_rank: int | None = None,
        outer_learning_rate: float | None = None,
        outer_momentum: float | None = None,
        precision: str | int | None = None,
        overlap: str | int | bool | None = None,
    ) -> None:
        fields: dict[str, Any] = {
            "dp": dp,
            "tp": tp,
            "pp": pp,
            "micro_batches": micro_batches,
            "pipeline_schedule": None if schedule is None else _enum(schedule, _SCHEDULES, "pipeline schedule"),
            "zero_stage": zero,
            "backend": None if backend is None else _enum(backend, _BACKENDS, "backend"),
            "deterministic": None if deterministic is None else int(bool(deterministic)),
            "grad_chunk": grad_chunk,
            "blas_threads": blas_threads,
            "seed": seed,
            "watchdog_seconds": watchdog_seconds,
            "bucket_bytes": bucket_bytes,
            "split_classifier": None if split_classifier is None else int(bool(split_classifier)),
            "virtual_stages": virtual_stages,
            "gradient_compression": None
            if gradient_compression is None
            else _enum(gradient_compression, _COMPRESSIONS, "gradient compression"),
            "local_steps": local_steps,
            "compression_rank": compression_rank,
            "outer_learning_rate": outer_learning_rate,
            "outer_momentum": outer_momentum,
            "precision": None if precision is None else _enum(precision, _PRECISIONS, "precision"),
            "overlap": None if overlap is None else _overlap(overlap),
        }
        if seed is not None and not 0 <= int(seed) < 1 << 64:
            raise ValueError(f"seed must be in 0...2^64-1, got {seed}")
        self.fields = {k: v for k, v in fields.items() if v is not None}
        given = dict(
            dp=dp, tp=tp, pp=pp, micro_batches=micro_batches, schedule=schedule, zero=zero,
            backend=backend, deterministic=deterministic, grad_chunk=grad_chunk,
            blas_threads=blas_threads, seed=seed, watchdog_seconds=watchdog_seconds,
            bucket_bytes=bucket_bytes, split_classifier=split_classifier, virtual_stages=virtual_stages,
            gradient_compression=gradient_compression, local_steps=local_steps, compression_rank=compression_rank,
            outer_learning_rate=outer_learning_rate, outer_momentum=outer_momentum, precision=precision,
            overlap=overlap,
        )
        self._given = {k: v for k, v in given.items() if v is not None}

    def to_params(self) -> _capi.parml_strategy_params:
        """The parml_strategy_params this strategy gives."""
        p = _capi.parml_strategy_params()
        check(_capi.parml_strategy_params_init(p))
        for name, value in self.fields.items():
            setattr(p, name, value)
        return p

    @property
    def dp(self) -> int:
        return int(self.to_params().dp)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._given.items())
        return f"Strategy({args})"


__all__ = ["Strategy"]
