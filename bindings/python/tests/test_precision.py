"""Issue 23 from Python: Strategy(precision="bf16") runs Linear products on
bf16 operands with float32 accumulation (oneDNN on AVX512-BF16); a host
without them trains in float32 and the plan says why (docs/precision.md)."""

from __future__ import annotations

import ctypes.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import subprocess_env

import parml


def train(steps=8, **strategy):
    model = parml.Sequential([parml.Linear(12, 64), parml.ReLU(), parml.Linear(64, 64), parml.ReLU(), parml.Linear(64, 3)], seed=4)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 12)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    strategy.setdefault("seed", 2)
    with model, parml.Trainer(model, optimizer=parml.SGD(0.1, momentum=0.9), strategy=parml.Strategy(**strategy)) as t:
        losses = [t.step(x, y) for _ in range(steps)]
        return losses, model.parameters.copy(), t.plan()


def cpu_has_bf16() -> bool:
    """Whether /proc/cpuinfo lists avx512_bf16 (False off Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " avx512_bf16" in line for line in f)
    except OSError:
        return False


def bf16_runs_here() -> bool:
    return "precision: bf16 products" in train(steps=1, precision="bf16")[2]


def test_refusals():
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        parml.Strategy(precision="fp8")
    model = parml.Sequential([parml.Linear(4, 2)], seed=1)
    with model, pytest.raises(parml.InvalidArgumentError, match="precision 7 is unknown"):
        parml.Trainer(model, strategy=parml.Strategy(precision=7))


def test_float32_is_the_default():
    default, params, plan = train()
    f32, params32, _ = train(precision="fp32")
    assert "precision: float32" in plan
    np.testing.assert_array_equal(params, params32)


def test_bf16_trains_close_to_float32():
    if not bf16_runs_here():
        pytest.skip("bf16 products cannot run here (the fallback test covers this host)")
    f32, p32, _ = train(steps=20)
    bf, pbf, plan = train(steps=20, precision="bf16")
    assert "bf16 operands, float32 accumulation" in plan
    assert not np.array_equal(pbf, p32), "bf16 gave float32's bits"
    assert bf[-1] < 0.6 * bf[0]
    assert np.abs(np.array(bf) - np.array(f32)).max() < 0.02 * max(f32)


@pytest.mark.parametrize(
    "layout",
    [dict(dp=2, gradient_compression="bf16"), dict(tp=2), dict(pp=2, micro_batches=2), dict(dp=2, zero=3)],
    ids=["dp2-bf16-wire", "tp2", "pp2", "dp2-zero3"],
)
def test_bf16_composes_with_parallel_layouts(layout):
    """Every layout in bf16 trains, within bf16 rounding of serial bf16
    (deterministic mode's bit-identity is the Swift tests' matrix)."""
    if not bf16_runs_here():
        pytest.skip("bf16 products cannot run here")
    serial, p_serial, _ = train(precision="bf16")
    losses, params, plan = train(precision="bf16", **layout)
    assert "precision: bf16 products" in plan
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    np.testing.assert_allclose(losses, serial, rtol=0.03)
    assert np.abs(params - p_serial).max() < 0.03 * np.abs(p_serial).max()


TRAIN_IN_A_CHILD = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[2])
from test_precision import train
losses, params, plan = train(precision=sys.argv[3])
mapped = "libdnnl" in open("/proc/self/maps").read()
line = [l for l in plan.splitlines() if l.startswith("precision:")][0]
np.savez(sys.argv[1], losses=np.array(losses), params=params, mapped=np.array(mapped), plan=np.array(line))
"""


def test_without_onednn_bf16_falls_back_to_float32(tmp_path):
    """A host without libdnnl.so.2 (PARML_DNNL_LIBRARY=none makes the loader
    fail): bf16 asked for, float32 runs, bit for bit as a float32 trainer,
    and the plan says so. oneDNN loads once per process: fresh children."""
    here = str(Path(__file__).resolve().parent)

    def child(name, precision, **env):
        out = tmp_path / f"{name}.npz"
        run = subprocess.run(
            [sys.executable, "-c", TRAIN_IN_A_CHILD, str(out), here, precision], env=subprocess_env(**env),
            capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        return np.load(out)

    missing = child("missing", "bf16", PARML_DNNL_LIBRARY="none")
    f32 = child("f32", "fp32", PARML_DNNL_LIBRARY="none")
    assert not bool(missing["mapped"])
    # The plan names the first reason found: the CPU's where it lacks the instructions.
    reason = "PARML_DNNL_LIBRARY=none" if cpu_has_bf16() else "no AVX512-BF16 instructions"
    assert "float32 fallback" in str(missing["plan"]) and reason in str(missing["plan"]), missing["plan"]
    np.testing.assert_array_equal(missing["params"], f32["params"])
    np.testing.assert_array_equal(missing["losses"], f32["losses"])
    if not ctypes.util.find_library("dnnl"):
        return
    present = child("present", "bf16")
    if "bf16 products" in str(present["plan"]):
        assert bool(present["mapped"])
        assert not np.array_equal(present["params"], f32["params"])
