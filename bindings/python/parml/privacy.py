"""Differential-privacy accounting for DP-SGD (docs/privacy.md).

The privacy spent by steps that sample each example independently with
probability ``q`` (Poisson sampling) and add Gaussian noise of ``sigma`` times
the clipping norm: Rényi-DP of the sampled Gaussian mechanism (Mironov et al.
2019), converted to (epsilon, delta) as Google's ``dp-accounting``
RdpAccountant does. Fixed-size shuffled batches are not covered.

>>> import parml
>>> round(parml.privacy.epsilon(q=256 / 60000, sigma=1.12, steps=14062, delta=1e-5), 3)
2.519
"""

from __future__ import annotations

import math
from ctypes import byref, c_double

from . import _capi
from .errors import InvalidArgumentError, check


def epsilon(q: float, sigma: float, steps: int, delta: float) -> float:
    """The epsilon spent for `delta` after `steps` steps at sampling rate `q`
    with noise multiplier `sigma`. Raises InvalidArgumentError for q outside
    (0, 1], sigma <= 0, steps < 0 or delta outside (0, 1)."""
    out = c_double()
    check(_capi.parml_privacy_epsilon(float(q), float(sigma), _steps(steps), float(delta), byref(out)))
    return out.value


def steps_for_epochs(epochs: float, q: float) -> int:
    """The steps of `epochs` passes at sampling rate q: ceil(epochs / q)
    (rounded up, so the accounting never counts fewer steps than are run)."""
    if not (0 < q <= 1):
        raise InvalidArgumentError(f"the sampling rate q must be in (0, 1], got {q}")
    if not (epochs >= 0 and math.isfinite(epochs)):
        raise InvalidArgumentError(f"epochs must be a finite number >= 0, got {epochs}")
    return math.ceil(epochs / q)


def sigma_for(target_epsilon: float, q: float, delta: float, steps: int | None = None, epochs: float | None = None) -> float:
    """The smallest noise multiplier (to a relative 1e-6, rounded up) whose
    epsilon for `delta` after `steps` steps at rate `q` (or `epochs`
    epochs: steps_for_epochs) is at most `target_epsilon`."""
    if (steps is None) == (epochs is None):
        raise InvalidArgumentError("give exactly one of steps and epochs")
    n = steps if steps is not None else steps_for_epochs(epochs, q)  # type: ignore[arg-type]
    out = c_double()
    check(_capi.parml_privacy_noise_multiplier(float(target_epsilon), float(q), _steps(n), float(delta), byref(out)))
    return out.value


def _steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise InvalidArgumentError(f"steps must be an int, got {type(steps).__name__}")
    if not -(2**63) <= steps < 2**63:
        raise InvalidArgumentError(f"steps {steps} does not fit in int64")
    return steps


__all__ = ["epsilon", "sigma_for", "steps_for_epochs"]


_SAMPLINGS = {"poisson": _capi.PARML_SAMPLING_POISSON, "shuffled": _capi.PARML_SAMPLING_SHUFFLED}


class Privacy:
    """DP-SGD settings for a Trainer: ``Trainer(model, ..., privacy=parml.Privacy(
    noise_multiplier=1.1, max_grad_norm=1.0, delta=1e-5))``.

    Each example's gradient is clipped to ``max_grad_norm`` (C), Gaussian noise
    of standard deviation ``noise_multiplier * C`` is added to the clipped sum,
    which is divided by the (expected) batch size. ``sampling``: "poisson"
    (each example joins each batch with probability batch_size / n, what the
    accountant analyses) or "shuffled" (fixed-size shuffled batches, which
    the same guarantee does not strictly cover). ``delta`` is the delta that
    ``Trainer.epsilon`` and fit's progress report epsilon for.
    """

    def __init__(
        self, noise_multiplier: float = 1.0, max_grad_norm: float = 1.0, delta: float = 1e-5, sampling: str = "poisson"
    ) -> None:
        if sampling not in _SAMPLINGS:
            raise InvalidArgumentError(f"sampling must be one of {sorted(_SAMPLINGS)}, got {sampling!r}")
        self.noise_multiplier = float(noise_multiplier)
        self.max_grad_norm = float(max_grad_norm)
        self.delta = float(delta)
        self.sampling = sampling

    def __repr__(self) -> str:
        return (
            f"Privacy(noise_multiplier={self.noise_multiplier}, max_grad_norm={self.max_grad_norm}, "
            f"delta={self.delta}, sampling={self.sampling!r})"
        )

    def to_params(self) -> _capi.parml_privacy_params:
        p = _capi.parml_privacy_params()
        check(_capi.parml_privacy_params_init(byref(p)))
        p.noise_multiplier = self.noise_multiplier
        p.max_grad_norm = self.max_grad_norm
        p.delta = self.delta
        p.sampling = _SAMPLINGS[self.sampling]
        return p
