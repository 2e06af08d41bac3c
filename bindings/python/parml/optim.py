"""Optimizers: SGD, Adam and AdamW with PyTorch's update rules, a
learning-rate schedule (parml.schedules) and clipping by global gradient norm.
skip_nonfinite (default True) skips a step whose loss or gradients are not
finite: it updates nothing and raises parml.NonFiniteError. decay_by_kind
(default False: every parameter, as torch.optim) applies weight decay only
to the parameters whose layer kind decays them (linear weights; not biases
or LayerNorm), the parameter groups nanoGPT and Megatron-LM use.

An optimizer object only holds settings; the trainer gets them as a
parml_optimizer_params filled by parml_optimizer_params_init, with the
arguments you gave written over it. Arguments left as None keep the
library's defaults (momentum 0, betas (0.9, 0.999), eps 1e-8, no clipping).
"""

from __future__ import annotations

from typing import Any

from . import _capi
from .errors import check
from .schedules import Schedule


class Optimizer:
    """Base class: an optimizer kind plus fields of parml_optimizer_params."""

    _kind: int

    def __init__(
        self,
        lr: float,
        *,
        schedule: Schedule | None = None,
        clip_grad_norm: float | None = None,
        skip_nonfinite: bool | None = None,
        decay_by_kind: bool | None = None,
        **fields: Any,
    ) -> None:
        if schedule is not None and not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must come from parml.schedules, got {type(schedule).__name__}")
        self.lr = float(lr)
        self.schedule = schedule
        self.fields = {k: v for k, v in fields.items() if v is not None}
        if clip_grad_norm is not None:
            self.fields["clip_grad_norm"] = float(clip_grad_norm)
        if skip_nonfinite is not None:
            self.fields["skip_nonfinite"] = int(bool(skip_nonfinite))
        if decay_by_kind is not None:
            self.fields["decay_by_kind"] = int(bool(decay_by_kind))

    def to_params(self) -> _capi.parml_optimizer_params:
        """The parml_optimizer_params these settings give."""
        p = _capi.parml_optimizer_params()
        check(_capi.parml_optimizer_params_init(p))
        p.kind = self._kind
        p.learning_rate = self.lr
        for name, value in self.fields.items():
            setattr(p, name, value)
        if self.schedule is not None:
            self.schedule._apply(p)
        return p

    def __repr__(self) -> str:
        args = [repr(self.lr)] + [f"{k}={v!r}" for k, v in self.fields.items()]
        if self.schedule is not None:
            args.append(f"schedule={self.schedule!r}")
        return f"{type(self).__name__}({', '.join(args)})"


class SGD(Optimizer):
    """SGD with optional momentum, Nesterov momentum and L2 weight decay."""

    _kind = _capi.PARML_OPTIMIZER_SGD

    def __init__(
        self,
        lr: float,
        momentum: float | None = None,
        nesterov: bool | None = None,
        weight_decay: float | None = None,
        *,
        schedule: Schedule | None = None,
        clip_grad_norm: float | None = None,
        skip_nonfinite: bool | None = None,
        decay_by_kind: bool | None = None,
    ) -> None:
        super().__init__(
            lr,
            schedule=schedule,
            clip_grad_norm=clip_grad_norm,
            skip_nonfinite=skip_nonfinite,
            decay_by_kind=decay_by_kind,
            momentum=momentum,
            nesterov=None if nesterov is None else int(bool(nesterov)),
            weight_decay=weight_decay,
        )


class _AdamFamily(Optimizer):
    def __init__(
        self,
        lr: float,
        betas: tuple[float, float] | None = None,
        eps: float | None = None,
        weight_decay: float | None = None,
        *,
        schedule: Schedule | None = None,
        clip_grad_norm: float | None = None,
        skip_nonfinite: bool | None = None,
        decay_by_kind: bool | None = None,
    ) -> None:
        beta1, beta2 = (None, None) if betas is None else betas
        super().__init__(
            lr,
            schedule=schedule,
            clip_grad_norm=clip_grad_norm,
            skip_nonfinite=skip_nonfinite,
            decay_by_kind=decay_by_kind,
            beta1=beta1,
            beta2=beta2,
            epsilon=eps,
            weight_decay=weight_decay,
        )


class Adam(_AdamFamily):
    """Adam; weight_decay is L2, added to the gradient (default 0)."""

    _kind = _capi.PARML_OPTIMIZER_ADAM


class AdamW(_AdamFamily):
    """AdamW: decoupled weight decay, default 0.01 as in PyTorch and in
    parml_types.h's description. (parml_optimizer_params_init cannot know the
    kind and leaves weight_decay 0, so this default is written here.)"""

    _kind = _capi.PARML_OPTIMIZER_ADAMW

    def __init__(
        self,
        lr: float,
        betas: tuple[float, float] | None = None,
        eps: float | None = None,
        weight_decay: float | None = 0.01,
        *,
        schedule: Schedule | None = None,
        clip_grad_norm: float | None = None,
        skip_nonfinite: bool | None = None,
        decay_by_kind: bool | None = None,
    ) -> None:
        super().__init__(
            lr, betas, eps, weight_decay, schedule=schedule, clip_grad_norm=clip_grad_norm,
            skip_nonfinite=skip_nonfinite, decay_by_kind=decay_by_kind,
        )


__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]
