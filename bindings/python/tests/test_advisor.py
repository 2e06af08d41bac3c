"""The strategy advisor through the bindings: parml.advise ranks layouts
within the constraints and explains the rest, bad constraints raise, and
parml.Auto builds the first layout with a plan that says why. The
calibration lives in a temporary cache directory (measured once here)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import parml


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("parml-cache"))


def mlp(width: int = 128):
    return parml.Sequential(
        [parml.Linear(32, width), parml.ReLU(), parml.Linear(width, width), parml.ReLU(), parml.Linear(width, 4)], seed=1
    )


def test_advice_ranks_layouts_within_the_budget(cache, capsys):
    model = mlp()
    free = parml.advise(model, (32,), 64, optimizer=parml.Adam(1e-3), cache_dir=cache, show=False)
    serial = next(p for p in free.ranked if p.dp * p.pp * p.tp == 1)
    budget = serial.peak_bytes * 3 // 4
    advice = parml.advise(model, (32,), 64, optimizer=parml.Adam(1e-3), cache_dir=cache, memory_budget=budget)
    printed = capsys.readouterr().out
    assert "excluded:" in printed and "calibration: cached" in printed
    assert advice.ranked, advice.text
    assert all(p.peak_bytes <= budget for p in advice.ranked)
    steps = [p.step_seconds for p in advice.ranked]
    assert steps == sorted(steps)
    for p in advice.ranked:
        terms = p.compute_seconds + p.communication_seconds + p.bubble_seconds + p.optimizer_seconds + p.overhead_seconds
        assert p.step_seconds == pytest.approx(terms)
        parts = p.parameter_bytes + p.gradient_bytes + p.optimizer_bytes + p.scratch_bytes + p.activation_bytes
        assert p.peak_bytes == parts
    assert any(e.dp * e.pp * e.tp == 1 and "budget" in e.why for e in advice.excluded)
    assert len(advice.ranked) + len(advice.excluded) == len(free.ranked) + len(free.excluded)


def test_bad_constraints_raise(cache):
    model = mlp()
    with pytest.raises(parml.InvalidArgumentError, match="batch"):
        parml.advise(model, (32,), 0, cache_dir=cache, show=False)
    with pytest.raises(parml.InvalidArgumentError, match="memory_budget"):
        parml.advise(model, (32,), 8, memory_budget=-1, cache_dir=cache, show=False)
    with pytest.raises(parml.ShapeError, match="does not take samples"):
        parml.advise(model, (31,), 8, cache_dir=cache, show=False)
    if "OMPI_COMM_WORLD_SIZE" not in os.environ:  # outside mpirun there is no job to measure
        with pytest.raises(parml.UnsupportedError, match="not started by mpirun"):
            parml.advise(model, (32,), 8, backend="mpi", cache_dir=cache, show=False)
    with pytest.raises(parml.InvalidArgumentError, match="nodes"):
        parml.advise(model, (32,), 8, machines=parml.Machines(2, 0, 1), cache_dir=cache, show=False)
    with pytest.raises(ValueError, match="backend"):
        parml.advise(model, (32,), 8, backend="carrier-pigeon", cache_dir=cache, show=False)


def test_auto_trains_the_first_choice_and_says_why(cache):
    model = mlp()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 32)).astype(np.float32)
    y = rng.integers(0, 4, size=64)
    advice = parml.advise(model, (32,), 64, optimizer=parml.SGD(0.1), cache_dir=cache, show=False)
    auto = parml.Auto((32,), 64, cache_dir=cache)
    with parml.Trainer(model, optimizer=parml.SGD(0.1), strategy=auto) as t:
        plan = t.plan()
        assert "layout chosen by the strategy advisor" in plan
        first = advice.first
        assert f"dp {first.dp} × pp {first.pp} × tp {first.tp}" in plan
        t.step(x, y)
        report = t.memory(0)
        # Trainer.memory's count agrees with the prediction within 10 % on the fullest rank.
        worst = max(sum(t.memory(r)) for r in range(first.dp * first.pp * first.tp))
        assert abs(first.peak_bytes - worst) <= 0.10 * worst, (first, report)


def test_other_machines(cache):
    """8 ranks on 4 nodes: data parallelism across nodes pays the link, so a
    100x slower link costs the dp=8 layout more communication time."""
    model = mlp(256)

    def dp8(bandwidth: float):
        advice = parml.advise(
            model, (32,), 1024, cache_dir=cache, show=False,
            machines=parml.Machines(nodes=4, ranks_per_node=2, cores_per_node=8, inter_node_bandwidth=bandwidth),
        )
        return next(p for p in advice.ranked if (p.dp, p.pp, p.tp, p.zero_stage) == (8, 1, 1, 0))

    fast, slow = dp8(1e11), dp8(1e9)
    assert slow.communication_seconds > 5 * fast.communication_seconds
    assert slow.compute_seconds == pytest.approx(fast.compute_seconds)


def test_interleaved_layouts_build_what_they_predict(cache):
    """An interleaved 1F1B layout of the advice (5 top-level layers: 2 runs
    for each of 2 stages) becomes the trainer it describes, and its
    predicted memory is what that trainer reports."""
    model = mlp()
    advice = parml.advise(model, (32,), 64, optimizer=parml.SGD(0.1), cache_dir=cache, show=False)
    inter = [p for p in advice.ranked if p.schedule == "interleaved"]
    assert inter and all(p.pp >= 2 and p.virtual_stages == 2 and p.micro_batches % p.pp == 0 for p in inter)
    p = next(q for q in inter if q.dp == 1 and q.tp == 1)
    x = np.random.default_rng(0).normal(size=(64, 32)).astype(np.float32)
    y = np.arange(64) % 4
    with parml.Trainer(mlp(), optimizer=parml.SGD(0.1), strategy=p.strategy()) as t:
        assert "interleaved" in t.plan()
        t.step(x, y)
        peak = max(sum(t.memory(r)) for r in range(p.pp))
    assert abs(peak - p.peak_bytes) <= 0.10 * peak


def test_default_threads_follow_the_cores_this_process_may_use(cache):
    # A process narrowed to one core (taskset; mpirun binding a job of 1 or
    # 2 processes) takes one thread per rank, not the machine's cores.
    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 cores this process may run on, and sched_setaffinity")
    saved = os.sched_getaffinity(0)
    try:
        with parml.Trainer(mlp(), strategy=parml.Strategy()) as t:
            assert f"{len(saved)} threads per rank" in t.plan().splitlines()[0]
        os.sched_setaffinity(0, {min(saved)})
        with parml.Trainer(mlp(), strategy=parml.Strategy()) as t:
            assert "1 thread per rank" in t.plan().splitlines()[0]
        advice = parml.advise(mlp(), (32,), 64, max_ranks=1, cache_dir=cache, show=False)
        assert advice.ranked[0].blas_threads == 1
    finally:
        os.sched_setaffinity(0, saved)
