"""Learning-rate schedules, each with an optional linear warmup.

Pass one to an optimizer: ``parml.SGD(0.1, schedule=parml.schedules.cosine(1000, warmup_steps=50))``.
Arguments left as None keep the library's defaults (parml_optimizer_params_init).
"""

from __future__ import annotations

from typing import Any

from . import _capi


class Schedule:
    """A schedule's fields of parml_optimizer_params."""

    def __init__(self, kind: int, **fields: Any) -> None:
        self.kind = kind
        self.fields = {k: v for k, v in fields.items() if v is not None}

    def _apply(self, p: _capi.parml_optimizer_params) -> None:
        p.schedule = self.kind
        for name, value in self.fields.items():
            setattr(p, name, value)

    def __repr__(self) -> str:
        name = {1: "constant", 2: "step", 3: "cosine"}.get(self.kind, str(self.kind))
        args = ", ".join(f"{k}={v!r}" for k, v in self.fields.items())
        return f"schedules.{name}({args})"


def constant(warmup_steps: int | None = None) -> Schedule:
    """The base learning rate throughout (after the warmup)."""
    return Schedule(_capi.PARML_SCHEDULE_CONSTANT, warmup_steps=warmup_steps)


def step(step_size: int, gamma: float | None = None, warmup_steps: int | None = None) -> Schedule:
    """lr * gamma^floor(step / step_size) (library default gamma 0.1)."""
    return Schedule(_capi.PARML_SCHEDULE_STEP, step_size=step_size, gamma=gamma, warmup_steps=warmup_steps)


def cosine(total_steps: int, min_lr: float | None = None, warmup_steps: int | None = None) -> Schedule:
    """Cosine from lr to min_lr (library default 0) over total_steps, warmup included."""
    return Schedule(
        _capi.PARML_SCHEDULE_COSINE, total_steps=total_steps, min_lr=min_lr, warmup_steps=warmup_steps
    )


__all__ = ["Schedule", "constant", "step", "cosine"]
