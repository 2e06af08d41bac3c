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
