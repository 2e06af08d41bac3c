"""Model files, tensor messages and checkpoints through the bindings."""

from __future__ import annotations

import numpy as np
import pytest

import parml


def every_kind(seed: int) -> parml.Sequential:
    return parml.Sequential(
        [
            parml.Flatten(),
            parml.Linear(12, 16),
            parml.ReLU(),
            parml.Residual([parml.LayerNorm(16, eps=1e-3), parml.Residual([parml.Linear(16, 16, bias=False), parml.GELU()]), parml.Dropout(0.2)]),
            parml.Tanh(),
            parml.Linear(16, 4),
            parml.Sigmoid(),
        ],
        seed=seed,
    )


def assert_same_bits(got: np.ndarray, want: np.ndarray) -> None:
    """Bit-exact means bits: value equality calls NaN equal to NaN and -0.0
    equal to 0.0, so float32 arrays are compared as their uint32 patterns,
    and a reference that is not finite (a run that diverged on both sides)
    proves nothing."""
    got, want = np.ascontiguousarray(got), np.ascontiguousarray(want)
    assert got.dtype == want.dtype == np.float32 and got.shape == want.shape
    assert np.isfinite(want).all(), "the reference is not finite"
    differ = np.flatnonzero(got.view(np.uint32) != want.view(np.uint32))
    assert differ.size == 0, (
        f"{differ.size} of {got.size} values differ in their bits; first at {differ[0]}: "
        f"{got.flat[differ[0]]!r} (0x{got.view(np.uint32).flat[differ[0]]:08x}) vs "
        f"{want.flat[differ[0]]!r} (0x{want.view(np.uint32).flat[differ[0]]:08x})"
    )


def batch(step: int, n: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(100 + step)
    return rng.normal(size=(n, 3, 4)).astype(np.float32), (np.arange(n) * 7 + step) % 4


def test_model_save_load_and_bytes(tmp_path):
    x, _ = batch(0)
    with every_kind(5) as model:
        path = tmp_path / "model.pb"
        model.save(path)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pb"]
        assert model.to_bytes() == path.read_bytes()
        for back in (parml.Model.load(path), parml.Model.from_bytes(path.read_bytes())):
            with back:
                assert back.initialized
                assert back.summary() == model.summary()
                assert_same_bits(back.parameters, model.parameters)
                assert_same_bits(back.predict(x), model.predict(x))



def bf16_reference(a: np.ndarray) -> np.ndarray:
    """float32 rounded to bfloat16 (nearest even, subnormals to zero) and
    widened back, from the format's description."""
    b = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
    rounded = np.where((b & 0x7F800000) == 0, (b & 0x80000000).astype(np.uint32), rounded)
    return rounded.view(np.float32)


def test_bfloat16_model_files_hold_the_rounded_weights_in_half_the_bytes(tmp_path):
    model = parml.Sequential([parml.Linear(64, 128), parml.GELU(), parml.Linear(128, 10)], seed=4)
    with model:
        whole, half = model.to_bytes(), model.to_bytes(weights="bfloat16")
        n = model.parameters.size
        assert len(half) == len(whole) - 2 * n
        model.save(tmp_path / "half.pb", weights="bfloat16")
        assert (tmp_path / "half.pb").read_bytes() == half
        with parml.Model.from_bytes(half) as back:
            assert_same_bits(back.parameters, bf16_reference(model.parameters))
            try:
                import torch
            except ImportError:
                torch = None
            if torch is not None:  # PyTorch's own float32 -> bfloat16 conversion agrees
                t = torch.from_numpy(model.parameters.copy()).to(torch.bfloat16).float().numpy()
                assert_same_bits(back.parameters, t)
            assert back.to_bytes(weights="bfloat16") == half
        key = b"py-bf16-key-0123456789abcdef"
        keyed = model.to_bytes(key=key, weights="bfloat16")
        with pytest.raises(parml.WrongKeyError):
            parml.Model.from_bytes(keyed)
        with parml.Model.from_bytes(keyed, key=key) as back:
            assert_same_bits(back.parameters, bf16_reference(model.parameters))
        with pytest.raises(ValueError, match="weights"):
            model.to_bytes(weights="float16")
        assert parml.file_info(tmp_path / "half.pb")["stored_weights"] == "bfloat16"


def test_bfloat16_model_files_read_with_protobuf(tmp_path, repo_root):
    """Another protobuf reader finds BFLOAT16 tensors holding the upper 16 bits."""
    import shutil
    import subprocess
    import sys

    pb = pytest.importorskip("google.protobuf")
    del pb
    if shutil.which("protoc") is None:
        pytest.skip("protoc is not installed")
    subprocess.run(["protoc", f"--python_out={tmp_path}", f"-I{repo_root / 'proto'}", str(repo_root / "proto" / "parml.proto")], check=True)
    sys.path.insert(0, str(tmp_path))
    try:
        import parml_pb2
    finally:
        sys.path.remove(str(tmp_path))
    with parml.Sequential([parml.Linear(8, 6), parml.ReLU(), parml.Linear(6, 3)], seed=2) as model:
        message = parml_pb2.Model()
        message.ParseFromString(model.to_bytes(weights="bfloat16"))
        tensors = [t for layer in message.layers for t in layer.parameters]
        assert [t.dtype for t in tensors] == [parml_pb2.Tensor.BFLOAT16] * 4
        halves = np.concatenate([np.frombuffer(t.data, dtype="<u2") for t in tensors])
        widened = (halves.astype(np.uint32) << 16).view(np.float32)
        assert_same_bits(widened, bf16_reference(model.parameters))


def test_tensor_bytes_round_trip():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7
    with parml.Tensor(a) as t, parml.Tensor.from_bytes(t.to_bytes()) as back:
        assert back.shape == (2, 3, 4)
        np.testing.assert_array_equal(back.numpy(), a)


def make_trainer(model: parml.Model, dp: int, zero: int) -> parml.Trainer:
    strategy = parml.Strategy(dp=dp, zero=zero, deterministic=True, grad_chunk=8, seed=3)
    return parml.Trainer(model, optimizer=parml.AdamW(1e-2), strategy=strategy)


def test_checkpoint_resumes_under_another_layout(tmp_path):
    with every_kind(5) as ref_model, make_trainer(ref_model, 1, 0) as ref:
        for k in range(4):
            ref.step(*batch(k))
        with every_kind(5) as m1, make_trainer(m1, 2, 1) as t1:
            for k in range(2):
                t1.step(*batch(k))
            t1.save_checkpoint(tmp_path / "c.ckpt")
            data = t1.checkpoint_bytes()
            saved = m1.parameters
        assert data == (tmp_path / "c.ckpt").read_bytes()
        with every_kind(99) as m2, make_trainer(m2, 3, 3) as t2:
            t2.load_checkpoint(tmp_path / "c.ckpt")
            assert t2.step_count == 2
            assert_same_bits(m2.parameters, saved)
            for k in range(2, 4):
                t2.step(*batch(k))
            assert_same_bits(m2.parameters, ref_model.parameters)
        with every_kind(7) as m3, make_trainer(m3, 1, 0) as t3:
            t3.load_checkpoint_bytes(data)
            assert t3.step_count == 2
            assert_same_bits(m3.parameters, saved)
        # A process with only the checkpoint gets the model out of it.
        with parml.Model.load(tmp_path / "c.ckpt") as m4, make_trainer(m4, 2, 2) as t4:
            t4.load_checkpoint(tmp_path / "c.ckpt")
            for k in range(2, 4):
                t4.step(*batch(k))
            assert_same_bits(m4.parameters, ref_model.parameters)


def test_fit_continues_the_data_order_across_calls_and_checkpoints(tmp_path):
    # Shuffled epochs: the order is a function of (seed, epoch), and the
    # trainer and its checkpoints carry the epoch, so fit(4) is fit(2) +
    # fit(2) and fit(2) + checkpoint + fit(2) under another layout, bit for bit.
    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 3, 4)).astype(np.float32)
    y = np.arange(40) % 4

    def bits(m: parml.Model) -> np.ndarray:
        return m.parameters.view(np.uint32)

    with every_kind(5) as whole_m, make_trainer(whole_m, 1, 0) as whole:
        whole.fit(x, y, epochs=4, batch_size=8, verbose=False)
        assert whole.epoch_count == 4
        with every_kind(5) as m, make_trainer(m, 1, 0) as t:
            t.fit(x, y, epochs=2, batch_size=8, verbose=False)
            t.fit(x, y, epochs=2, batch_size=8, verbose=False)
            np.testing.assert_array_equal(bits(m), bits(whole_m))
        with every_kind(5) as m1, make_trainer(m1, 2, 1) as t1:
            t1.fit(x, y, epochs=2, batch_size=8, verbose=False)
            t1.save_checkpoint(tmp_path / "fit.ckpt")
        with parml.Model.load(tmp_path / "fit.ckpt") as m2, make_trainer(m2, 1, 0) as t2:
            t2.load_checkpoint(tmp_path / "fit.ckpt")
            assert t2.epoch_count == 2
            t2.fit(x, y, epochs=2, batch_size=8, verbose=False)
            np.testing.assert_array_equal(bits(m2), bits(whole_m))


def test_bad_files_raise(tmp_path):
    junk = tmp_path / "junk.pb"
    junk.write_bytes(b"\x0a\x03abc" * 10)
    with pytest.raises(parml.FormatError, match="parml_model_load"):
        parml.Model.load(junk)
    with pytest.raises(parml.ParmlIOError):
        parml.Model.load(tmp_path / "missing.pb")
    with every_kind(1) as model:
        data = model.to_bytes()
        with pytest.raises(parml.FormatError, match="truncated"):
            parml.Model.from_bytes(data[:-9])
        with make_trainer(model, 1, 0) as t, pytest.raises(parml.FormatError):
            t.load_checkpoint_bytes(data)
    with pytest.raises(TypeError):
        parml.Model.from_bytes("not bytes")


# --- Between Python and a C host (issue 6): the same model, the same bits. ---

C_PREDICT = r"""
#include <stdio.h>
#include <stdlib.h>
#include "parml.h"
/* c_predict MODEL INPUTS N F OUT: loads MODEL, predicts the N x F float32
   inputs in INPUTS, writes the outputs (float32) to OUT. */
int main(int argc, char **argv) {
    if (argc != 6) return 2;
    long n = atol(argv[3]), f = atol(argv[4]);
    float *x = malloc((size_t)(n * f) * sizeof *x);
    FILE *in = fopen(argv[2], "rb");
    if (!in || fread(x, sizeof *x, (size_t)(n * f), in) != (size_t)(n * f)) return 3;
    fclose(in);
    parml_model m = NULL;
    parml_tensor xt = NULL, yt = NULL;
    int64_t dims[2] = {n, f}, count = 0;
    if (parml_model_load(argv[1], &m) || parml_tensor_create(dims, 2, x, &xt) || parml_model_predict(m, xt, &yt) ||
        parml_tensor_numel(yt, &count)) {
        fprintf(stderr, "c_predict: %s\n", parml_last_error());
        return 4;
    }
    float *y = malloc((size_t)count * sizeof *y);
    FILE *out = fopen(argv[5], "wb");
    if (parml_tensor_read(yt, y, count) || !out || fwrite(y, sizeof *y, (size_t)count, out) != (size_t)count) return 5;
    fclose(out);
    parml_tensor_free(xt);
    parml_tensor_free(yt);
    parml_model_free(m);
    free(x);
    free(y);
    return 0;
}
"""


def _compile(tmp_path, repo_root, source: str, name: str, include: str | None = None):
    """Builds a C host against include/ and the library this package loaded."""
    import os
    import shutil
    import subprocess

    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler is needed (tools/install-deps.sh installs build-essential's gcc)"
    lib_dir = os.path.dirname(os.path.abspath(str(parml.library_path)))
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    exe = tmp_path / name
    includes = ["-I", str(repo_root / "include")] + (["-I", include] if include else [])
    r = subprocess.run(
        [cc, "-std=c11", "-O1", *includes, str(src), "-L", lib_dir, "-lparml", "-lm", f"-Wl,-rpath,{lib_dir}",
         "-o", str(exe)],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr
    return exe


def test_python_trained_model_predicts_the_same_bits_in_a_c_host(tmp_path, repo_root):
    import subprocess

    x, y = batch(0, n=48)
    with every_kind(3) as model, parml.Trainer(model, optimizer=parml.Adam(1e-2)) as t:
        for k in range(4):
            xb, yb = batch(k, n=48)
            t.step(xb, yb)
        model.save(tmp_path / "from_python.pb")
        want = model.predict(x)
    flat = np.ascontiguousarray(x.reshape(48, 12))
    (tmp_path / "x.bin").write_bytes(flat.tobytes())
    exe = _compile(tmp_path, repo_root, C_PREDICT.replace("int64_t dims[2] = {n, f}", "int64_t dims[3] = {n, 3, 4}").replace("parml_tensor_create(dims, 2,", "parml_tensor_create(dims, 3,"), "c_predict")
    out = tmp_path / "y.bin"
    r = subprocess.run([str(exe), str(tmp_path / "from_python.pb"), str(tmp_path / "x.bin"), "48", "12", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = np.frombuffer(out.read_bytes(), dtype=np.float32).reshape(want.shape)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_c_trained_model_predicts_the_same_bits_in_python(tmp_path, repo_root):
    import subprocess

    exchange = repo_root / "tests" / "exchange"  # writer.c includes common.h from there
    writer = _compile(tmp_path, repo_root, (exchange / "writer.c").read_text(), "writer", include=str(exchange))
    r = subprocess.run(
        [str(writer), str(tmp_path / "from_c.pb"), str(tmp_path / "pred.bin"), str(tmp_path / "params.bin")],
        capture_output=True,
    )
    assert r.returncode == 0, r.stderr.decode()
    # common.h's probe: cosf((float)i * 0.61f) * 2.0f, with the C library's
    # cosf itself (numpy's float32 cos rounds differently).
    import ctypes

    cosf = ctypes.CDLL("libm.so.6").cosf
    cosf.argtypes, cosf.restype = [ctypes.c_float], ctypes.c_float
    args = np.arange(32 * 10, dtype=np.float32) * np.float32(0.61)
    probe = np.array([cosf(float(a)) for a in args], dtype=np.float32) * np.float32(2.0)
    with parml.Model.load(tmp_path / "from_c.pb") as model:
        got = model.predict(probe.reshape(32, 10))
    want = np.frombuffer((tmp_path / "pred.bin").read_bytes(), dtype=np.float32).reshape(got.shape)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_parameters_by_name_follow_pytorch_state_dict_keys():
    with every_kind(5) as model:
        shapes = model.parameter_shapes
        assert list(shapes) == ["1.weight", "1.bias", "3.0.weight", "3.0.bias", "3.1.0.weight", "5.weight", "5.bias"]
        assert shapes["1.weight"] == (16, 12) and shapes["5.bias"] == (4,)
        state = model.state_dict()
        flat = np.concatenate([a.ravel() for a in state.values()])
        np.testing.assert_array_equal(flat.view(np.uint32), model.parameters.view(np.uint32))
        # Load changed weights by name: exactly those move.
        state["3.1.0.weight"] = state["3.1.0.weight"] * 0.5
        model.load_state_dict(state)
        again = model.state_dict()
        for name in state:
            np.testing.assert_array_equal(again[name].view(np.uint32), state[name].view(np.uint32))
        before = model.parameters.copy()
        with pytest.raises(KeyError, match="missing"):
            model.load_state_dict({"1.weight": state["1.weight"]})
        with pytest.raises(ValueError, match="shape"):
            model.load_state_dict({**state, "5.bias": np.zeros(5, np.float32)})
        with pytest.raises(ValueError, match="NaN"):
            model.load_state_dict({**state, "1.bias": np.full(16, np.nan, np.float32)})
        np.testing.assert_array_equal(model.parameters, before)
        with pytest.raises(KeyError, match="no parameter named '3.weight'"):
            model.load_state_dict({"3.weight": state["3.0.weight"]}, strict=False)


def test_a_state_dict_computes_what_the_torch_layout_says():
    # Linear weights are (out, in) as torch stores them: the forward pass
    # written with numpy from the named tensors is the model's.
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5, 8)).astype(np.float32)
    with parml.Sequential([parml.Linear(8, 6), parml.ReLU(), parml.Linear(6, 3)], seed=4) as model:
        s = model.state_dict()
        h = np.maximum(x @ s["0.weight"].T + s["0.bias"], 0)
        np.testing.assert_allclose(model.predict(x), h @ s["2.weight"].T + s["2.bias"], rtol=1e-5, atol=1e-6)
        torch = pytest.importorskip("torch")
        net = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
        net.load_state_dict({k: torch.from_numpy(v) for k, v in s.items()})
        with torch.no_grad():
            np.testing.assert_allclose(model.predict(x), net(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-6)
        # And back: weights trained elsewhere, loaded by name.
        model.load_state_dict({k: v.detach().numpy() * 2 for k, v in net.state_dict().items()})
        np.testing.assert_array_equal(model.state_dict()["2.bias"], s["2.bias"] * 2)
