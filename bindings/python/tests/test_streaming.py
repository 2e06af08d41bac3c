"""Sharded datasets streamed from disk (parml.open_shards,
parml_dataset_open_shards; docs/data.md "Streaming"): what trains from a
stream equals what trains from memory, epochs are reproducible
permutations, and bad shards are refused before anything is open."""

from __future__ import annotations

import importlib.util
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

import parml

N, F, C = 300, 6, 5
ROOT = Path(__file__).resolve().parents[3]


def make_shards_tool():
    spec = importlib.util.spec_from_file_location("make_shards", ROOT / "tools" / "make_shards.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def data(dtype="float32"):
    rng = np.random.default_rng(11)
    y = rng.integers(0, C, N).astype(np.int64)
    x = rng.normal(size=(N, F)).astype(np.float32) + y[:, None]
    if dtype == "uint8":
        x = rng.integers(0, 256, (N, F)).astype(np.uint8)
    return x.astype(dtype), y


def write(tmp_path: Path, x, y, rows=70, fmt="npy") -> Path:
    step = rows
    parts = ((x[i : i + step], y[i : i + step]) for i in range(0, len(x), step))
    make_shards_tool().write_shards(
        tmp_path, parts, fmt, f"inputs {x.dtype.name} {' '.join(map(str, x.shape[1:]))}", f"targets {y.dtype.name}"
    )
    return tmp_path


def trainer():
    model = parml.Sequential([parml.Linear(F, 16), parml.ReLU(), parml.Linear(16, C)], seed=4)
    return parml.Trainer(model, optimizer=parml.SGD(0.05, momentum=0.9), strategy=parml.Strategy(seed=3))


@pytest.mark.parametrize("fmt", ["npy", "npz"])
def test_a_stream_in_file_order_trains_exactly_as_memory_does(tmp_path, fmt):
    x, y = data()
    write(tmp_path, x, y, fmt=fmt)
    with trainer() as a, trainer() as b, parml.open_shards(tmp_path, shuffle_buffer=1, prefetch_rows=50) as s:
        assert len(s) == N and s.input_shape == (N, F) and s.num_classes == C
        ha = a.fit(s, epochs=3, batch_size=32, verbose=False)
        hb = b.fit(x, y, epochs=3, batch_size=32, shuffle=False, verbose=False)
        assert [m.train_loss for m in ha.epochs] == [m.train_loss for m in hb.epochs]
        assert a.evaluate(s).loss == b.evaluate(x, y).loss


def test_uint8_inputs_are_scaled_as_the_npy_loader_scales_them(tmp_path):
    x, y = data("uint8")
    write(tmp_path, x, y, rows=128)
    with trainer() as t, parml.open_shards(tmp_path, seed=1, shuffle_buffer=64) as s:
        # Evaluate sums over every sample once, in any order: the same mean, up to rounding.
        assert t.evaluate(s, batch_size=50).loss == pytest.approx(t.evaluate(x.astype(np.float32) / 255, y).loss, rel=1e-6)


def test_shuffled_epochs_are_reproducible_from_the_seed(tmp_path):
    x, y = data()
    write(tmp_path, x, y)

    def losses(seed):
        with trainer() as t, parml.open_shards(tmp_path, seed=seed, shuffle_buffer=40) as s:
            return [m.train_loss for m in t.fit(s, epochs=2, batch_size=25, verbose=False).epochs]

    first = losses(7)
    assert losses(7) == first
    assert losses(8) != first
    with trainer() as t:
        in_order = [m.train_loss for m in t.fit(x, y, epochs=2, batch_size=25, shuffle=False, verbose=False).epochs]
    assert in_order != first


def test_ranks_take_their_own_shards(tmp_path):
    x, y = data()
    write(tmp_path, x, y, rows=100)  # shards of 100, 100, 100
    with parml.open_shards(tmp_path, rank=0, ranks=2) as a, parml.open_shards(tmp_path, rank=1, ranks=2) as b:
        assert (len(a), len(b)) == (200, 100)
    with parml.open_shards(tmp_path, rank=3, ranks=4) as none, trainer() as t:
        assert len(none) == 0 and none.input_shape == (0, F)
        with pytest.raises(parml.InvalidArgumentError, match="0 samples make no batch"):
            t.fit(none, epochs=1, verbose=False)


def test_the_make_shards_tool_writes_a_synthetic_dataset(tmp_path):
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "make_shards.py"), str(tmp_path), "--synthetic", "250", "--rows-per-shard", "100",
         "--dims", "4", "3", "--classes", "3"],
        check=True, capture_output=True,
    )
    text = (tmp_path / "manifest.txt").read_text().split("\n")
    assert text[:3] == ["parml-shards 1", "inputs uint8 4 3", "targets uint8"]
    with parml.open_shards(tmp_path) as s:
        assert len(s) == 250 and s.input_shape == (250, 4, 3) and s.num_classes == 3


def mapped_paths() -> str:
    return Path("/proc/self/maps").read_text()


def refused(tmp_path: Path, error, match: str):
    fds = len(os.listdir("/proc/self/fd"))
    with pytest.raises(error, match=match):
        parml.open_shards(tmp_path)
    # Nothing half-loaded: no shard stays mapped or open.
    assert str(tmp_path) not in mapped_paths()
    assert len(os.listdir("/proc/self/fd")) == fds


def test_a_manifest_naming_a_missing_shard_is_refused(tmp_path):
    x, y = data()
    write(tmp_path, x, y)
    (tmp_path / "x_00002.npy").unlink()
    refused(tmp_path, parml.ParmlIOError, r"manifest.txt:6: the manifest names a shard that cannot be read.*x_00002.npy")


def test_a_truncated_shard_is_refused(tmp_path):
    x, y = data()
    write(tmp_path, x, y)
    p = tmp_path / "x_00001.npy"
    p.write_bytes(p.read_bytes()[:-10])
    refused(tmp_path, parml.FormatError, r"x_00001.npy: truncated")


def test_a_header_that_lies_about_the_size_is_refused(tmp_path):
    x, y = data()
    write(tmp_path, x, y)
    p = tmp_path / "x_00003.npy"
    p.write_bytes(p.read_bytes().replace(b"(70, 6)", b"(60, 6)"))
    refused(tmp_path, parml.FormatError, r"x_00003.npy: 240 bytes after the data")


def test_a_shard_of_the_wrong_dtype_is_refused(tmp_path):
    x, y = data()
    write(tmp_path, x, y)
    np.save(tmp_path / "x_00001.npy", x[70:140].astype(np.float64))
    refused(tmp_path, parml.FormatError, r"x_00001.npy: inputs are float64 .* the manifest .* says float32")


def test_rows_that_disagree_with_the_manifest_are_refused(tmp_path):
    x, y = data()
    write(tmp_path, x, y)
    m = tmp_path / "manifest.txt"
    m.write_text(m.read_text().replace("y_00000.npy 70", "y_00000.npy 71"))
    refused(tmp_path, parml.FormatError, r"manifest.txt:4: the manifest says 71 rows")


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "empty manifest"),
        ("shard x.npy y.npy 3\n", "starts with 'parml-shards 1'"),
        ("parml-shards 2\n", "expected 'parml-shards 1'"),
        ("parml-shards 1\n", "names no shard"),
        ("parml-shards 1\ninputs float33 3\n", "'float33' is not an element type"),
        ("parml-shards 1\nshard x.npy y.npy many\n", "expected 'shard INPUTS.npy"),
        ("parml-shards 1\nwhatever\n", "unknown statement 'whatever'"),
    ],
)
def test_bad_manifests_name_the_line(tmp_path, text, match):
    (tmp_path / "manifest.txt").write_text(text)
    refused(tmp_path, parml.FormatError, match)


def test_compressed_npz_shards_and_wide_integer_inputs_are_refused(tmp_path):
    x, y = data()
    np.savez_compressed(tmp_path / "part.npz", x=x, y=y)
    (tmp_path / "manifest.txt").write_text(f"parml-shards 1\nshard part.npz {N}\n")
    refused(tmp_path, parml.UnsupportedError, "a compressed member cannot be streamed")
    np.savez(tmp_path / "part.npz", x=x.astype(np.int32), y=y)
    refused(tmp_path, parml.UnsupportedError, "int32 inputs are not streamed")
    with zipfile.ZipFile(tmp_path / "part.npz") as z:
        assert sorted(z.namelist()) == ["x.npy", "y.npy"]


def test_bad_arguments(tmp_path):
    x, y = data()
    write(tmp_path, x, y)
    for kwargs in ({"shuffle_buffer": 0}, {"prefetch_rows": -1}, {"rank": 2, "ranks": 2}, {"ranks": 0}):
        with pytest.raises(parml.InvalidArgumentError):
            parml.open_shards(tmp_path, **kwargs)
    with pytest.raises(parml.InvalidArgumentError, match="weighted sampling needs a dataset in memory|class-balanced"):
        with trainer() as t, parml.open_shards(tmp_path) as s:
            t.fit(s, epochs=1, class_sampling=[1.0] * C, verbose=False)


def test_local_data_needs_the_mpi_backend():
    # Uneven local data under MPI: tests/mpi/py_local_data.py (run_mpi_tests.sh).
    with trainer() as t, pytest.raises(parml.InvalidArgumentError, match="local data needs the MPI backend"):
        t.set_local_data()
