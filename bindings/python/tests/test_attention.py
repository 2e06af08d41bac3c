"""causal_self_attention from Python: the class comes from the kinds query,
it matches nanoGPT's CausalSelfAttention in PyTorch (forward, the input
gradient and every parameter gradient, through an SGD step), and a model
with attention in residual blocks trains under dp=2, tp=2 and pp=2 as it
does serially. Under tp the attention is split by heads (Megatron): tp 2
and 4 match serial within the documented tp tolerance (docs/model-parallel.md:
largest |Δ| / largest |θ| ≤ 2e-6 × steps), attention dropout included."""

from __future__ import annotations

import math

import numpy as np
import pytest

import parml


def test_class_from_the_kinds_query(tmp_path):
    layer = parml.CausalSelfAttention(16, 4)
    assert (layer.features, layer.heads, layer.bias, layer.dropout) == (16, 4, True, 0.0)
    assert "heads" in parml.CausalSelfAttention.__doc__
    with pytest.raises(parml.InvalidArgumentError, match=r"causal_self_attention: heads \(3\) must divide features \(16\)"):
        parml.Sequential([parml.CausalSelfAttention(16, 3)])
    with pytest.raises(parml.ShapeError, match=r"expects input \(B, T, 16\)"):
        with parml.Sequential([parml.CausalSelfAttention(16, 4)]) as m:
            m.predict(np.zeros((2, 16), np.float32))
    with parml.Sequential([parml.CausalSelfAttention(16, 4, bias=False)], seed=2) as m:
        assert list(m.state_dict()) == ["0.c_attn.weight", "0.c_proj.weight"]
        assert m.parameter_shapes == {"0.c_attn.weight": (48, 16), "0.c_proj.weight": (16, 16)}
        x = np.random.default_rng(0).normal(size=(3, 5, 16)).astype(np.float32)
        m.save(tmp_path / "m.pb")
        with parml.Model.load(tmp_path / "m.pb") as back:
            assert "causal_self_attention features=16 heads=4 bias=false dropout=0.0" in back.summary()
            np.testing.assert_array_equal(back.predict(x), m.predict(x))


def torch_attention(torch, features, heads, bias):
    """nanoGPT's CausalSelfAttention (model.py), attention and residual dropout 0."""
    F = torch.nn.functional

    class CausalSelfAttention(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = torch.nn.Linear(features, 3 * features, bias=bias)
            self.c_proj = torch.nn.Linear(features, features, bias=bias)
            self.n_head = heads

        def forward(self, x):
            B, T, C = x.size()
            q, k, v = self.c_attn(x).split(C, dim=2)
            k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0, is_causal=True)
            y = y.transpose(1, 2).contiguous().view(B, T, C)
            return self.c_proj(y)

    return CausalSelfAttention()


@pytest.mark.parametrize(
    "b,t,c,heads,bias", [(4, 6, 16, 4, True), (3, 5, 12, 2, False), (2, 1, 8, 1, True), (12, 64, 128, 4, True)]
)
def test_matches_nanogpt_in_torch(b, t, c, heads, bias):
    """A Linear before the attention makes its input gradient visible: the
    Linear's weight gradient is dxᵀ·x. One SGD step (lr 0.1) on the MSE loss;
    (start − after)/lr is each parameter's gradient."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    rng = np.random.default_rng(b * 100 + t)
    x = rng.normal(size=(b, t, c)).astype(np.float32)
    y = rng.normal(size=(b, t, c)).astype(np.float32)
    lr = 0.1
    with parml.Sequential([parml.Linear(c, c), parml.CausalSelfAttention(c, heads, bias=bias)], seed=7) as model:
        start = model.state_dict()
        ref = torch.nn.Sequential(torch.nn.Linear(c, c), torch_attention(torch, c, heads, bias))
        ref.load_state_dict({k: torch.from_numpy(v) for k, v in start.items()})
        assert list(ref.state_dict()) == list(start)
        xt = torch.from_numpy(x)
        out = ref(xt)
        np.testing.assert_allclose(model.predict(x), out.detach().numpy(), rtol=1e-5, atol=2e-6)
        torch.nn.functional.mse_loss(out, torch.from_numpy(y)).backward()
        with parml.Trainer(model, loss="mse", optimizer=parml.SGD(lr)) as tr:
            tr.step(x, y)
        after = model.state_dict()
    for name, p in ref.named_parameters():
        want = p.grad.numpy()
        got = (start[name].astype(np.float64) - after[name]) / lr
        # float32 parameters of size ~1 hold a step lr·g to about 6e-8/lr = 6e-7.
        scale = np.abs(want).max()
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 + 1e-4 * scale, err_msg=name)
        assert scale > 1e-5, name


def block_model(seed=3, dropout=0.1):
    c = 16
    return parml.Sequential(
        [
            parml.Linear(8, c),
            parml.Residual([parml.LayerNorm(c), parml.CausalSelfAttention(c, 4, dropout=dropout), parml.Dropout(dropout)]),
            parml.Residual([parml.LayerNorm(c), parml.Linear(c, 4 * c), parml.GELU(), parml.Linear(4 * c, c)]),
            parml.Residual([parml.LayerNorm(c), parml.CausalSelfAttention(c, 2, bias=False)]),
            parml.LayerNorm(c),
            parml.Linear(c, 8),
        ],
        seed=seed,
    )


def train(strategy, steps=4):
    rng = np.random.default_rng(11)
    x = rng.normal(size=(8, 6, 8)).astype(np.float32)
    y = rng.normal(size=(8, 6, 8)).astype(np.float32)
    # SGD, not Adam: the gradient of c_attn's k bias is exactly zero in
    # exact arithmetic (softmax ignores a shift of a row's scores), so it is
    # rounding noise, which Adam's normalisation turns into steps of size lr
    # that differ wherever the rounding does (tp sums in another order).
    with block_model() as model, parml.Trainer(model, loss="mse", optimizer=parml.SGD(0.05, 0.9), strategy=strategy) as t:
        losses = [t.step(x, y) for _ in range(steps)]
        return losses, model.state_dict(), t.plan()


@pytest.mark.parametrize("layout", [dict(dp=2), dict(dp=2, zero=3), dict(tp=2), dict(pp=2, micro_batches=2), dict(dp=4)])
def test_residual_attention_trains_in_every_layout_as_serially(layout):
    """Attention dropout is on (p 0.1): the masks are keyed on the global
    sample (and, split by heads, the global head), so each layout draws what
    serial training draws. dp, ZeRO and pp are bit-identical to serial in
    deterministic mode; tp (whose split layers sum in another order) agrees
    within the tp tolerance."""
    steps = 4
    serial_losses, serial, _ = train(parml.Strategy(deterministic=True), steps)
    assert serial_losses[-1] < serial_losses[0]
    losses, split, plan = train(parml.Strategy(deterministic=True, **layout), steps)
    if "tp" not in layout:
        assert losses == serial_losses
        for name in serial:
            np.testing.assert_array_equal(split[name], serial[name], err_msg=name)
        return
    assert "causal_self_attention(16, 4 heads) split by heads, 2 of 4 per rank" in plan, plan
    assert "causal_self_attention(16, 2 heads) split by heads, 1 of 2 per rank" in plan, plan
    assert "replicated (whole on every tp rank)" not in [line for line in plan.splitlines() if "attention" in line]
    np.testing.assert_allclose(losses, serial_losses, rtol=1e-5, atol=1e-6)
    assert relative_difference(split, serial) <= TP_TOLERANCE * steps


@pytest.mark.parametrize("threads", [2, 3])
def test_attention_bits_do_not_depend_on_the_thread_count(threads):
    """The (sample, head) pairs of attention's C kernel split over the
    rank's threads, each pair's bits its own: 1, 2 and 3 threads train the
    same parameters bit for bit (dropout on, head sizes 4 and 8)."""
    one_losses, one, _ = train(parml.Strategy(deterministic=True, blas_threads=1))
    losses, many, _ = train(parml.Strategy(deterministic=True, blas_threads=threads))
    assert losses == one_losses
    for name in one:
        np.testing.assert_array_equal(many[name], one[name], err_msg=name)


# docs/model-parallel.md: under tp, the largest parameter difference relative
# to the largest parameter stays below 2e-6 per step taken.
TP_TOLERANCE = 2e-6


def relative_difference(got: dict, want: dict) -> float:
    assert list(got) == list(want)
    scale = max(float(np.abs(v).max()) for v in want.values())
    return max(float(np.abs(got[k].astype(np.float64) - want[k]).max()) for k in want) / scale


def heads_model(heads, bias, seed=3):
    c = 16
    return parml.Sequential(
        [
            parml.Linear(8, c),
            parml.Residual([parml.LayerNorm(c), parml.CausalSelfAttention(c, heads, bias=bias, dropout=0.1), parml.Dropout(0.1)]),
            parml.Residual([parml.LayerNorm(c), parml.Linear(c, 2 * c), parml.GELU(), parml.Linear(2 * c, c)]),
            parml.Residual([parml.LayerNorm(c), parml.CausalSelfAttention(c, heads, bias=bias, dropout=0.1)]),
            parml.LayerNorm(c),
            parml.Linear(c, 8),
        ],
        seed=seed,
    )


def heads_batch(k):
    rng = np.random.default_rng(40 + k)
    return rng.normal(size=(8, 6, 8)).astype(np.float32), rng.normal(size=(8, 6, 8)).astype(np.float32)


def train_heads(heads, bias, strategy, steps=4, seed=6):
    strategy = parml.Strategy(deterministic=True, seed=seed, **strategy)
    with heads_model(heads, bias) as model, parml.Trainer(model, loss="mse", optimizer=parml.SGD(0.05, 0.9), strategy=strategy) as t:
        losses = [t.step(*heads_batch(k)) for k in range(steps)]
        return losses, model.state_dict(), t.plan()


@pytest.mark.parametrize(
    "heads,bias,layout",
    [
        (2, True, dict(tp=2)),
        (2, False, dict(tp=2)),
        (4, True, dict(tp=2)),
        (4, False, dict(tp=2)),
        (4, True, dict(tp=4)),
        (4, False, dict(tp=4)),
        (4, True, dict(dp=2, tp=2, zero=2)),
        (4, True, dict(pp=2, tp=2, micro_batches=2)),
        (4, False, dict(dp=2, pp=2, tp=2, micro_batches=2, zero=1)),
    ],
)
def test_tensor_parallel_splits_attention_by_heads(heads, bias, layout):
    """Each tp rank computes heads t·H/tp..<(t+1)·H/tp with their q, k, v rows
    and c_proj columns; the plan says so, and training (attention dropout 0.1,
    which would move the parameters by far more than the tolerance were a
    head's mask not the serial one) matches serial; the host's parameters
    afterwards are the slices written back."""
    steps = 4
    serial_losses, serial, _ = train_heads(heads, bias, {}, steps)
    losses, split, plan = train_heads(heads, bias, layout, steps)
    per = heads // layout["tp"]
    assert f"1.1: causal_self_attention(16, {heads} heads) split by heads, {per} of {heads} per rank" in plan, plan
    assert f"3.1: causal_self_attention(16, {heads} heads) split by heads" in plan, plan
    attention = [line for line in plan.splitlines() if "causal_self_attention" in line and "split by heads" in line]
    assert len(attention) == 2 and all(("(bias after it)" in line) == bias for line in attention), attention
    np.testing.assert_allclose(losses, serial_losses, rtol=1e-5, atol=1e-6)
    d = relative_difference(split, serial)
    assert d <= TP_TOLERANCE * steps, d
    if layout == dict(tp=2):
        # Other dropout masks land far outside the tolerance.
        _, other, _ = train_heads(heads, bias, {}, steps, seed=7)
        assert relative_difference(other, serial) > 100 * TP_TOLERANCE * steps


def test_tp_must_divide_the_heads():
    with heads_model(2, True) as model:
        with pytest.raises(parml.InvalidArgumentError, match=r"layer 1\.1 causal_self_attention\(16, 2 heads\) .*tp=4 does not divide its 2 heads"):
            parml.Trainer(model, loss="mse", strategy=parml.Strategy(tp=4))


def test_checkpoint_saved_under_tp_loads_serially(tmp_path):
    """AdamW state and parameters of the head slices go back to the serial
    layout: a serial trainer resumes a tp checkpoint (and the reverse) where
    tp training goes on, and the loaded model predicts what the tp host does.
    (No biases: the k bias's gradient is rounding noise that Adam amplifies.)"""
    x, _ = heads_batch(9)

    def trainer(model, tp):
        strategy = parml.Strategy(deterministic=True, seed=6, tp=tp)
        return parml.Trainer(model, loss="mse", optimizer=parml.AdamW(1e-2), strategy=strategy)

    with heads_model(4, False) as m1, trainer(m1, 2) as t1:
        for k in range(2):
            t1.step(*heads_batch(k))
        t1.save_checkpoint(tmp_path / "tp.ckpt")
        saved, predicted = m1.parameters, m1.predict(x)
        for k in range(2, 4):
            t1.step(*heads_batch(k))
        tp_after = m1.state_dict()
    with heads_model(4, False, seed=99) as m2, trainer(m2, 1) as t2:
        t2.load_checkpoint(tmp_path / "tp.ckpt")
        np.testing.assert_array_equal(m2.parameters, saved)
        np.testing.assert_array_equal(m2.predict(x), predicted)
        for k in range(2, 4):
            t2.step(*heads_batch(k))
        assert relative_difference(m2.state_dict(), tp_after) <= TP_TOLERANCE * 4
        t2.save_checkpoint(tmp_path / "serial.ckpt")
        serial_after = m2.parameters
    with parml.Model.load(tmp_path / "tp.ckpt") as m3:
        np.testing.assert_array_equal(m3.predict(x), predicted)
    with heads_model(4, False, seed=98) as m4, trainer(m4, 4) as t4:
        t4.load_checkpoint(tmp_path / "serial.ckpt")
        np.testing.assert_array_equal(m4.parameters, serial_after)


def test_dropout_changes_training_and_is_reproducible():
    a = train(parml.Strategy(deterministic=True), steps=2)
    b = train(parml.Strategy(deterministic=True), steps=2)
    assert a[0] == b[0]
    for name in a[1]:
        np.testing.assert_array_equal(a[1][name], b[1][name])
    rng = np.random.default_rng(11)
    x = rng.normal(size=(8, 6, 8)).astype(np.float32)
    with block_model(dropout=0.0) as m0, block_model(dropout=0.1) as m1:
        # Inference ignores dropout: the same parameters predict the same.
        np.testing.assert_array_equal(m0.predict(x), m1.predict(x))


@pytest.mark.parametrize("bias", [True, False])
def test_onnx_export_matches_onnxruntime_for_any_batch(tmp_path, bias):
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(5)
    layers = [
        parml.Linear(8, 16),
        parml.Residual([parml.LayerNorm(16), parml.CausalSelfAttention(16, 4, bias=bias, dropout=0.2)]),
        parml.Linear(16, 8),
    ]
    with parml.Sequential(layers, seed=4) as model:
        model.export_onnx(tmp_path / "m.onnx", input_shape=(2, 7, 8))
        session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
        for batch in (1, 2, 5):
            x = rng.normal(size=(batch, 7, 8)).astype(np.float32)
            (out,) = session.run(["output"], {"input": x})
            np.testing.assert_allclose(out, model.predict(x), rtol=1e-5, atol=1e-5)


def test_a_whole_gpt_exports_what_onnxruntime_computes(tmp_path):
    """Issue 17 item 6: a small GPT (embeddings, two pre-LayerNorm blocks, a
    head), trained a few steps, exported and run by onnxruntime on a few
    sequences: the logits agree."""
    ort = pytest.importorskip("onnxruntime")
    vocab, t, c = 11, 8, 16
    layers = [parml.Embedding(vocab, c, init_std=0.02), parml.PositionEmbedding(t, c, init_std=0.02)]
    for _ in range(2):
        layers += [
            parml.Residual([parml.LayerNorm(c), parml.CausalSelfAttention(c, 4)]),
            parml.Residual([parml.LayerNorm(c), parml.Linear(c, 4 * c), parml.GELU(), parml.Linear(4 * c, c)]),
        ]
    layers += [parml.LayerNorm(c), parml.Linear(c, vocab, bias=False)]
    model = parml.Sequential(layers, seed=3)
    rng = np.random.default_rng(4)
    x = rng.integers(0, vocab, size=(6, t))
    with parml.Trainer(model, optimizer=parml.AdamW(1e-2)) as trainer:
        for _ in range(3):
            trainer.step(x, (x + 1) % vocab)
    model.export_onnx(tmp_path / "gpt.onnx", input_shape=(2, t))
    session = ort.InferenceSession(str(tmp_path / "gpt.onnx"), providers=["CPUExecutionProvider"])
    probe = rng.integers(0, vocab, size=(3, t)).astype(np.float32)
    (out,) = session.run(["output"], {"input": probe})
    assert out.shape == (3, t, vocab)
    np.testing.assert_allclose(out, model.predict(probe), rtol=1e-4, atol=1e-5)
