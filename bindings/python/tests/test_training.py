"""Training end to end on small synthetic data."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

import parml

from conftest import blobs, mlp


def test_classification_learns():
    x, y = blobs(1200, seed=3)
    xv, yv = blobs(300, seed=3)  # same centers (same seed), other noise draws below
    xv = xv + np.random.default_rng(9).normal(scale=0.1, size=xv.shape).astype(np.float32)
    with mlp() as model, parml.Trainer(model, optimizer=parml.Adam(1e-2)) as trainer:
        before = trainer.evaluate(xv, yv)
        history = trainer.fit(x, y, epochs=6, batch_size=64, validation_data=(xv, yv), verbose=False)
        after = trainer.evaluate(xv, yv)
    assert len(history) == 6 and history.last.epoch == 6
    losses = history["train_loss"]
    assert losses[-1] < losses[0] / 2, losses
    assert after.loss < before.loss / 2
    assert after.accuracy > 0.9 and history.last.val_accuracy > 0.9, (after, history.last)
    assert history.last.steps == 6 * (1200 // 64 + 1)


def test_regression_with_mse():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(800, 5)).astype(np.float32)
    w = rng.normal(size=(5, 2)).astype(np.float32)
    y = x @ w + np.float32(0.5)
    model = parml.Sequential([parml.Linear(5, 16), parml.Tanh(), parml.Linear(16, 2)], seed=2)
    with model, parml.Trainer(model, loss="mse", optimizer=parml.Adam(1e-2)) as trainer:
        start = trainer.evaluate(x, y)
        history = trainer.fit(x, y, epochs=30, batch_size=32, verbose=False)
        end = trainer.evaluate(x, y)
        assert start.accuracy is None and history.last.train_accuracy is None
        assert end.loss < 0.05 < start.loss, (start, end)
        pred = model.predict(x)
        assert np.mean((pred - y) ** 2) == pytest.approx(end.loss, rel=1e-3)


def test_step_loop_and_counters():
    x, y = blobs(128)
    with mlp() as model, parml.Trainer(model, optimizer=parml.SGD(0.05, momentum=0.9)) as trainer:
        losses = [trainer.step(x, y) for _ in range(40)]
        assert trainer.step_count == 40
        assert losses[-1] < losses[0] / 4
        assert trainer.learning_rate == pytest.approx(0.05)


@pytest.mark.parametrize(
    "optimizer",
    [
        parml.SGD(0.05),
        parml.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
        parml.Adam(5e-3, betas=(0.8, 0.99), eps=1e-7, clip_grad_norm=1.0),
        parml.AdamW(5e-3),
        parml.AdamW(5e-3, weight_decay=0.1, schedule=parml.schedules.constant(warmup_steps=3)),
    ],
    ids=repr,
)
def test_optimizers_train(optimizer):
    x, y = blobs(256)
    with mlp() as model, parml.Trainer(model, optimizer=optimizer) as trainer:
        history = trainer.fit(x, y, epochs=8, batch_size=32, verbose=False)
    assert history["train_loss"][-1] < history["train_loss"][0] / 2


def test_optimizer_fields_reach_the_struct():
    p = parml.SGD(0.2, momentum=0.9, nesterov=True, weight_decay=0.01, clip_grad_norm=2.0).to_params()
    assert (p.kind, p.nesterov) == (parml._capi.PARML_OPTIMIZER_SGD, 1)
    assert (p.learning_rate, p.momentum, p.weight_decay, p.clip_grad_norm) == pytest.approx((0.2, 0.9, 0.01, 2.0))
    a = parml.AdamW(1e-3, betas=(0.5, 0.6), eps=1e-6).to_params()
    assert (a.kind, a.beta1, a.beta2, a.epsilon, a.weight_decay) == pytest.approx(
        (parml._capi.PARML_OPTIMIZER_ADAMW, 0.5, 0.6, 1e-6, 0.01)
    )
    c = parml.Adam(1e-3, schedule=parml.schedules.cosine(100, min_lr=1e-5, warmup_steps=10)).to_params()
    assert (c.schedule, c.total_steps, c.warmup_steps) == (parml._capi.PARML_SCHEDULE_COSINE, 100, 10)
    s = parml.Strategy(dp=2, zero=1, deterministic=True, grad_chunk=8, seed=5, schedule="gpipe").to_params()
    assert (s.dp, s.zero_stage, s.deterministic, s.grad_chunk, s.seed) == (2, 1, 1, 8, 5)
    assert s.pipeline_schedule == parml._capi.PARML_PIPELINE_GPIPE
    with pytest.raises(ValueError, match="seed"):
        parml.Strategy(seed=-1)
    with pytest.raises(ValueError, match="seed"):
        parml.Sequential([parml.Linear(2, 2)], seed=-1)
    with pytest.raises(ValueError, match="backend"):
        parml.Strategy(backend="carrier-pigeon")
    with pytest.raises(ValueError, match="loss"):
        with mlp() as m:
            parml.Trainer(m, loss="hinge")


def test_schedules_with_warmup():
    x, y = blobs(64)
    sched = parml.schedules.cosine(10, min_lr=0.01, warmup_steps=4)
    with mlp() as model, parml.Trainer(model, optimizer=parml.SGD(0.1, schedule=sched)) as trainer:
        lrs = []
        for _ in range(12):
            lrs.append(trainer.learning_rate)
            trainer.step(x, y)
    np.testing.assert_allclose(lrs[:4], [0.025, 0.05, 0.075, 0.1], rtol=1e-6)
    assert all(a > b for a, b in zip(lrs[4:10], lrs[5:11]))
    assert lrs[10] == lrs[11] == pytest.approx(0.01)
    with mlp() as model, parml.Trainer(model, optimizer=parml.SGD(0.1, schedule=parml.schedules.step(3, gamma=0.5))) as t:
        lrs = []
        for _ in range(7):
            lrs.append(t.learning_rate)
            t.step(x, y)
    np.testing.assert_allclose(lrs, [0.1] * 3 + [0.05] * 3 + [0.025], rtol=1e-6)


def test_every_layer_kind():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(256, 2, 4)).astype(np.float32)
    y = (x.sum(axis=(1, 2)) > 0).astype(np.int64)
    layers = [
        parml.Flatten(),
        parml.Linear(8, 16),
        parml.GELU(),
        parml.Residual(
            [
                parml.LayerNorm(16),
                parml.Linear(16, 16),
                parml.Sigmoid(),
                parml.Residual([parml.Linear(16, 16, bias=False), parml.Tanh()]),
                parml.Dropout(0.1),
            ]
        ),
        parml.ReLU(),
        parml.Linear(16, 2),
    ]
    with parml.Sequential(layers, seed=11) as model:
        assert model.output_shape((5, 2, 4)) == (5, 2)
        assert model.num_params == (8 * 16 + 16) + (16 + 16) + (16 * 16 + 16) + 16 * 16 + (16 * 2 + 2)
        text = model.summary()
        for word in ("flatten", "linear", "gelu", "layer", "sigmoid", "tanh", "dropout", "relu", "residual"):
            assert word in text.lower(), (word, text)
        assert model.layers == layers
        with parml.Trainer(model, optimizer=parml.Adam(1e-2), strategy=parml.Strategy(seed=3)) as trainer:
            trainer.fit(x, y, epochs=15, batch_size=32, verbose=False)
            assert trainer.evaluate(x, y).accuracy > 0.9
        # dropout is off in predict: the same input gives the same output
        assert np.array_equal(model.predict(x[:8]), model.predict(x[:8]))


def test_fit_progress_lines(capsys):
    x, y = blobs(128)
    with mlp() as model, parml.Trainer(model) as trainer:
        trainer.fit(x, y, epochs=3, batch_size=32, verbose="plain")
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 3 and lines[0].startswith("epoch 1/3  loss ") and "acc " in lines[0]
        trainer.fit(x, y, epochs=2, verbose=False)
        assert capsys.readouterr().out == ""
        trainer.fit(x, y, epochs=2, validation_data=parml.Dataset(x, y), verbose=True)
        out = capsys.readouterr()
        try:
            import tqdm  # noqa: F401
        except ImportError:
            lines = out.out.splitlines()
            assert len(lines) == 2 and "val_acc" in lines[1]
        else:
            assert "fit" in out.err  # the bar writes to stderr


def test_fit_history_and_callback():
    x, y = blobs(200)
    seen = []
    with mlp() as model, parml.Trainer(model) as trainer:
        history = trainer.fit(
            x, y, epochs=4, batch_size=50, shuffle=False, drop_last=True, verbose=False, callback=seen.append
        )
        assert [m.epoch for m in seen] == [1, 2, 3, 4] and seen == history.epochs
        assert history["steps"] == [4, 8, 12, 16] and not history.stopped_early
        assert all(m.val_loss is None and m.val_accuracy is None for m in history)
        assert all(m.samples_per_second > 0 and m.seconds >= 0 for m in history)
        with pytest.raises(KeyError):
            history["nope"]
        with pytest.raises(TypeError, match="validation_data"):
            trainer.fit(x, y, validation_data=x, verbose=False)
        with pytest.raises(TypeError, match="y is required"):
            trainer.fit(x, verbose=False)


def test_dataset_properties():
    x, y = blobs(40)
    with parml.Dataset(x, y) as ds:
        assert len(ds) == ds.size == 40 and ds.input_shape == (40, 8) and ds.num_classes == 3
    with parml.Dataset(x, x[:, :2]) as reg:
        assert reg.num_classes is None


def write_idx(path, array):
    kind = {1: 0x08}[array.dtype.itemsize]
    header = struct.pack(">HBB", 0, kind, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def test_load_idx(tmp_path):
    rng = np.random.default_rng(6)
    labels = rng.integers(0, 4, size=200).astype(np.uint8)
    images = np.zeros((200, 4, 4), np.uint8)
    for i, c in enumerate(labels):  # class c lights row c
        images[i, c, :] = 200 + rng.integers(0, 50, size=4)
    write_idx(tmp_path / "images.gz", images)
    write_idx(tmp_path / "labels.gz", labels)
    with parml.load_idx(str(tmp_path / "images.gz"), tmp_path / "labels.gz") as ds:
        assert ds.input_shape == (200, 4, 4) and ds.num_classes == 4
        model = parml.Sequential([parml.Flatten(), parml.Linear(16, 4)], seed=0)
        with model, parml.Trainer(model, optimizer=parml.Adam(0.05)) as trainer:
            trainer.fit(ds, epochs=10, batch_size=20, verbose=False)
            assert trainer.evaluate(ds).accuracy == 1.0
            np.testing.assert_allclose(
                model.predict(images[:1] / np.float32(255)), model.predict((images[:1] / 255.0))
            )


def test_data_parallel_memory_report():
    x, y = blobs(64)
    with mlp(hidden=256) as model:
        with parml.Trainer(model, optimizer=parml.Adam(1e-3), strategy=parml.Strategy(dp=2)) as t0:
            r0 = t0.memory(0)
        with parml.Trainer(model, optimizer=parml.Adam(1e-3), strategy=parml.Strategy(dp=2, zero=1)) as t1:
            t1.step(x, y)
            r1 = t1.memory(1)
            with pytest.raises(parml.InvalidArgumentError):
                t1.memory(2)
    n = 8 * 256 + 256 + 256 * 3 + 3
    assert r0.parameter_bytes == 4 * n and r0.optimizer_bytes == 2 * 4 * n
    assert r1.optimizer_bytes < r0.optimizer_bytes * 0.6
    assert r0.total == r0.parameter_bytes + r0.gradient_bytes + r0.optimizer_bytes + r0.scratch_bytes + r0.activation_bytes


def bits(a):
    return np.ascontiguousarray(a).view(np.uint32)


@pytest.mark.parametrize("zero", [0, 1])
def test_dp2_deterministic_is_bitwise_serial(zero):
    x, y = blobs(300, seed=8)
    results = []
    for dp in (1, 2):
        model = mlp(hidden=48, seed=21)
        strategy = parml.Strategy(dp=dp, zero=zero, deterministic=True, grad_chunk=16, seed=4)
        optimizer = parml.SGD(0.05, momentum=0.9, clip_grad_norm=1.0)
        with model, parml.Trainer(model, optimizer=optimizer, strategy=strategy) as trainer:
            trainer.fit(x, y, epochs=2, batch_size=72, verbose=False)  # uneven last batch, shuffled
            trainer.step(x[:37], y[:37])
            results.append(model.parameters)
    assert np.array_equal(bits(results[0]), bits(results[1]))


@pytest.mark.parametrize(
    "layout",
    [dict(pp=2, micro_batches=3, schedule="1f1b"), dict(pp=3, micro_batches=2, schedule="gpipe"), dict(dp=2, pp=2, micro_batches=4, zero=2)],
)
def test_pipeline_deterministic_is_bitwise_serial(layout):
    x, y = blobs(300, seed=8)
    results = []
    for kwargs in ({}, layout):
        model = mlp(hidden=48, seed=21)
        strategy = parml.Strategy(deterministic=True, grad_chunk=16, seed=4, **kwargs)
        optimizer = parml.SGD(0.05, momentum=0.9, clip_grad_norm=1.0)
        with model, parml.Trainer(model, optimizer=optimizer, strategy=strategy) as trainer:
            trainer.fit(x, y, epochs=2, batch_size=72, verbose=False)  # uneven last batch, shuffled
            results.append(model.parameters)
    assert np.array_equal(bits(results[0]), bits(results[1]))


def test_stage_boundary_decides_the_cut():
    layers = [parml.Linear(8, 32), parml.StageBoundary(), parml.ReLU(), parml.Linear(32, 3)]
    with parml.Sequential(layers, seed=2) as model:
        assert "-- pipeline stage boundary --" in model.summary()
        with parml.Trainer(model, strategy=parml.Strategy(pp=2)) as t:
            assert "stage 0: layers 0:linear(8→32);" in t.plan()
        with pytest.raises(parml.InvalidArgumentError, match="marks 1 stage boundary"):
            parml.Trainer(model, strategy=parml.Strategy(pp=3))


def test_plan_describes_stages_and_ranks():
    with mlp() as model, parml.Trainer(model, strategy=parml.Strategy(dp=2, pp=3, micro_batches=4, schedule="gpipe")) as t:
        plan = t.plan()
        assert "dp 2 × pp 3" in plan and "GPipe" in plan
        assert "stage 2: layers 2:linear(32→3)" in plan
        assert "rank 5 (dp 1, stage 2" in plan
        assert sum(t.memory(r).parameter_bytes for r in range(3)) == 4 * model.num_params
    with mlp() as model, pytest.raises(parml.InvalidArgumentError, match="pp=4"):
        parml.Trainer(model, strategy=parml.Strategy(pp=4))


def train_four_steps(model, x, y, strategy):
    """Parameters and plan after 4 Adam steps of 50 rows each."""
    with model, parml.Trainer(model, optimizer=parml.Adam(1e-2), strategy=strategy) as trainer:
        for i in range(4):
            trainer.step(x[i * 50 : i * 50 + 50], y[i * 50 : i * 50 + 50])
        return model.parameters, trainer.plan()


def assert_close_to_serial(params, serial):
    assert np.abs(params - serial).max() <= 2e-6 * 4 * np.abs(serial).max()


def test_tensor_parallel_is_close_to_serial():
    x, y = blobs(200, seed=5)
    serial, _ = train_four_steps(mlp(hidden=48, seed=21), x, y, parml.Strategy(blas_threads=1))
    params, plan = train_four_steps(mlp(hidden=48, seed=21), x, y, parml.Strategy(tp=2, blas_threads=1))
    assert "column-parallel linear(8→48)" in plan
    assert_close_to_serial(params, serial)


def test_split_classifier_is_close_to_serial():
    # Linear, ReLU, Linear, ReLU, Linear(24→4): one column/row pair, then
    # a classifier with no partner, split by classes when asked.
    def model():
        return parml.Sequential(
            [parml.Linear(8, 24), parml.ReLU(), parml.Linear(24, 24), parml.ReLU(), parml.Linear(24, 4)], seed=3
        )

    x, y = blobs(200, classes=4, seed=7)
    serial, _ = train_four_steps(model(), x, y, parml.Strategy(blas_threads=1))
    params, plan = train_four_steps(model(), x, y, parml.Strategy(tp=2, split_classifier=True, blas_threads=1))
    assert "column-parallel classifier linear(24→4), 2 classes per rank" in plan
    assert_close_to_serial(params, serial)
    assert parml.Strategy(split_classifier=True).to_params().split_classifier == 1
    assert parml.Strategy().to_params().split_classifier == 0


def test_local_batches_need_mpi():
    with mlp() as model, parml.Trainer(model, strategy=parml.Strategy(dp=2)) as t:
        assert t.data_rows(100) == range(0, 100)
        with pytest.raises(parml.InvalidArgumentError, match="MPI backend"):
            t.set_local_batches()


def test_trace_is_chrome_json(tmp_path):
    import json

    x, y = blobs(64, seed=3)
    with mlp() as model, parml.Trainer(model, strategy=parml.Strategy(pp=3, micro_batches=4)) as t:
        t.start_trace()
        t.step(x, y)
        t.stop_trace()
        t.step(x, y)
        path = tmp_path / "trace.json"
        t.write_trace(path)
        events = json.loads(path.read_text())["traceEvents"]
    names = {e["name"] for e in events if e["ph"] == "X"}
    assert {"forward mb 0", "forward mb 3", "backward mb 3", "optimizer"} <= names
    assert {e["tid"] for e in events} == {0, 1, 2}
    assert all(e["args"]["step"] == 0 for e in events if e["ph"] == "X")


def test_default_mode_dp2_is_close_to_serial():
    x, y = blobs(256, seed=8)
    results = []
    for dp in (1, 2):
        with mlp(seed=21) as model, parml.Trainer(model, strategy=parml.Strategy(dp=dp)) as trainer:
            for i in range(5):
                trainer.step(x[i * 50 : i * 50 + 50], y[i * 50 : i * 50 + 50])
            results.append(model.parameters)
    np.testing.assert_allclose(results[0], results[1], atol=1e-6)


@pytest.mark.parametrize("dp", [1, 2])
def test_a_nonfinite_step_is_skipped(dp):
    x, y = blobs(64)
    bad = x.copy()
    bad[7, 3] = np.nan
    strategy = parml.Strategy(dp=dp)
    with mlp() as model, parml.Trainer(model, optimizer=parml.SGD(0.05, momentum=0.9), strategy=strategy) as trainer:
        trainer.step(x, y)
        before = model.parameters.view(np.uint32).copy()
        with pytest.raises(parml.NonFiniteError, match=r"step 1 was skipped: the inputs hold .*sample 7"):
            trainer.step(bad, y)
        np.testing.assert_array_equal(model.parameters.view(np.uint32), before)
        assert (trainer.step_count, trainer.skipped_steps) == (1, 1)
        trainer.step(x, y)  # usable afterwards
        assert trainer.step_count == 2
    with mlp() as model, parml.Trainer(model, optimizer=parml.SGD(0.05, skip_nonfinite=False)) as trainer:
        assert np.isnan(trainer.step(bad, y))
        assert np.isnan(model.parameters).any()
        assert trainer.skipped_steps == 0
