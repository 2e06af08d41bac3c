"""parml.Trainer: a model + loss + optimizer + parallel strategy."""

from __future__ import annotations

import math
import os
import sys
import threading
from ctypes import POINTER, byref, c_double, c_float, c_int64, pointer, sizeof
from dataclasses import dataclass
from typing import Any, Callable, Iterator, NamedTuple

from . import _arrays, _buffers, _capi
from ._handle import Handle
from .data import Dataset, _sample_weight_array, as_dataset, weighted_dataset
from .errors import InvalidArgumentError, check, error_for, take_text
from .model import Model
from .optim import Optimizer
from .privacy import Privacy
from .strategy import Strategy
from .tensor import Tensor

_LOSSES = {
    "cross_entropy": _capi.PARML_LOSS_CROSS_ENTROPY,
    "mse": _capi.PARML_LOSS_MSE,
    "bce_with_logits": _capi.PARML_LOSS_BCE_WITH_LOGITS,
}


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


@dataclass(frozen=True)
class EpochMetrics:
    """What one epoch of fit measured (parml_epoch_metrics). Fields that do
    not apply (no validation set, accuracy under MSE) are None."""

    epoch: int
    epochs: int
    steps: int
    train_loss: float
    train_accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    learning_rate: float
    seconds: float
    samples_per_second: float
    epoch_step: int = 0
    end_of_epoch: bool = True
    events: int = 0  # PARML_EVENT_* bits: what the built-in callbacks did after this epoch
    best_epoch: int = 0  # early stopping's best epoch of this fit call, 0 = none
    privacy_epsilon: float | None = None  # private training: epsilon spent so far

    @classmethod
    def _from_c(cls, m: _capi.parml_epoch_metrics) -> "EpochMetrics":
        return cls(
            epoch=m.epoch,
            epochs=m.epochs,
            steps=m.steps,
            train_loss=float(m.train_loss),
            train_accuracy=_none_if_nan(m.train_accuracy),
            val_loss=_none_if_nan(m.val_loss),
            val_accuracy=_none_if_nan(m.val_accuracy),
            learning_rate=float(m.learning_rate),
            seconds=float(m.seconds),
            samples_per_second=float(m.samples_per_second),
            epoch_step=int(m.epoch_step),
            end_of_epoch=bool(m.end_of_epoch),
            events=int(m.events),
            best_epoch=int(m.best_epoch),
            privacy_epsilon=_none_if_nan(m.privacy_epsilon),
        )

    def line(self) -> str:
        """One human-readable line."""
        parts = [f"epoch {self.epoch}/{self.epochs}", f"loss {self.train_loss:.4f}"]
        if self.train_accuracy is not None:
            parts.append(f"acc {self.train_accuracy:.4f}")
        if self.val_loss is not None:
            parts.append(f"val_loss {self.val_loss:.4f}")
        if self.val_accuracy is not None:
            parts.append(f"val_acc {self.val_accuracy:.4f}")
        if self.privacy_epsilon is not None:
            parts.append(f"eps {self.privacy_epsilon:.3f}")
        parts += [
            f"lr {self.learning_rate:.3g}",
            f"{self.seconds:.2f}s",
            f"{self.samples_per_second:.0f} samples/s",
        ]
        return "  ".join(parts)


class History:
    """The epochs one fit call ran: ``history.epochs`` (EpochMetrics),
    ``history["val_accuracy"]`` (one value per epoch), ``history.last``, and
    ``history.stopped_early`` (a callback or EarlyStopping stopped fit)."""

    def __init__(self) -> None:
        self.epochs: list[EpochMetrics] = []
        self.stopped_early = False

    def __len__(self) -> int:
        return len(self.epochs)

    def __iter__(self) -> Iterator[EpochMetrics]:
        return iter(self.epochs)

    def __getitem__(self, key: str) -> list[Any]:
        if key not in EpochMetrics.__dataclass_fields__:
            raise KeyError(key)
        return [getattr(e, key) for e in self.epochs]

    @property
    def last(self) -> EpochMetrics | None:
        return self.epochs[-1] if self.epochs else None

    def __repr__(self) -> str:
        return f"<parml.History {len(self.epochs)} epochs{' (stopped early)' if self.stopped_early else ''}>"


class Evaluation(NamedTuple):
    """Mean loss and accuracy (None under MSE) over a dataset."""

    loss: float
    accuracy: float | None


@dataclass(frozen=True)
class Metrics:
    """Classification metrics over a dataset (parml_trainer_evaluate_metrics),
    with scikit-learn's definitions: ``confusion[t, p]`` counts predictions
    of class p whose target is t (multi-label: ``confusion[l]`` is label l's
    [[tn, fp], [fn, tp]]); ``precision``, ``recall``, ``f1`` and
    ``support`` are per class (0 where undefined, as sklearn's default
    zero_division); the macro means are over the classes that occur as a
    target or a prediction, the weighted ones weigh classes by support."""

    loss: float
    accuracy: float
    top_k: int
    top_k_accuracy: float
    confusion: Any  # numpy int64 (classes, classes); multi-label (labels, 2, 2)
    support: Any  # numpy int64 (classes,)
    precision: Any  # numpy float32 (classes,)
    recall: Any
    f1: Any
    macro_precision: float
    macro_recall: float
    macro_f1: float
    weighted_precision: float
    weighted_recall: float
    weighted_f1: float

    @property
    def classes(self) -> int:
        return int(self.confusion.shape[0])

    @property
    def predictions(self) -> int:
        return int(self.confusion.sum())


def _float_array(values: object, name: str) -> Any:
    """A C-contiguous float32 copy of `values` (a sequence or numpy array of numbers)."""
    import numpy as np

    a = np.ascontiguousarray(np.asarray(values, dtype=np.float32).reshape(-1))
    if a.size == 0:
        raise ValueError(f"{name} is empty; pass None for no weights")
    return a


class MemoryReport(NamedTuple):
    """Bytes one rank holds (parml_trainer_memory)."""

    parameter_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    scratch_bytes: int
    activation_bytes: int = 0

    @property
    def total(self) -> int:
        return (
            self.parameter_bytes + self.gradient_bytes + self.optimizer_bytes + self.scratch_bytes + self.activation_bytes
        )


class _Progress:
    """The epoch display of fit: a tqdm bar when tqdm is installed, else one
    plain line per epoch; nothing when verbose is False."""

    def __init__(self, verbose: bool | str, epochs: int) -> None:
        self.bar = None
        self.out = None
        if not verbose:
            return
        if verbose != "plain":
            try:
                from tqdm.auto import tqdm  # type: ignore[import-not-found]
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=epochs, unit="epoch", desc="fit")
                return
        self.out = sys.stdout

    def update(self, m: EpochMetrics) -> None:
        if self.bar is not None:
            post = {"loss": f"{m.train_loss:.4f}"}
            if m.train_accuracy is not None:
                post["acc"] = f"{m.train_accuracy:.4f}"
            if m.val_accuracy is not None:
                post["val_acc"] = f"{m.val_accuracy:.4f}"
            elif m.val_loss is not None:
                post["val_loss"] = f"{m.val_loss:.4f}"
            if m.privacy_epsilon is not None:
                post["eps"] = f"{m.privacy_epsilon:.3f}"
            self.bar.set_postfix(post, refresh=False)
            self.bar.update(1)
        elif self.out is not None:
            print(m.line(), file=self.out, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Trainer(Handle):
    """Trains a Model: ``Trainer(model, loss="cross_entropy", optimizer=parml.Adam(1e-3),
    strategy=parml.Strategy(dp=2))``.

    loss: "cross_entropy" (softmax cross-entropy on class indices), "mse", or
    "bce_with_logits" (sigmoid + binary cross-entropy per output, targets in
    [0, 1] of the output's shape: multi-label).
    optimizer: an Optimizer (None = the library's defaults: SGD, lr 0.01).
    strategy: a Strategy (None = serial), or parml.Auto(sample_shape, batch,
        ...) for the strategy advisor's first layout (plan() says why).
    class_weight, label_smoothing, pos_weight: as torch's ``weight=``,
    ``label_smoothing=`` and ``pos_weight=`` (see set_loss).
    privacy: a parml.Privacy to train with DP-SGD (see set_privacy).

    The trainer keeps its model alive and updates its parameters in place;
    it shares the model's lock. Raises InvalidArgumentError for a layout
    that does not fit the model (or, under MPI, the job's process count),
    StateError for a model that is not initialised, UnsupportedError for
    backend="mpi" without Open MPI installed.
    """

    _free_function = _capi.parml_trainer_free

    def __init__(
        self,
        model: Model,
        loss: str | int = "cross_entropy",
        optimizer: Optimizer | None = None,
        strategy: Strategy | Any | None = None,
        *,
        class_weight: object | None = None,
        label_smoothing: float = 0.0,
        pos_weight: object | None = None,
        privacy: Privacy | None = None,
    ) -> None:
        if not isinstance(model, Model):
            raise TypeError(f"model must be a parml.Model, got {type(model).__name__}")
        if optimizer is not None and not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a parml optimizer (SGD, Adam, AdamW), got {type(optimizer).__name__}")
        from .advisor import Auto

        if strategy is not None and not isinstance(strategy, (Strategy, Auto)):
            raise TypeError(f"strategy must be a parml.Strategy or parml.Auto, got {type(strategy).__name__}")
        if isinstance(loss, str):
            try:
                loss_code = _LOSSES[loss.lower()]
            except KeyError:
                raise ValueError(f"unknown loss {loss!r}; one of {sorted(_LOSSES)}") from None
        else:
            loss_code = int(loss)
        opt = optimizer.to_params() if optimizer is not None else None
        out = _capi.parml_trainer()
        if isinstance(strategy, Auto):  # the advisor's first layout (parml_trainer_create_auto)
            params, keep = strategy._params()
            with model._use() as m:
                check(_capi.parml_trainer_create_auto(m, loss_code, opt, params, byref(out)))
            del keep
        else:
            st = strategy.to_params() if strategy is not None else None
            with model._use() as m:
                check(_capi.parml_trainer_create(m, loss_code, opt, st, byref(out)))
        super().__init__(out, guard=model._guard)
        self._model = model  # keep the model alive (and its wrapper's lock)
        self.loss = loss_code
        self.optimizer = optimizer
        self.strategy = strategy
        self._progress_fn: Any = None  # the CFUNCTYPE while fit runs
        if class_weight is not None or label_smoothing or pos_weight is not None:
            self.set_loss(class_weight=class_weight, label_smoothing=label_smoothing, pos_weight=pos_weight)
        self.privacy: Privacy | None = None
        if privacy is not None:
            self.set_privacy(privacy)

    def set_privacy(self, privacy: Privacy | None) -> None:
        """Trains with DP-SGD from the next step on (None: ordinary training
        again): per-example clipping, Gaussian noise, and in fit the batches
        ``privacy.sampling`` says. UnsupportedError names what cannot be
        trained privately (batch_norm: use layer_norm; a layer without
        per-example norms; interleaved 1F1B; split_classifier with tp > 1);
        InvalidArgumentError for bad settings (negative noise_multiplier,
        max_grad_norm <= 0, delta outside (0, 1))."""
        if privacy is not None and not isinstance(privacy, Privacy):
            raise TypeError(f"privacy must be a parml.Privacy, got {type(privacy).__name__}")
        with self._use() as t:
            check(_capi.parml_trainer_set_privacy(t, byref(privacy.to_params()) if privacy is not None else None))
        self.privacy = privacy

    def privacy_spent(self, delta: float | None = None) -> float:
        """Epsilon of (epsilon, delta)-DP spent by this trainer's private
        steps (delta: the Privacy's by default). Steps fit took count at
        q = batch_size / n; steps taken with step() at q = 1."""
        if delta is None:
            if self.privacy is None:
                raise InvalidArgumentError("privacy_spent: no delta given and the trainer has no Privacy")
            delta = self.privacy.delta
        out = c_double()
        with self._use() as t:
            check(_capi.parml_trainer_privacy_spent(t, float(delta), byref(out)))
        return out.value

    @property
    def epsilon(self) -> float | None:
        """Epsilon spent so far at the Privacy's delta; None when not private."""
        return None if self.privacy is None else self.privacy_spent()

    def set_loss(
        self, *, class_weight: object | None = None, label_smoothing: float = 0.0, pos_weight: object | None = None
    ) -> None:
        """What the loss weighs from the next step on, with PyTorch's meanings:
        ``class_weight`` (cross-entropy, one per class: torch's ``weight=``,
        a weighted mean over the batch's targets), ``label_smoothing``
        (cross-entropy, in [0, 1]) and ``pos_weight`` (bce_with_logits, one
        per output). Each call replaces all three; with no arguments the
        loss is the plain mean again.
        InvalidArgumentError for a negative or non-finite weight or an option
        the loss does not take; a weight count that does not match the model
        raises ShapeError at the next step."""
        p = _capi.parml_loss_params()
        check(_capi.parml_loss_params_init(byref(p)))
        keep = []
        if class_weight is not None:
            w = _float_array(class_weight, "class_weight")
            keep.append(w)
            p.class_weights = w.ctypes.data_as(POINTER(c_float))
            p.num_class_weights = w.size
        p.label_smoothing = float(label_smoothing)
        if pos_weight is not None:
            w = _float_array(pos_weight, "pos_weight")
            keep.append(w)
            p.pos_weight = w.ctypes.data_as(POINTER(c_float))
            p.num_pos_weight = w.size
        with self._use() as t:
            check(_capi.parml_trainer_set_loss(t, byref(p)))  # copies the arrays in `keep`

    @property
    def model(self) -> Model:
        return self._model

    # -- training --------------------------------------------------------

    def step(self, x: object, y: object, sample_weight: object | None = None) -> float:
        """One optimizer step on a batch: x (N, ...) and y ((N,) class indices
        for cross-entropy, the output's shape for MSE), numpy arrays or
        parml.Tensor; ``sample_weight``: N loss weights (the mean is then
        Σ wᵢ·lossᵢ / Σ wᵢ, parml_trainer_step_weighted). Returns the batch's
        mean loss before the update. A
        batch refused by the checks (ShapeError, InvalidArgumentError)
        changes nothing; a failure once the ranks have started leaves the
        trainer unusable (later steps raise StateError; create a new one)."""
        owned = []
        try:
            if isinstance(x, Tensor):
                xt = x
            else:
                xt = _arrays.tensor_from_array(_arrays.as_model_array(x, "x"))
                owned.append(xt)
            if isinstance(y, Tensor):
                yt = y
            else:
                yt = _arrays.tensor_from_array(_arrays.as_model_array(y, "y"))
                owned.append(yt)
            loss = c_float()
            w = None if sample_weight is None else _sample_weight_array(sample_weight)

            def run(t: Any, xr: Any, yr: Any) -> None:
                if w is None:
                    check(_capi.parml_trainer_step(t, xr, yr, byref(loss)))
                else:
                    check(_capi.parml_trainer_step_weighted(t, xr, yr, w.ctypes.data_as(POINTER(c_float)), w.size, byref(loss)))

            with self._use() as t:
                if isinstance(x, Tensor) or isinstance(y, Tensor):
                    with _tensor_use(x), _tensor_use(y):
                        run(t, _raw(xt), _raw(yt))
                else:
                    run(t, xt, yt)
            return loss.value
        finally:
            for tensor in owned:
                _capi.parml_tensor_free(tensor)

    def fit(
        self,
        x: object,
        y: object | None = None,
        *,
        epochs: int | None = None,
        batch_size: int | None = None,
        validation_data: object = None,
        shuffle: bool | None = None,
        drop_last: bool | None = None,
        verbose: bool | str = True,
        callback: Callable[[EpochMetrics], object] | None = None,
        class_sampling: object | None = None,
        callbacks: list[Any] | None = None,
        callback_every_steps: int | None = None,
        sample_weight: object | None = None,
    ) -> History:
        """Trains over (x, y) arrays or a Dataset (then y is None).

        epochs, batch_size (global), shuffle (reshuffled each epoch from the
        strategy's seed), drop_last: None keeps the library's defaults (1, 64,
        True, False). validation_data: a Dataset or an (x, y) pair, measured
        after every epoch. verbose: True shows a tqdm bar when tqdm is
        installed, else one line per epoch; "plain" forces lines; False is
        silent. callback(metrics) runs after each epoch; a true return stops
        training (history.stopped_early; the epochs done stay applied). An
        exception in the callback stops training and is re-raised.
        callbacks: a list of parml.callbacks objects, as Keras's:
        EarlyStopping, ModelCheckpoint, ReduceLROnPlateau (run by the library,
        at most one of each), Callback subclasses, and plain callables (called
        like `callback`). They may evaluate, save, read parameters and set
        ``trainer.learning_rate`` while fit runs (docs/callbacks.md).
        callback_every_steps: N also calls the Callbacks' on_step_end after
        every step whose step count is a multiple of N.
        class_sampling: one weight per class for class-balanced sampling
        (PyTorch's WeightedRandomSampler with replacement): each epoch
        draws len(data) samples, sample i with probability proportional to
        its class's weight; ``len(y) / (C * np.bincount(y))`` draws every
        class equally often. The draws follow the strategy's seed and the
        epoch, the same under every layout.
        sample_weight: one loss weight per sample of x, as Keras's: each
        batch's loss is Σ wᵢ·lossᵢ / Σ wᵢ (wᵢ times the class weight when
        there is one); the weights follow their samples through the
        shuffle and class_sampling (Dataset.with_sample_weight). A
        validation_data triple (x, y, sample_weight) weighs the validation
        loss the same way.

        The C library reports once per epoch, so progress (and Ctrl-C, which
        Python handles only while running Python code) lands at epoch ends.
        """
        history = History()
        train, close = weighted_dataset(x, y, sample_weight, "fit")
        val: Dataset | None = None
        try:
            if validation_data is not None:
                if isinstance(validation_data, Dataset):
                    val = validation_data
                else:
                    try:
                        vx, vy, *vw = validation_data  # type: ignore[misc]
                        if len(vw) > 1:
                            raise ValueError
                    except (TypeError, ValueError):
                        raise TypeError("validation_data must be a Dataset, an (x, y) pair or an (x, y, sample_weight) triple") from None
                    val, val_close = weighted_dataset(vx, vy, vw[0] if vw else None, "validation_data")
                    close += val_close
            params = _capi.parml_fit_params()
            check(_capi.parml_fit_params_init(params))
            if epochs is not None:
                params.epochs = int(epochs)
            if batch_size is not None:
                params.batch_size = int(batch_size)
            if shuffle is not None:
                params.shuffle = int(bool(shuffle))
            if drop_last is not None:
                params.drop_last = int(bool(drop_last))
            sampling = None
            if class_sampling is not None:
                sampling = _float_array(class_sampling, "class_sampling")  # alive until fit returns
                params.class_sampling_weights = sampling.ctypes.data_as(POINTER(c_float))
                params.num_class_sampling_weights = sampling.size
            from .callbacks import Callback, _built_in_params

            hooks = list(callbacks or [])
            for c in hooks:
                if not (isinstance(c, Callback) or callable(c)):
                    raise TypeError(f"callbacks holds {type(c).__name__}: a parml.callbacks.Callback or a callable")
            built_in = _built_in_params(hooks)  # alive until fit returns (the path inside)
            if built_in is not None:
                params.callbacks = pointer(built_in)
            if callback_every_steps is not None:
                params.callback_every_steps = int(callback_every_steps)
            if callback is not None:
                hooks.append(callback)
            progress = _Progress(verbose, int(params.epochs))
            failure: list[BaseException] = []
            guard = self._guard

            def on_epoch(metrics_ptr: Any, _user_data: Any) -> int:
                guard.callback_thread = threading.get_ident()
                try:
                    m = EpochMetrics._from_c(metrics_ptr.contents)
                    stop = False
                    if not m.end_of_epoch:
                        for c in hooks:
                            if isinstance(c, Callback) and c.on_step_end(self, m):
                                stop = True
                    else:
                        history.epochs.append(m)
                        progress.update(m)
                        if m.events & _capi.PARML_EVENT_STOPPING:
                            history.stopped_early = True
                        for c in hooks:
                            if c.on_epoch_end(self, m) if isinstance(c, Callback) else c(m):
                                stop = True
                    if stop:
                        history.stopped_early = True
                        return 1
                    return 0
                except BaseException as e:  # KeyboardInterrupt included: stop, re-raise after fit
                    failure.append(e)
                    return 1
                finally:
                    guard.callback_thread = None

            fn = _capi.parml_progress_fn(on_epoch)
            self._progress_fn = fn  # C holds a pointer to it until fit returns
            params.progress = fn
            last = _capi.parml_epoch_metrics()
            last.struct_size = sizeof(last)
            try:
                with self._use() as t, train._use() as d:
                    if val is not None:
                        with val._use() as v:
                            params.validation = v
                            status = _capi.parml_trainer_fit(t, d, params, byref(last))
                    else:
                        status = _capi.parml_trainer_fit(t, d, params, byref(last))
                    message = _capi.parml_last_error() if status != _capi.PARML_OK else b""
            finally:
                self._progress_fn = None
                progress.close()
            if failure:
                raise failure[0]
            if status != _capi.PARML_OK and not (status == _capi.PARML_ERR_CANCELLED and history.stopped_early):
                raise error_for(status, (message or b"").decode("utf-8", "replace"))
            for c in hooks:
                if isinstance(c, Callback):
                    c.on_fit_end(self, history)
            return history
        finally:
            for d in reversed(close):
                d.close()

    def evaluate(
        self, x: object, y: object | None = None, batch_size: int = 256, sample_weight: object | None = None
    ) -> Evaluation:
        """Mean loss and accuracy over (x, y) arrays or a Dataset, in
        inference mode, in batches of batch_size. With ``sample_weight`` (or
        a Dataset carrying weights) the loss is Σ wᵢ·lossᵢ / Σ wᵢ over all
        samples; accuracy is not weighted."""
        data, close = weighted_dataset(x, y, sample_weight, "evaluate")
        try:
            loss, acc = c_float(), c_float()
            with self._use() as t, data._use() as d:
                check(_capi.parml_trainer_evaluate(t, d, int(batch_size), byref(loss), byref(acc)))
            return Evaluation(float(loss.value), _none_if_nan(acc.value))
        finally:
            for d in reversed(close):
                d.close()

    def evaluate_metrics(self, x: object, y: object | None = None, batch_size: int = 256, top_k: int = 5) -> Metrics:
        """Loss, accuracy, top-k accuracy, per-class precision, recall, F1 and
        support, their macro and weighted means, and the confusion matrix
        over (x, y) arrays or a Dataset, in inference mode. Cross-entropy
        trainers: single-label, ``confusion`` (C, C). Binary cross-entropy
        trainers: multi-label, each output a label (predicted when its logit
        is > 0, present when its target is > 0.5); ``confusion`` is
        scikit-learn's multilabel_confusion_matrix (C, 2, 2), accuracy the
        share of right label decisions, ``top_k_accuracy`` NaN."""
        import numpy as np

        data, owned = as_dataset(x, y, "evaluate_metrics")
        try:
            shape = data.input_shape
            classes = int(self._model.output_shape((1, *shape[1:]))[-1])
            multi_label = self.loss == _capi.PARML_LOSS_BCE_WITH_LOGITS
            confusion = np.zeros((classes, 2, 2) if multi_label else (classes, classes), dtype=np.int64)
            support = np.zeros(classes, dtype=np.int64)
            per_class = [np.zeros(classes, dtype=np.float32) for _ in range(3)]
            p = _capi.parml_metrics_params()
            check(_capi.parml_metrics_params_init(byref(p)))
            p.top_k = int(top_k)
            p.capacity = classes
            p.confusion = confusion.ctypes.data_as(POINTER(c_int64))
            p.support = support.ctypes.data_as(POINTER(c_int64))
            p.precision, p.recall, p.f1 = (a.ctypes.data_as(POINTER(c_float)) for a in per_class)
            out = _capi.parml_metrics()
            out.struct_size = sizeof(out)
            with self._use() as t, data._use() as d:
                check(_capi.parml_trainer_evaluate_metrics(t, d, int(batch_size), byref(p), byref(out)))
            return Metrics(
                loss=float(out.loss),
                accuracy=float(out.accuracy),
                top_k=int(top_k),
                top_k_accuracy=float(out.top_k_accuracy),
                confusion=confusion,
                support=support,
                precision=per_class[0],
                recall=per_class[1],
                f1=per_class[2],
                macro_precision=float(out.macro_precision),
                macro_recall=float(out.macro_recall),
                macro_f1=float(out.macro_f1),
                weighted_precision=float(out.weighted_precision),
                weighted_recall=float(out.weighted_recall),
                weighted_f1=float(out.weighted_f1),
            )
        finally:
            if owned:
                data.close()

    # -- state -----------------------------------------------------------

    @property
    def step_count(self) -> int:
        """Optimizer steps taken so far."""
        n = c_int64()
        with self._use() as t:
            check(_capi.parml_trainer_step_count(t, byref(n)))
        return n.value

    @property
    def skipped_steps(self) -> int:
        """Steps skipped (NonFiniteError, nothing updated) because their
        loss or gradients were not finite; not counted in step_count."""
        n = c_int64()
        with self._use() as t:
            check(_capi.parml_trainer_skipped_steps(t, byref(n)))
        return n.value

    @property
    def epoch_count(self) -> int:
        """Epochs fit has completed, over all its calls and restored from
        checkpoints; with the seed it fixes the next epoch's data order, so
        fit(epochs=2) twice trains as fit(epochs=4) once."""
        n = c_int64()
        with self._use() as t:
            check(_capi.parml_trainer_epoch_count(t, byref(n)))
        return n.value

    @property
    def learning_rate(self) -> float:
        """The learning rate the next step will use (schedule and warmup
        applied). Setting it makes the next step use that rate and keeps the
        schedule's shape from there (a factor on the schedule, which
        checkpoints carry); allowed inside fit's callbacks."""
        lr = c_float()
        with self._use() as t:
            check(_capi.parml_trainer_learning_rate(t, byref(lr)))
        return float(lr.value)

    @learning_rate.setter
    def learning_rate(self, lr: float) -> None:
        with self._use() as t:
            check(_capi.parml_trainer_set_learning_rate(t, float(lr)))

    # -- checkpoints -----------------------------------------------------

    def save_checkpoint(self, path: object, key: bytes | None = None) -> None:
        """Writes a checkpoint (parameters, whole optimizer state, step count,
        seed, layout) to `path` atomically. It loads under any layout. With
        `key` (bytes, at least 16) it carries an HMAC-SHA-256 tag and loads
        only with the same key."""
        with self._use() as t:
            if key is None:
                check(_capi.parml_trainer_save_checkpoint(t, _buffers.as_path(path)))
            else:
                k = _buffers.as_key(key)
                check(_capi.parml_trainer_save_checkpoint_authenticated(t, _buffers.as_path(path), k, len(k)))

    def load_checkpoint(self, path: object, key: bytes | None = None) -> None:
        """Restores a checkpoint written by a trainer of a model with the same
        layers and an optimizer of the same kind, under any layout. With
        `key`, its tag must verify (MissingTagError, WrongKeyError,
        TamperedError); without, an authenticated checkpoint is refused. On
        error nothing changes."""
        with self._use() as t:
            if key is None:
                check(_capi.parml_trainer_load_checkpoint(t, _buffers.as_path(path)))
            else:
                k = _buffers.as_key(key)
                check(_capi.parml_trainer_load_checkpoint_authenticated(t, _buffers.as_path(path), k, len(k)))

    def checkpoint_bytes(self, key: bytes | None = None) -> bytes:
        """The bytes ``save_checkpoint`` would write (with `key`: authenticated)."""
        with self._use() as t:
            if key is None:
                return _buffers.take_bytes(lambda buf, n: _capi.parml_trainer_serialize_checkpoint(t, buf, n))
            k = _buffers.as_key(key)
            return _buffers.take_bytes(
                lambda buf, n: _capi.parml_trainer_serialize_checkpoint_authenticated(t, k, len(k), buf, n)
            )

    def load_checkpoint_bytes(self, data: object, key: bytes | None = None) -> None:
        """``load_checkpoint`` from a checkpoint's bytes (`key` as there)."""
        raw = _buffers.as_bytes(data, "data")
        with self._use() as t:
            if key is None:
                check(_capi.parml_trainer_deserialize_checkpoint(t, raw, len(raw)))
            else:
                k = _buffers.as_key(key)
                check(_capi.parml_trainer_deserialize_checkpoint_authenticated(t, raw, len(raw), k, len(k)))

    def memory(self, rank: int = 0) -> MemoryReport:
        """Bytes rank `rank` (0..dp*pp*tp-1) holds: parameters and gradients
        of its pipeline stage, optimizer state and scratch."""
        r = _capi.parml_memory_report()
        r.struct_size = sizeof(r)
        with self._use() as t:
            check(_capi.parml_trainer_memory(t, int(rank), byref(r)))
        return MemoryReport(r.parameter_bytes, r.gradient_bytes, r.optimizer_bytes, r.scratch_bytes, r.activation_bytes)

    def plan(self) -> str:
        """The execution plan, for people: the dp x pp x tp mesh, which layers
        and parameter slice each rank holds, what a step exchanges, and each
        rank's memory. The wording may change between versions."""
        with self._use() as t:
            return take_text(lambda out: _capi.parml_trainer_plan(t, out))

    def set_local_batches(self, enabled: bool = True) -> None:
        """MPI only: each process passes step/fit only the rows of its
        data-parallel replica, those `data_rows(global_samples)` names."""
        with self._use() as t:
            check(_capi.parml_trainer_set_local_batches(t, 1 if enabled else 0))

    def set_local_data(self, enabled: bool = True) -> None:
        """MPI only: each process trains on its own data, of any size (a rank
        without data passes an empty dataset, e.g. open_shards for a rank
        past the last shard). fit's epochs last as long as the longest
        replica's data and end together; a replica that ran out passes
        empty batches (PyTorch's Join); each step averages over the rows
        actually passed. Data-parallel layouts in the default mode only."""
        with self._use() as t:
            check(_capi.parml_trainer_set_local_data(t, 1 if enabled else 0))

    def data_rows(self, global_samples: int) -> range:
        """The rows of a global batch of `global_samples` this process's
        replica trains on (all of them on the threads backend)."""
        start, count = c_int64(), c_int64()
        with self._use() as t:
            check(_capi.parml_trainer_data_rows(t, int(global_samples), byref(start), byref(count)))
        return range(start.value, start.value + count.value)

    def start_trace(self) -> None:
        """Records every rank's timeline from the next step on (forward and
        backward per micro-batch, sends, receive waits, reductions, optimizer),
        discarding what was recorded before. PARML_TRACE=path in the
        environment does the same for every trainer and writes the file when
        the trainer is closed."""
        with self._use() as t:
            check(_capi.parml_trainer_set_trace(t, 1))

    def stop_trace(self) -> None:
        """Stops recording; what was recorded stays until the next start."""
        with self._use() as t:
            check(_capi.parml_trainer_set_trace(t, 0))

    def write_trace(self, path: str | os.PathLike[str]) -> None:
        """Writes the recorded timeline as Chrome trace JSON (Perfetto,
        chrome://tracing): one track per rank."""
        with self._use() as t:
            check(_capi.parml_trainer_write_trace(t, os.fsencode(path)))

    def __repr__(self) -> str:
        if self.closed:
            return "<parml.Trainer closed>"
        loss = {v: k for k, v in _LOSSES.items()}.get(self.loss, self.loss)
        return f"<parml.Trainer loss={loss} optimizer={self.optimizer!r} strategy={self.strategy!r}>"


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _tensor_use(v: object) -> Any:
    return v._use() if isinstance(v, Tensor) else _NoLock()


def _raw(v: object) -> Any:
    return v._ptr if isinstance(v, Tensor) else v
