"""fit(callbacks=[...]): the built-in EarlyStopping, ModelCheckpoint and
ReduceLROnPlateau, and callbacks that evaluate, save and set the learning
rate while fit runs (docs/callbacks.md)."""

from __future__ import annotations

import numpy as np
import pytest

import parml
from parml.callbacks import Callback, EarlyStopping, ModelCheckpoint, ParameterAverage, ReduceLROnPlateau

from conftest import blobs, mlp


def noisy():
    """Overlapping classes, so val_loss stops improving within a few epochs."""
    x, y = blobs(240, features=8, classes=3, seed=4)
    x = x + np.random.default_rng(5).normal(scale=6.0, size=x.shape).astype(np.float32)
    return (x[:160], y[:160]), (x[160:], y[160:])


class Recorder(Callback):
    """Records val_loss and the parameters at each epoch's end."""

    def __init__(self) -> None:
        self.val_loss: list[float] = []
        self.params: list[np.ndarray] = []
        self.lr: list[float] = []

    def on_epoch_end(self, trainer, metrics):
        self.val_loss.append(metrics.val_loss)
        self.params.append(trainer.model.parameters)  # reading the model is allowed here
        self.lr.append(trainer.learning_rate)


@pytest.mark.parametrize("dp", [1, 2])
def test_early_stopping_restores_the_best_epoch_bit_for_bit(dp):
    (x, y), val = noisy()
    rec = Recorder()
    stop = EarlyStopping(monitor="val_loss", min_delta=0.01, patience=2, restore_best_weights=True)
    with mlp(seed=2) as model, parml.Trainer(model, optimizer=parml.SGD(0.3, momentum=0.9), strategy=parml.Strategy(dp=dp)) as t:
        history = t.fit(x, y, epochs=40, batch_size=32, validation_data=val, verbose=False, callbacks=[stop, rec])
        best, best_epoch, wait, expected = np.inf, 0, 0, 0
        for i, v in enumerate(rec.val_loss):
            if v < best - 0.01:
                best, best_epoch, wait = v, i + 1, 0
            else:
                wait += 1
                if wait >= 2:
                    expected = i + 1
                    break
        assert 0 < expected < 40, rec.val_loss
        assert len(history) == expected and stop.stopped_epoch == expected and history.stopped_early
        assert stop.best_epoch == best_epoch
        np.testing.assert_array_equal(model.parameters.view(np.uint32), rec.params[best_epoch - 1].view(np.uint32))
        assert not np.array_equal(model.parameters, rec.params[-1])


def test_model_checkpoint_writes_on_improvement_and_loads_back(tmp_path):
    (x, y), val = noisy()
    path = tmp_path / "best.parml"

    class CheckFile(Callback):
        matches = 0

        def on_epoch_end(self, trainer, metrics):
            if metrics.events & parml._capi.PARML_EVENT_SAVED:
                with parml.Model.load(path) as saved:
                    self.matches += np.array_equal(saved.parameters, trainer.model.parameters)

    keep = ModelCheckpoint(path, monitor="val_loss")
    check = CheckFile()
    with mlp(seed=3) as model, parml.Trainer(model, optimizer=parml.SGD(0.03, momentum=0.9)) as t:
        history = t.fit(x, y, epochs=10, batch_size=32, validation_data=val, verbose=False, callbacks=[keep, check])
    losses = history["val_loss"]
    improved = [i + 1 for i, v in enumerate(losses) if v < min(losses[:i], default=np.inf)]
    assert keep.saved_epochs == improved and 2 <= len(improved) < 10
    assert check.matches == len(improved)
    with parml.Model.load(path) as m:  # the best epoch's model
        assert m.parameters.shape == model_size()


def model_size():
    with mlp() as m:
        return m.parameters.shape


def test_reduce_lr_on_plateau_lowers_the_rate_at_the_right_epochs():
    x, y = blobs(128)
    rec = Recorder()
    # train_loss never improves by 100: the rate halves after epochs 2, 3 and 4, then sits at min_lr.
    plateau = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=100, min_lr=0.03)
    with mlp() as model, parml.Trainer(model, optimizer=parml.SGD(0.2)) as t:
        history = t.fit(x, y, epochs=5, batch_size=32, verbose=False, callbacks=[plateau, rec])
        assert plateau.reductions == [2, 3, 4]
        assert rec.lr == [float(np.float32(v)) for v in (0.2, 0.1, 0.05, 0.03, 0.03)]
        assert history["learning_rate"] == rec.lr
        assert t.learning_rate == np.float32(0.03)


def test_a_callback_that_evaluates_and_saves_changes_nothing(tmp_path):
    x, y = blobs(200)
    vx, vy = blobs(60, seed=9)

    class Busy(Callback):
        calls = 0

        def on_step_end(self, trainer, metrics):
            self.act(trainer)

        def on_epoch_end(self, trainer, metrics):
            self.act(trainer)

        def act(self, trainer):
            self.calls += 1
            trainer.evaluate(vx, vy, batch_size=16)
            trainer.evaluate_metrics(vx, vy)
            trainer.model.save(tmp_path / "m.parml")
            trainer.save_checkpoint(tmp_path / "c.ckpt")
            trainer.checkpoint_bytes()
            trainer.model.predict(vx[:3])
            assert trainer.step_count >= 1

    def run(callbacks, every=None):
        with mlp(seed=6) as model, parml.Trainer(model, optimizer=parml.Adam(0.01)) as t:
            t.fit(x, y, epochs=3, batch_size=50, validation_data=(vx, vy), verbose=False, callbacks=callbacks, callback_every_steps=every)
            return model.parameters

    busy = Busy()
    acted = run([busy], every=3)
    assert busy.calls == 3 + 4  # 12 steps: after 3, 6, 9, 12, and 3 epochs
    np.testing.assert_array_equal(acted.view(np.uint32), run([]).view(np.uint32))


def test_setting_the_learning_rate_from_a_callback():
    x, y = blobs(128)

    class Halve(Callback):
        def on_epoch_end(self, trainer, metrics):
            trainer.learning_rate = metrics.learning_rate / 2

    with mlp() as model, parml.Trainer(model, optimizer=parml.SGD(0.4)) as t:
        history = t.fit(x, y, epochs=3, batch_size=64, verbose=False, callbacks=[Halve()])
        assert history["learning_rate"] == [float(np.float32(v)) for v in (0.4, 0.2, 0.1)]
        assert t.learning_rate == np.float32(0.05)
        with pytest.raises(parml.InvalidArgumentError):
            t.learning_rate = 0.0
        saved = t.checkpoint_bytes()
    with mlp() as model, parml.Trainer(model, optimizer=parml.SGD(0.4)) as t:
        t.load_checkpoint_bytes(saved)  # the checkpoint carries the factor
        assert t.learning_rate == np.float32(0.05)


def test_misuse_inside_a_callback_raises_and_fit_goes_on():
    x, y = blobs(64)
    errors = []

    class Misuse(Callback):
        def on_epoch_end(self, trainer, metrics):
            for bad in (lambda: trainer.step(x, y), lambda: trainer.fit(x, y, verbose=False),
                        lambda: trainer.model.set_parameters(trainer.model.parameters), trainer.close):
                try:
                    bad()
                except parml.StateError as e:
                    errors.append(str(e))

    with mlp() as model, parml.Trainer(model) as t:
        t.fit(x, y, epochs=2, batch_size=32, verbose=False, callbacks=[Misuse()])
        assert len(errors) == 8, errors
        assert t.step_count == 4 and not t.closed


def test_bad_callbacks_are_refused():
    x, y = blobs(64)
    with mlp() as model, parml.Trainer(model) as t:
        with pytest.raises(parml.InvalidArgumentError, match="validation"):
            t.fit(x, y, verbose=False, callbacks=[EarlyStopping()])
        with pytest.raises(ValueError, match="at most one"):
            t.fit(x, y, verbose=False, callbacks=[EarlyStopping(monitor="loss"), EarlyStopping(monitor="loss")])
        with pytest.raises(ValueError, match="monitor"):
            EarlyStopping(monitor="val_f1")
        with pytest.raises(TypeError):
            t.fit(x, y, verbose=False, callbacks=[42])
        assert t.step_count == 0


class Iterates(Callback):
    """Records the parameters and the step count after every step."""

    def __init__(self) -> None:
        self.params: list[np.ndarray] = []
        self.steps: list[int] = []

    def on_step_end(self, trainer, metrics):
        self.params.append(trainer.model.parameters)
        self.steps.append(metrics.steps)


def ema_reference(params, steps, decay, warmup):
    """The average ParameterAverage documents, in float64 with numpy."""
    avg = params[0].astype(np.float64)
    for p, t in zip(params[1:], steps[1:]):
        d = min(decay, (1 + t) / (10 + t)) if warmup else decay
        avg = d * avg + (1 - d) * p.astype(np.float64)
    return avg


@pytest.mark.parametrize("decay,warmup", [(0.6, True), (0.9, False)])
def test_parameter_average_is_the_moving_average_of_the_iterates(decay, warmup):
    x, y = blobs(200)

    def run(callbacks):
        with mlp(seed=6) as model, parml.Trainer(model, optimizer=parml.SGD(0.1, momentum=0.9)) as t:
            t.fit(x, y, epochs=3, batch_size=20, verbose=False, callbacks=callbacks, callback_every_steps=1 if callbacks else None)
            return model.parameters

    avg, seen = ParameterAverage(decay, warmup=warmup), Iterates()
    final = run([avg, seen])
    assert seen.steps == list(range(1, 31)) and avg.updates == 30
    # decay 0.6 with warm-up: min(0.6, (1+t)/(10+t)) is the warm-up term up to t = 12, 0.6 from t = 13.
    np.testing.assert_allclose(avg.parameters, ema_reference(seen.params, seen.steps, decay, warmup).astype(np.float32), rtol=1e-6, atol=1e-7)
    # By hand over two steps: at t = 2 the first iterate keeps weight d = min(decay, 3/12).
    two, pair = ParameterAverage(decay, warmup=warmup), Iterates()
    with mlp(seed=6) as model, parml.Trainer(model, optimizer=parml.SGD(0.1)) as t:
        t.fit(x[:40], y[:40], epochs=1, batch_size=20, verbose=False, callbacks=[two, pair], callback_every_steps=1)
    d = 0.25 if warmup else decay
    p1, p2 = (p.astype(np.float64) for p in pair.params)
    np.testing.assert_allclose(two.parameters, (d * p1 + (1 - d) * p2).astype(np.float32), rtol=1e-6, atol=1e-7)
    # The average differs from the final iterate, and reading the model each step changed no step.
    assert not np.allclose(avg.parameters, final)
    np.testing.assert_array_equal(final.view(np.uint32), run([]).view(np.uint32))
    np.testing.assert_array_equal(final.view(np.uint32), seen.params[-1].view(np.uint32))
    with mlp(seed=6) as model:
        avg.apply(model)
        np.testing.assert_array_equal(model.parameters, avg.parameters)
