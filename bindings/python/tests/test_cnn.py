"""conv2d, max_pool2d, avg_pool2d and global_avg_pool from Python (issue 18,
part 1): the classes come from the kinds query and take PyTorch's
arguments; a tiny CNN trains as PyTorch trains it from the same weights,
exports to ONNX what onnxruntime computes, and trains under dp and pp
bit for bit as serially. Under tp a conv2d pair is split by channels (the
column/row pair of Linear) and matches serial training within the tp
tolerance; grouped convolutions are replicated."""

from __future__ import annotations

import ctypes.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import subprocess_env
from test_attention import TP_TOLERANCE, relative_difference

import parml


def tiny_cnn(seed=3, classes=3):
    return parml.Sequential(
        [
            parml.Conv2d(1, 4, 3, padding=1),
            parml.ReLU(),
            parml.MaxPool2d(2),
            parml.Conv2d(4, 6, (3, 2), stride=(1, 2), padding=(2, 1), dilation=(2, 1), groups=2),
            parml.ReLU(),
            parml.AvgPool2d(3, stride=1, padding=1),
            parml.GlobalAvgPool2d(),
            parml.Linear(6, classes),
        ],
        seed=seed,
    )


def batch(n=8, seed=0, classes=3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 1, 10, 9)).astype(np.float32), rng.integers(0, classes, size=n)


def torch_cnn(torch, classes=3):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, (3, 2), stride=(1, 2), padding=(2, 1), dilation=(2, 1), groups=2),
        nn.ReLU(),
        nn.AvgPool2d(3, stride=1, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, classes),
    )


def torch_name(name):
    return "8." + name[2:] if name.startswith("7.") else name


def test_classes_from_the_kinds_query(tmp_path):
    conv = parml.Conv2d(3, 8, 5, padding=2)
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding) == (3, 8, (5,), (1, 1), (2,))
    assert (conv.dilation, conv.groups, conv.bias) == ((1, 1), 1, True)
    assert parml.MaxPool2d(2).stride == () and parml.MaxPool2d(2, None).stride == ()
    assert parml.AvgPool2d((2, 3), 1).count_include_pad is True
    assert "groups" in parml.Conv2d.__doc__ and "kernel_size" in parml.MaxPool2d.__doc__
    with pytest.raises(parml.InvalidArgumentError, match=r"conv2d\(6→4\): groups \(4\) must divide in_channels \(6\)"):
        parml.Sequential([parml.Conv2d(6, 4, 3, groups=4)])
    with pytest.raises(parml.InvalidArgumentError, match="max_pool2d: padding 2x2 must be at most half the kernel 3x3"):
        parml.Sequential([parml.MaxPool2d(3, padding=2)])
    with parml.Sequential([parml.Conv2d(1, 2, 3)], seed=1) as m:
        with pytest.raises(parml.ShapeError, match=r"expects input \(N, 1, H, W\)"):
            m.predict(np.zeros((2, 3, 8, 8), np.float32))
    with tiny_cnn() as m:
        assert m.parameter_shapes["0.weight"] == (4, 1, 3, 3) and m.parameter_shapes["3.weight"] == (6, 2, 3, 2)
        m.save(tmp_path / "cnn.pb")
        with parml.Model.load(tmp_path / "cnn.pb") as back:
            summary = back.summary()
            assert "conv2d in_channels=4 out_channels=6 kernel_size=[3,2] stride=[1,2] padding=[2,1] dilation=[2,1] groups=2" in summary
            assert "max_pool2d kernel_size=[2,2] stride=[2,2] padding=[0,0]" in summary
            x, _ = batch()
            np.testing.assert_array_equal(back.predict(x), m.predict(x))


def test_trains_as_torch_does_from_the_same_weights():
    """Five SGD-momentum steps on cross-entropy: the loss of every step and
    the parameters afterwards agree with PyTorch's (float32 both; the sums
    run in other orders, so within 1e-5)."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    lr, momentum, steps = 0.1, 0.9, 5
    batches = [batch(8, seed=k) for k in range(steps)]
    with tiny_cnn() as model:
        ref = torch_cnn(torch)
        start = model.state_dict()
        # torch's Flatten before the Linear shifts its index by one.
        ref.load_state_dict({torch_name(k): torch.from_numpy(v) for k, v in start.items()})
        opt = torch.optim.SGD(ref.parameters(), lr=lr, momentum=momentum)
        want = []
        for x, y in batches:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(ref(torch.from_numpy(x)), torch.from_numpy(y))
            loss.backward()
            opt.step()
            want.append(loss.item())
        with parml.Trainer(model, optimizer=parml.SGD(lr, momentum)) as trainer:
            got = [trainer.step(x, y) for x, y in batches]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
        assert want[-1] < want[0]
        after = model.state_dict()
        for name, p in after.items():
            np.testing.assert_allclose(p, ref.state_dict()[torch_name(name)].numpy(), rtol=0, atol=1e-5, err_msg=name)


def test_forward_matches_torch_on_odd_shapes():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    rng = np.random.default_rng(1)
    cases = [
        (parml.Conv2d(4, 6, 3, stride=2, padding=3, groups=2, bias=False), nn.Conv2d(4, 6, 3, stride=2, padding=3, groups=2, bias=False)),
        (parml.Conv2d(4, 4, (2, 3), dilation=2, groups=4), nn.Conv2d(4, 4, (2, 3), dilation=2, groups=4)),
        (parml.MaxPool2d(3, stride=2, padding=1), nn.MaxPool2d(3, stride=2, padding=1)),
        (parml.AvgPool2d((3, 2), stride=(2, 1), padding=1, count_include_pad=False),
         nn.AvgPool2d((3, 2), stride=(2, 1), padding=1, count_include_pad=False)),
        (parml.AvgPool2d(2, padding=1), nn.AvgPool2d(2, padding=1)),
    ]
    x = rng.normal(size=(3, 4, 9, 7)).astype(np.float32)
    for layer, ref in cases:
        with parml.Sequential([layer], seed=2) as m:
            state = m.state_dict()
            ref.load_state_dict({k.split(".", 1)[1]: torch.from_numpy(v) for k, v in state.items()})
            with torch.no_grad():
                np.testing.assert_allclose(m.predict(x), ref(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-6, err_msg=repr(layer))


def test_onnx_export_matches_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    with tiny_cnn() as model:
        with parml.Trainer(model, optimizer=parml.SGD(0.1, 0.9)) as trainer:
            for k in range(3):
                trainer.step(*batch(8, seed=k))
        model.export_onnx(tmp_path / "cnn.onnx", input_shape=(2, 1, 10, 9))
        session = ort.InferenceSession(str(tmp_path / "cnn.onnx"), providers=["CPUExecutionProvider"])
        for n in (1, 5):
            x, _ = batch(n, seed=10 + n)
            (out,) = session.run(["output"], {"input": x})
            assert out.shape == (n, 3)
            np.testing.assert_allclose(out, model.predict(x), rtol=1e-4, atol=1e-4)


def train(strategy, steps=4):
    with tiny_cnn() as model, parml.Trainer(model, optimizer=parml.SGD(0.1, 0.9), strategy=strategy) as t:
        losses = [t.step(*batch(8, seed=k)) for k in range(steps)]
        return losses, model.state_dict(), t.plan()


@pytest.mark.parametrize("backend", ["onednn", "im2col"])
@pytest.mark.parametrize("layout", [dict(dp=2), dict(pp=2, micro_batches=2), dict(dp=2, pp=2, micro_batches=2, zero=1)])
def test_dp_and_pp_are_serial_bit_for_bit(layout, backend, monkeypatch):
    # conv2d layers read PARML_CONV when they are made.
    monkeypatch.setenv("PARML_CONV", backend)
    serial_losses, serial, _ = train(parml.Strategy(deterministic=True))
    losses, split, _ = train(parml.Strategy(deterministic=True, **layout))
    assert losses == serial_losses
    for name in serial:
        np.testing.assert_array_equal(split[name], serial[name], err_msg=name)


def test_tp_replicates_grouped_convolutions():
    """A grouped convolution is not split by tensor parallelism, nor the
    convolution that would pair with it: every tp rank runs them whole, the
    plan says so (and why), and training matches serial."""
    serial_losses, serial, _ = train(parml.Strategy(deterministic=True))
    losses, split, plan = train(parml.Strategy(deterministic=True, tp=2))
    assert "conv2d(1→4, 3x3) replicated (whole on every tp rank)" in plan, plan
    assert "conv2d(4→6, 3x2) replicated (whole on every tp rank): groups=2 convolutions are not split" in plan, plan
    np.testing.assert_allclose(losses, serial_losses, rtol=1e-6, atol=1e-6)
    for name in serial:
        np.testing.assert_allclose(split[name], serial[name], rtol=0, atol=1e-6, err_msg=name)


def pair_cnn(seed=3, classes=3):
    """conv(1→8)–ReLU–max pool–dropout–conv(8→6)–ReLU–global pool–linear:
    the two convolutions form a tp pair with three layers between them."""
    return parml.Sequential(
        [
            parml.Conv2d(1, 8, 3, padding=1),
            parml.ReLU(),
            parml.MaxPool2d(2),
            parml.Dropout(0.2),
            parml.Conv2d(8, 6, 3, padding=1),
            parml.ReLU(),
            parml.GlobalAvgPool2d(),
            parml.Linear(6, classes),
        ],
        seed=seed,
    )


def train_pair(strategy, steps=4):
    with pair_cnn() as model, parml.Trainer(model, optimizer=parml.SGD(0.1, 0.9), strategy=strategy) as t:
        losses = [t.step(*batch(16, seed=k)) for k in range(steps)]
        return losses, model.state_dict(), t.plan()


@pytest.mark.parametrize("backend", ["onednn", "im2col"])
def test_tp_splits_a_convolution_pair(backend, monkeypatch):
    """tp 2 and 4, alone and with dp 2 or pp 2 (the stage boundary between
    the pair's halves), against serial training: within TP_TOLERANCE per
    step (docs/model-parallel.md), in deterministic mode; the plan says
    which convolution is split which way."""
    monkeypatch.setenv("PARML_CONV", backend)
    serial_losses, serial, _ = train_pair(parml.Strategy(deterministic=True, seed=5))
    for layout in [dict(tp=2), dict(tp=4), dict(tp=2, dp=2), dict(tp=2, pp=2, micro_batches=2), dict(tp=2, dp=2, pp=2, zero=1)]:
        losses, split, plan = train_pair(parml.Strategy(deterministic=True, seed=5, **layout))
        per_rank = 8 // layout["tp"]
        assert f"0: column-parallel conv2d(1→8, 3x3), {per_rank} output channels per rank" in plan, plan
        assert f"2: max_pool2d on each rank's {per_rank} of 8 channels" in plan, plan
        assert f"4: row-parallel conv2d(8→6, 3x3), {per_rank} input channels per rank" in plan, plan
        np.testing.assert_allclose(losses, serial_losses, rtol=1e-5)
        assert relative_difference(split, serial) <= TP_TOLERANCE * len(losses), layout


def test_checkpoint_saved_under_conv_tp_loads_serially(tmp_path):
    """The convolution slices go back to the whole host model: a serial
    trainer resumes a tp 2 checkpoint with its bits and goes on as tp
    training does (within the tp tolerance), the file loads as a model
    that predicts what the tp host predicts, and tp 4 resumes the serial
    checkpoint with its bits."""
    x, _ = batch(5, seed=20)

    def trainer(model, tp):
        return parml.Trainer(model, optimizer=parml.SGD(0.1, 0.9), strategy=parml.Strategy(deterministic=True, seed=6, tp=tp))

    with pair_cnn() as m1, trainer(m1, 2) as t1:
        for k in range(2):
            t1.step(*batch(16, seed=k))
        t1.save_checkpoint(tmp_path / "tp.ckpt")
        saved, predicted = m1.parameters, m1.predict(x)
        for k in range(2, 4):
            t1.step(*batch(16, seed=k))
        tp_after = m1.state_dict()
    with pair_cnn(seed=99) as m2, trainer(m2, 1) as t2:
        t2.load_checkpoint(tmp_path / "tp.ckpt")
        np.testing.assert_array_equal(m2.parameters, saved)
        np.testing.assert_array_equal(m2.predict(x), predicted)
        for k in range(2, 4):
            t2.step(*batch(16, seed=k))
        assert relative_difference(m2.state_dict(), tp_after) <= TP_TOLERANCE * 4
        t2.save_checkpoint(tmp_path / "serial.ckpt")
        serial_after = m2.parameters
    with parml.Model.load(tmp_path / "tp.ckpt") as m3:
        np.testing.assert_array_equal(m3.predict(x), predicted)
    with pair_cnn(seed=98) as m4, trainer(m4, 4) as t4:
        t4.load_checkpoint(tmp_path / "serial.ckpt")
        np.testing.assert_array_equal(m4.parameters, serial_after)


def test_tp_must_divide_the_channels():
    with pair_cnn() as model:
        with pytest.raises(parml.InvalidArgumentError, match=r"layer 0 conv2d\(1→8, 3x3\) and layer 4 conv2d\(8→6, 3x3\) .*tp=3 does not divide the 8 channels"):
            parml.Trainer(model, strategy=parml.Strategy(tp=3))


def test_two_threads_are_reproducible(monkeypatch):
    """oneDNN (the default) splits its work over two OpenMP threads the same
    way each run, as OpenBLAS does: two runs give the same bits."""
    first = train(parml.Strategy(blas_threads=2))
    again = train(parml.Strategy(blas_threads=2))
    assert first[0] == again[0]
    for name in first[1]:
        np.testing.assert_array_equal(again[1][name], first[1][name], err_msg=name)


TRAIN_IN_A_CHILD = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[2])
from test_cnn import train
import parml
losses, state, _ = train(parml.Strategy(deterministic=True))
mapped = "libdnnl" in open("/proc/self/maps").read()
np.savez(sys.argv[1], losses=np.array(losses), dnnl_mapped=np.array(mapped), **state)
"""


def test_without_onednn_training_runs_im2col(tmp_path):
    """A host without libdnnl.so.2 (PARML_DNNL_LIBRARY=none makes the loader
    fail) trains with im2col: the same bits as PARML_CONV=im2col, and within
    rounding of oneDNN's run. oneDNN loads once per process: fresh children."""
    if not ctypes.util.find_library("dnnl"):  # looks, does not load it here
        pytest.skip("oneDNN (libdnnl.so.2) is not installed here: nothing to compare the fallback with")
    here = str(Path(__file__).resolve().parent)

    def child(name, **env):
        out = tmp_path / f"{name}.npz"
        run = subprocess.run(
            [sys.executable, "-c", TRAIN_IN_A_CHILD, str(out), here], env=subprocess_env(**env), capture_output=True, text=True,
            timeout=120)
        assert run.returncode == 0, run.stderr
        return np.load(out)

    missing = child("missing", PARML_DNNL_LIBRARY="none", PARML_CONV="onednn")
    im2col = child("im2col", PARML_CONV="im2col")
    onednn = child("onednn", PARML_CONV="onednn")
    # oneDNN was loaded where it ran and only there.
    assert [bool(r["dnnl_mapped"]) for r in (missing, im2col, onednn)] == [False, False, True]
    names = [n for n in im2col.files if n != "dnnl_mapped"]
    assert set(missing.files) == set(im2col.files) and "losses" in names
    assert any(not np.array_equal(onednn[name], im2col[name]) for name in names), "oneDNN gave im2col's bits"
    for name in names:
        np.testing.assert_array_equal(missing[name], im2col[name], err_msg=name)
        np.testing.assert_allclose(onednn[name], im2col[name], rtol=1e-5, atol=1e-6, err_msg=name)
