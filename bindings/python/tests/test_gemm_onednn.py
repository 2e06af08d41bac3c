"""The large float32 products on oneDNN's matmul: the default since 0.3 on
CPUs with AVX-512, chosen elsewhere by PARML_GEMM=onednn (PARML_GEMM=openblas
runs them on OpenBLAS; docs/engine.md, "Kernel choices"). The setting is
read once per process,
so each case trains in a fresh child: a small character GPT whose
projections (1024 rows x 128..512) are large enough to go to oneDNN."""

from __future__ import annotations

import ctypes.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import subprocess_env

pytestmark = pytest.mark.skipif(not ctypes.util.find_library("dnnl"), reason="oneDNN (libdnnl) is not installed")

TRAIN_IN_A_CHILD = r"""
import sys
import numpy as np
sys.path.insert(0, sys.argv[2])
import parml

B, T, C, H, V = 16, 64, 128, 4, 65
layout = dict(eval(sys.argv[3]))
layers = [parml.Embedding(V, C, init_std=0.02), parml.PositionEmbedding(T, C, init_std=0.02)]
for _ in range(2):
    layers.append(parml.Residual([parml.LayerNorm(C), parml.CausalSelfAttention(C, H)]))
    layers.append(parml.Residual([parml.LayerNorm(C), parml.Linear(C, 4 * C), parml.GELU(), parml.Linear(4 * C, C)]))
layers += [parml.LayerNorm(C), parml.TiedClassifier(V, C)]
rng = np.random.default_rng(3)
batches = [(rng.integers(0, V, size=(B, T)), rng.integers(0, V, size=(B, T))) for _ in range(3)]
# SGD, not Adam: Adam's normalisation turns the rounding noise of gradients
# that are zero in exact arithmetic into steps of size lr, which differ
# wherever OpenBLAS's and oneDNN's roundings do (test_attention.py says more).
opt = parml.SGD(0.1, 0.9)
with parml.Sequential(layers, seed=1) as model, parml.Trainer(
        model, optimizer=opt, strategy=parml.Strategy(deterministic=True, **layout)) as t:
    losses = [t.step(x, y) for x, y in batches]
    params = np.concatenate([v.ravel() for v in model.state_dict().values()])
np.savez(sys.argv[1], losses=np.array(losses), params=params)
"""


def child(tmp_path, name, layout="{}", **env):
    out = tmp_path / f"{name}.npz"
    here = str(Path(__file__).resolve().parent)
    run = subprocess.run(
        [sys.executable, "-c", TRAIN_IN_A_CHILD, str(out), here, layout], env=subprocess_env(**env),
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return np.load(out)


def has_avx512():
    """The AVX-512 subset parml's default asks for (OpenBLAS's SkylakeX kernels)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return False
    return all(f in flags for f in ("avx512f", "avx512dq", "avx512bw", "avx512vl"))


def test_onednn_products_agree_with_openblas_and_keep_every_promise(tmp_path):
    """Within float rounding of OpenBLAS's products; the same bits run to
    run, on 1 or 2 threads, and for dp 2 and pp 2 in deterministic mode."""
    openblas = child(tmp_path, "openblas", PARML_GEMM="openblas")
    onednn = child(tmp_path, "onednn", PARML_GEMM="onednn")
    np.testing.assert_allclose(onednn["losses"], openblas["losses"], rtol=1e-5)
    scale = np.abs(openblas["params"]).max()
    assert np.abs(onednn["params"] - openblas["params"]).max() <= 1e-5 * scale
    assert not np.array_equal(onednn["params"], openblas["params"]), "oneDNN ran no product"
    for name, layout, env in [("again", "{}", {"PARML_GEMM": "onednn"}), ("t2", "{'blas_threads': 2}", {"PARML_GEMM": "onednn"}),
                              ("dp2", "{'dp': 2}", {"PARML_GEMM": "onednn"}),
                              ("pp2", "{'pp': 2, 'micro_batches': 2}", {"PARML_GEMM": "onednn"})]:
        other = child(tmp_path, name, layout, **env)
        np.testing.assert_array_equal(other["losses"], onednn["losses"], err_msg=name)
        np.testing.assert_array_equal(other["params"], onednn["params"], err_msg=name)


def test_the_default_follows_the_cpu(tmp_path):
    """Unset, oneDNN runs them on a CPU with AVX-512 and OpenBLAS elsewhere
    (where OpenBLAS's kernels measured faster): the default's bits are one
    or the other's."""
    default = child(tmp_path, "default")
    expected = child(tmp_path, "expected", PARML_GEMM="onednn" if has_avx512() else "openblas")
    np.testing.assert_array_equal(default["losses"], expected["losses"])
    np.testing.assert_array_equal(default["params"], expected["params"])


def test_without_onednn_openblas_runs_everything(tmp_path):
    """The default on a host without libdnnl: OpenBLAS's bits."""
    missing = child(tmp_path, "missing", PARML_DNNL_LIBRARY="none")
    openblas = child(tmp_path, "openblas", PARML_GEMM="openblas")
    np.testing.assert_array_equal(missing["params"], openblas["params"])
    np.testing.assert_array_equal(missing["losses"], openblas["losses"])
