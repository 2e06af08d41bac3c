"""Class imbalance: weighted losses against torch (loss and gradient, with
the same starting parameters), the metrics against scikit-learn on the same
predictions, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

import parml

from conftest import blobs

F, H, C = 6, 10, 4


def model(outputs=C, seed=5):
    return parml.Sequential([parml.Linear(F, H), parml.Tanh(), parml.Linear(H, outputs)], seed=seed)


def torch_twin(torch, m):
    """A torch copy of `model` with its parameters (state_dict names match)."""
    ref = torch.nn.Sequential(torch.nn.Linear(F, H), torch.nn.Tanh(), torch.nn.Linear(H, m.output_shape((1, F))[-1]))
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
    return ref


def skewed(n=64, seed=1):
    """Inputs and labels where class 0 is 10x as common as class 3."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, F)).astype(np.float32)
    y = rng.choice(C, size=n, p=[0.6, 0.2, 0.14, 0.06]).astype(np.int64)
    return x, y


def gradient_after_sgd_step(m, trainer, x, y, lr):
    """(loss, dL/dθ) from one plain SGD step: θ' = θ - lr·g."""
    before = m.parameters.copy()
    loss = trainer.step(x, y)
    return loss, (before - m.parameters.copy()) / lr


def torch_gradient(torch, ref, lossf):
    ref.zero_grad()
    loss = lossf()
    loss.backward()
    return float(loss.detach()), np.concatenate([p.grad.numpy().reshape(-1) for p in ref.parameters()])


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_matches_torch(weighted, smoothing):
    torch = pytest.importorskip("torch")
    x, y = skewed()
    weights = np.array([0.3, 1.5, 2.0, 5.0], dtype=np.float32) if weighted else None
    m = model()
    ref = torch_twin(torch, m)
    lr = 1.0
    with parml.Trainer(m, optimizer=parml.SGD(lr), class_weight=weights, label_smoothing=smoothing) as trainer:
        loss, grad = gradient_after_sgd_step(m, trainer, x, y, lr)
    w = None if weights is None else torch.from_numpy(weights)
    want_loss, want_grad = torch_gradient(
        torch, ref,
        lambda: torch.nn.functional.cross_entropy(ref(torch.from_numpy(x)), torch.from_numpy(y), weight=w, label_smoothing=smoothing),
    )
    assert loss == pytest.approx(want_loss, rel=1e-5)
    # g = (θ - θ')/lr carries θ's rounding (ulp ~6e-8 of |θ| <= 1): 1e-6 absolute.
    np.testing.assert_allclose(grad, want_grad, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("pos_weight", [None, [3.0, 0.5, 1.0, 8.0]])
def test_binary_cross_entropy_matches_torch(pos_weight):
    torch = pytest.importorskip("torch")
    x, _ = skewed()
    rng = np.random.default_rng(2)
    # Multi-label targets: hard 0/1 with some soft labels.
    y = (rng.random(size=(64, C)) < 0.3).astype(np.float32)
    y[::7, 1] = 0.25
    m = model()
    ref = torch_twin(torch, m)
    with parml.Trainer(m, loss="bce_with_logits", optimizer=parml.SGD(1.0), pos_weight=pos_weight) as trainer:
        loss, grad = gradient_after_sgd_step(m, trainer, x, y, 1.0)
    pw = None if pos_weight is None else torch.tensor(pos_weight)
    want_loss, want_grad = torch_gradient(
        torch, ref,
        lambda: torch.nn.functional.binary_cross_entropy_with_logits(ref(torch.from_numpy(x)), torch.from_numpy(y), pos_weight=pw),
    )
    assert loss == pytest.approx(want_loss, rel=1e-5)
    np.testing.assert_allclose(grad, want_grad, atol=1e-6, rtol=1e-4)


def test_class_weights_are_layout_free():
    """dp=2 and pp=2 in deterministic mode: serial's parameters bit for bit."""
    x, y = skewed(96)
    weights = [0.3, 1.5, 2.0, 5.0]

    def train(**layout):
        m = model()
        with parml.Trainer(m, optimizer=parml.Adam(1e-2), strategy=parml.Strategy(deterministic=True, **layout),
                           class_weight=weights, label_smoothing=0.1) as t:
            for _ in range(3):
                t.step(x, y)
        return m.parameters.copy()

    serial = train()
    for layout in [dict(dp=2), dict(pp=2, micro_batches=2), dict(dp=2, zero=2)]:
        assert np.array_equal(train(**layout), serial), layout


def assert_scores_match(got, metrics, truth, pred, **labels):
    """Per-class and averaged precision, recall, F1 and support as scikit-learn's."""
    p, r, f, s = metrics.precision_recall_fscore_support(truth, pred, zero_division=0, **labels)
    np.testing.assert_allclose(got.precision, p, rtol=1e-6)
    np.testing.assert_allclose(got.recall, r, rtol=1e-6)
    np.testing.assert_allclose(got.f1, f, rtol=1e-6)
    np.testing.assert_array_equal(got.support, s)
    for average in ["macro", "weighted"]:
        p, r, f, _ = metrics.precision_recall_fscore_support(truth, pred, average=average, zero_division=0)
        assert getattr(got, f"{average}_precision") == pytest.approx(p, rel=1e-6)
        assert getattr(got, f"{average}_recall") == pytest.approx(r, rel=1e-6)
        assert getattr(got, f"{average}_f1") == pytest.approx(f, rel=1e-6)


def test_metrics_match_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    x, y = blobs(400, features=F, classes=C, seed=4)
    # Skew the classes: keep 1 in 6 of class 3.
    keep = (y != 3) | (np.arange(len(y)) % 6 == 0)
    x, y = x[keep], y[keep]
    m = model()
    with parml.Trainer(m, optimizer=parml.Adam(1e-2), class_weight=[1, 1, 1, 3]) as trainer:
        trainer.fit(x, y, epochs=1, batch_size=32, verbose=False)
        got = trainer.evaluate_metrics(x, y, batch_size=37, top_k=2)
        ev = trainer.evaluate(x, y)
    logits = m.predict(x)
    pred = logits.argmax(axis=1)
    labels = list(range(C))
    assert got.classes == C and got.predictions == len(y)
    np.testing.assert_array_equal(got.confusion, metrics.confusion_matrix(y, pred, labels=labels))
    assert_scores_match(got, metrics, y, pred, labels=labels)
    assert got.accuracy == pytest.approx(metrics.accuracy_score(y, pred), rel=1e-6)
    assert got.top_k_accuracy == pytest.approx(metrics.top_k_accuracy_score(y, logits, k=2, labels=labels), rel=1e-6)
    assert got.loss == ev.loss and got.accuracy == pytest.approx(ev.accuracy, rel=1e-6)
    # Not trivially perfect, so the per-class numbers mean something.
    assert 0 < got.confusion.trace() < len(y)


def test_macro_mean_leaves_out_unseen_classes_as_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    x, y = skewed(40)
    y = np.where(y == 3, 0, y)  # class 3 never a target
    m = model(seed=9)
    with parml.Trainer(m) as trainer:
        got = trainer.evaluate_metrics(x, y, top_k=1)
    pred = m.predict(x).argmax(axis=1)
    _, _, f, _ = metrics.precision_recall_fscore_support(y, pred, average="macro", zero_division=0)
    assert got.macro_f1 == pytest.approx(f, rel=1e-6)
    assert got.top_k_accuracy == pytest.approx(got.accuracy)


def test_bad_input():
    x, y = skewed(16)
    with parml.Trainer(model()) as trainer:
        with pytest.raises(parml.InvalidArgumentError, match="class weight 1"):
            trainer.set_loss(class_weight=[1, -1, 1, 1])
        with pytest.raises(parml.InvalidArgumentError, match=r"\[0, 1\]"):
            trainer.set_loss(label_smoothing=1.5)
        with pytest.raises(parml.InvalidArgumentError, match="binary cross-entropy"):
            trainer.set_loss(pos_weight=[1, 2, 3, 4])
        with pytest.raises(ValueError, match="empty"):
            trainer.set_loss(class_weight=[])
        trainer.set_loss(class_weight=[1, 2, 3])
        with pytest.raises(parml.ShapeError, match="3 class weights"):
            trainer.step(x, y)
        assert trainer.step_count == 0
        trainer.set_loss()  # back to the plain mean
        trainer.step(x, y)
        with pytest.raises(parml.InvalidArgumentError, match="top_k"):
            trainer.evaluate_metrics(x, y, top_k=0)
    with parml.Trainer(model(), loss="mse") as trainer:
        with pytest.raises(parml.InvalidArgumentError, match="cross-entropy or binary cross-entropy trainer"):
            trainer.evaluate_metrics(x, np.zeros((16, C), np.float32))
    with parml.Trainer(model(), loss="bce_with_logits") as trainer:
        with pytest.raises(parml.InvalidArgumentError, match=r"not in \[0, 1\]"):
            trainer.step(x, np.full((16, C), 2, dtype=np.float32))
        with pytest.raises(parml.InvalidArgumentError, match=r"not in \[0, 1\]"):
            trainer.evaluate_metrics(x, np.full((16, C), 2, dtype=np.float32))


def test_multi_label_metrics_match_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    x, y = blobs(300, features=F, classes=C, seed=6)
    # Label l is present when class l or its neighbour is: two labels a row, label 3 also on a rare feature sign.
    targets = np.zeros((len(y), C), np.float32)
    targets[np.arange(len(y)), y] = 1
    targets[np.arange(len(y)), (y + 1) % C] = 1
    targets[:, 3] = np.where(x[:, 0] > 1.5, 1, targets[:, 3])
    m = model(seed=2)
    with parml.Trainer(m, loss="bce_with_logits", optimizer=parml.Adam(1e-2)) as trainer:
        trainer.fit(x, targets, epochs=1, batch_size=32, verbose=False)
        got = trainer.evaluate_metrics(x, targets, batch_size=41)
        ev = trainer.evaluate(x, targets, batch_size=41)
    pred = (m.predict(x) > 0).astype(np.int64)
    truth = targets.astype(np.int64)
    assert got.classes == C and got.predictions == truth.size
    np.testing.assert_array_equal(got.confusion, metrics.multilabel_confusion_matrix(truth, pred))
    assert_scores_match(got, metrics, truth, pred)
    # Accuracy per label decision, as evaluate counts it: 1 - Hamming loss.
    assert got.accuracy == pytest.approx(1 - metrics.hamming_loss(truth, pred), rel=1e-6)
    assert got.loss == ev.loss and got.accuracy == pytest.approx(ev.accuracy, rel=1e-6)
    assert np.isnan(got.top_k_accuracy)
    assert 0 < int(got.confusion[:, 1, 1].sum()) < int(truth.sum())  # neither trivial nor perfect


def test_stratified_split_keeps_each_class_share():
    x, y = skewed(203, seed=3)
    counts = np.bincount(y, minlength=C)
    with parml.Dataset(x, y) as data:
        train, val = data.split(0.25, seed=4)
        again, _ = data.split(0.25, seed=4)
        plain_train, plain_val = data.split(0.25, seed=4, stratify=False)
        with train, val, again, plain_train, plain_val, parml.Trainer(model()) as trainer:
            got = trainer.evaluate_metrics(val, top_k=1).support
            np.testing.assert_array_equal(got, np.floor(counts * 0.25 + 0.5))  # halves round up
            np.testing.assert_array_equal(trainer.evaluate_metrics(train, top_k=1).support, counts - got)
            assert len(plain_val) == 51 and len(plain_train) == 203 - len(plain_val)
            # Same seed, same rows: the same loss over them.
            assert trainer.evaluate(again).loss == trainer.evaluate(train).loss
        with pytest.raises(parml.InvalidArgumentError, match=r"\(0, 1\)"):
            data.split(1.0)
    with parml.Dataset(x, np.ones((203, 2), dtype=np.float32)) as regression:
        with pytest.raises(parml.InvalidArgumentError, match="class index"):
            regression.split(0.5)
        a, b = regression.split(0.5, stratify=False)
        a.close()
        b.close()


def test_class_balanced_sampling_in_fit():
    x, y = skewed(300, seed=5)
    counts = np.bincount(y, minlength=C)
    balanced = len(y) / (C * counts)

    def fit(class_sampling, **layout):
        m = model()
        strategy = parml.Strategy(deterministic=True, seed=3, **layout)
        with parml.Trainer(m, optimizer=parml.Adam(1e-2), strategy=strategy) as t:
            t.fit(x, y, epochs=2, batch_size=32, verbose=False, class_sampling=class_sampling)
            recall = t.evaluate_metrics(x, y, top_k=1).recall
        return m.parameters.copy(), recall

    serial, recall = fit(balanced)
    assert np.array_equal(fit(balanced, dp=2)[0], serial)
    plain, plain_recall = fit(None)
    assert not np.array_equal(plain, serial)
    # The rare class (6 in 100) is seen about as often as the others, and found more often.
    assert recall[3] > plain_recall[3], (recall, plain_recall)
    with parml.Trainer(model()) as t:
        with pytest.raises(parml.InvalidArgumentError, match="class 3"):
            t.fit(x, y, verbose=False, class_sampling=[1, 1, 1])
        with pytest.raises(parml.InvalidArgumentError, match="finite"):
            t.fit(x, y, verbose=False, class_sampling=[1, 1, float("nan"), 1])
