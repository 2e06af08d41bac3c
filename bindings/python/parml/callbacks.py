"""Callbacks for ``Trainer.fit(callbacks=[...])``, as Keras's.

The three built-ins run inside the library (the same code C hosts get
through ``parml_callback_params``); these classes set them up and record
what they did. Subclass :class:`Callback` for your own: its hooks get the
trainer, which they may evaluate, save, read and set the learning rate of
(``trainer.learning_rate = ...``) while fit runs; calls that would change
what fit runs on (step, fit, load_checkpoint, set_params) raise StateError.
docs/callbacks.md has the rules and examples.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _capi

if TYPE_CHECKING:
    from .trainer import EpochMetrics, History, Trainer

_MONITORS = {
    "val_loss": _capi.PARML_MONITOR_VAL_LOSS,
    "val_accuracy": _capi.PARML_MONITOR_VAL_ACCURACY,
    "loss": _capi.PARML_MONITOR_TRAIN_LOSS,
    "train_loss": _capi.PARML_MONITOR_TRAIN_LOSS,
    "accuracy": _capi.PARML_MONITOR_TRAIN_ACCURACY,
    "train_accuracy": _capi.PARML_MONITOR_TRAIN_ACCURACY,
}
_MODES = {"auto": _capi.PARML_MODE_AUTO, "min": _capi.PARML_MODE_MIN, "max": _capi.PARML_MODE_MAX}


def _monitor(monitor: str, mode: str) -> tuple[int, int]:
    try:
        m = _MONITORS[monitor]
    except KeyError:
        raise ValueError(f"monitor {monitor!r} is unknown; one of {sorted(_MONITORS)}") from None
    try:
        d = _MODES[mode]
    except KeyError:
        raise ValueError(f"mode {mode!r} is unknown; one of {sorted(_MODES)}") from None
    return m, d


class Callback:
    """Base class of your own callbacks: override the hooks you need.
    ``on_epoch_end`` runs after each epoch (after the built-ins), and
    ``on_step_end`` after every ``fit(callback_every_steps=N)``-th step
    (metrics of the epoch so far, no validation); a true return stops fit
    (``history.stopped_early``). ``on_fit_end`` runs when fit returns
    normally."""

    def on_epoch_end(self, trainer: "Trainer", metrics: "EpochMetrics") -> bool | None:
        return None

    def on_step_end(self, trainer: "Trainer", metrics: "EpochMetrics") -> bool | None:
        return None

    def on_fit_end(self, trainer: "Trainer", history: "History") -> None:
        return None


class _BuiltIn(Callback):
    """A callback the library runs; fills its part of parml_callback_params."""

    def _configure(self, p: _capi.parml_callback_params) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _reset(self) -> None:
        pass


class EarlyStopping(_BuiltIn):
    """Stops fit once ``patience`` epochs in a row (at least one) did not
    improve ``monitor`` by more than ``min_delta`` (Keras's EarlyStopping).
    With ``restore_best_weights`` the model ends fit with the parameters of
    its best epoch, bit for bit (optimizer state and step count stay).
    After fit: ``stopped_epoch`` (0 when it did not stop) and
    ``best_epoch`` (1-based, of that fit call)."""

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0.0,
        patience: int = 0,
        mode: str = "auto",
        restore_best_weights: bool = False,
    ) -> None:
        self._codes = _monitor(monitor, mode)
        self.monitor, self.mode = monitor, mode
        self.min_delta = float(min_delta)
        self.patience = int(patience)
        self.restore_best_weights = bool(restore_best_weights)
        self._reset()

    def _reset(self) -> None:
        self.stopped_epoch = 0
        self.best_epoch = 0

    def _configure(self, p: _capi.parml_callback_params) -> None:
        p.early_stopping_monitor, p.early_stopping_mode = self._codes
        p.early_stopping_min_delta = self.min_delta
        p.early_stopping_patience = self.patience
        p.restore_best_weights = int(self.restore_best_weights)

    def on_epoch_end(self, trainer: "Trainer", metrics: "EpochMetrics") -> None:
        self.best_epoch = metrics.best_epoch
        if metrics.events & _capi.PARML_EVENT_STOPPING:
            self.stopped_epoch = metrics.epoch


class ModelCheckpoint(_BuiltIn):
    """Writes ``filepath`` (atomically, replacing it) after each epoch whose
    ``monitor`` improved, or after every epoch with ``save_best_only=False``
    (Keras's ModelCheckpoint). A model file (``parml.Model.load``), or with
    ``training_state=True`` a training checkpoint
    (``Trainer.load_checkpoint``). Under MPI world rank 0 writes. After
    fit: ``saved_epochs``, the epochs (1-based) after which it wrote."""

    def __init__(
        self,
        filepath: str | os.PathLike[str],
        monitor: str = "val_loss",
        save_best_only: bool = True,
        mode: str = "auto",
        min_delta: float = 0.0,
        training_state: bool = False,
    ) -> None:
        self._codes = _monitor(monitor, mode)
        self.filepath = os.fsencode(filepath)
        if not self.filepath:
            raise ValueError("filepath is empty")
        self.monitor, self.mode = monitor, mode
        self.save_best_only = bool(save_best_only)
        self.min_delta = float(min_delta)
        self.training_state = bool(training_state)
        self._reset()

    def _reset(self) -> None:
        self.saved_epochs: list[int] = []

    def _configure(self, p: _capi.parml_callback_params) -> None:
        p.checkpoint_monitor, p.checkpoint_mode = self._codes
        p.checkpoint_min_delta = self.min_delta
        p.checkpoint_best_only = int(self.save_best_only)
        p.checkpoint_training_state = int(self.training_state)
        p.checkpoint_path = self.filepath

    def on_epoch_end(self, trainer: "Trainer", metrics: "EpochMetrics") -> None:
        if metrics.events & _capi.PARML_EVENT_SAVED:
            self.saved_epochs.append(metrics.epoch)


class ReduceLROnPlateau(_BuiltIn):
    """After ``patience`` epochs in a row (at least one) without improving
    ``monitor`` by more than ``min_delta`` (``cooldown`` epochs after a
    reduction do not count), sets the learning rate to
    max(lr * factor, min_lr) (Keras's ReduceLROnPlateau). The new rate is a
    factor on the optimizer's schedule (see Trainer.learning_rate). After
    fit: ``reductions``, the epochs after which it lowered the rate."""

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
    ) -> None:
        self._codes = _monitor(monitor, mode)
        if not 0 < factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        self.monitor, self.mode = monitor, mode
        self.factor = float(factor)
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.cooldown = int(cooldown)
        self.min_lr = float(min_lr)
        self._reset()

    def _reset(self) -> None:
        self.reductions: list[int] = []

    def _configure(self, p: _capi.parml_callback_params) -> None:
        p.reduce_lr_monitor, p.reduce_lr_mode = self._codes
        p.reduce_lr_min_delta = self.min_delta
        p.reduce_lr_factor = self.factor
        p.reduce_lr_patience = self.patience
        p.reduce_lr_cooldown = self.cooldown
        p.reduce_lr_min_lr = self.min_lr

    def on_epoch_end(self, trainer: "Trainer", metrics: "EpochMetrics") -> None:
        if metrics.events & _capi.PARML_EVENT_LR_REDUCED:
            self.reductions.append(metrics.epoch)


class ParameterAverage(Callback):
    """An exponential moving average of the parameters over fit's steps
    (Polyak-style iterate averaging, as TensorFlow's
    ExponentialMovingAverage and JAX-Privacy keep it). Pass it with
    ``fit(callbacks=[avg], callback_every_steps=1)``: each ``on_step_end``
    reads the parameters θ after step t (``metrics.steps``, the trainer's
    step count) and sets

        average = d·average + (1 − d)·θ,  d = min(decay, (1 + t) / (10 + t))

    (the second term, the warm-up, only with ``warmup=True``); the first
    iterate it sees starts the average. The warm-up keeps early iterates
    from dominating: d reaches 0.999 only after 8,990 steps, so in shorter
    runs of T steps the average weighs step s about as s^8 (its mean lags
    the last step by about T/10). With ``callback_every_steps=N`` it averages
    every N-th iterate, one update per call. Under differential privacy
    the average is post-processing of the private iterates: it costs no
    privacy (no ε). The average is kept in float64; ``parameters`` gives it
    as float32, ``apply(model)`` writes it into the model (keep
    ``model.parameters`` first to go back). It goes on over later fit
    calls; ``reset()`` forgets it. Under MPI it calls ``gather_params``
    before each read, as ZeRO-3 requires (not yet tested under mpirun)."""

    def __init__(self, decay: float = 0.999, warmup: bool = True) -> None:
        if not 0 <= decay < 1:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.reset()

    def reset(self) -> None:
        self._average: np.ndarray | None = None
        self._read: np.ndarray | None = None
        self._scaled: np.ndarray | None = None
        self.updates = 0  # iterates averaged so far

    def on_step_end(self, trainer: "Trainer", metrics: "EpochMetrics") -> None:
        from ._arrays import float_pointer
        from .errors import check

        # Under MPI ZeRO-3 a process holds only its shard between steps;
        # every process runs this hook, so the collective gather is safe
        # here (elsewhere it returns at once).
        trainer.gather_params()
        model = trainer.model
        if self._read is None:
            self._read = np.empty(model.num_params, dtype=np.float32)
            self._scaled = np.empty(self._read.size, dtype=np.float64)
        # Read into one buffer and scale into another rather than through
        # model.parameters and temporaries, which would allocate every step.
        with model._use() as m:
            check(_capi.parml_model_get_params(m, float_pointer(self._read), self._read.size))
        if self._average is None:
            self._average = self._read.astype(np.float64)
        else:
            t = metrics.steps
            d = min(self.decay, (1 + t) / (10 + t)) if self.warmup else self.decay
            assert self._scaled is not None
            np.multiply(self._read, 1 - d, out=self._scaled)
            self._average *= d
            self._average += self._scaled
        self.updates += 1

    @property
    def parameters(self) -> np.ndarray:
        """The average as a flat float32 array in ``model.parameters``'s
        order (a copy)."""
        if self._average is None:
            raise ValueError("ParameterAverage has seen no step: pass callback_every_steps to fit")
        return self._average.astype(np.float32)

    def apply(self, model: Any) -> None:
        """Sets ``model``'s parameters to the average (outside fit)."""
        model.set_parameters(self.parameters)


def _built_in_params(callbacks: list[Any]) -> _capi.parml_callback_params | None:
    """The C struct for the built-ins among `callbacks` (None when there are
    none); at most one of each kind, as the library runs one of each."""
    built = [c for c in callbacks if isinstance(c, _BuiltIn)]
    if not built:
        return None
    kinds = [type(c) for c in built]
    for k in set(kinds):
        if kinds.count(k) > 1:
            raise ValueError(f"fit takes at most one {k.__name__}")
    p = _capi.parml_callback_params()
    from .errors import check

    check(_capi.parml_callback_params_init(p))
    for c in built:
        c._reset()
        c._configure(p)
    return p


__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "ParameterAverage", "ReduceLROnPlateau"]
