"""The classifier tied to the token embedding (issue 17 item 1): one matrix,
both gradients summed, the same training in every layout, held once in
files, names and counts."""

from __future__ import annotations

import numpy as np
import pytest

import parml

VOCAB, T, C = 16, 6, 16


def gpt(seed=3, tied=True, blocks=2, heads=4, dropout=0.0):
    layers = [parml.Embedding(VOCAB, C, init_std=0.02), parml.PositionEmbedding(T, C, init_std=0.02)]
    for _ in range(blocks):
        layers += [
            parml.Residual([parml.LayerNorm(C, bias=False), parml.CausalSelfAttention(C, heads, bias=False, dropout=dropout)]),
            parml.Residual([parml.LayerNorm(C, bias=False), parml.Linear(C, 4 * C, bias=False), parml.GELU(), parml.Linear(4 * C, C, bias=False)]),
        ]
    layers += [parml.LayerNorm(C, bias=False), parml.TiedClassifier(VOCAB, C) if tied else parml.Linear(C, VOCAB, bias=False)]
    return parml.Sequential(layers, seed=seed)


def batch(k, n=8):
    rng = np.random.default_rng(100 + k)
    x = rng.integers(0, VOCAB, size=(n, T + 1))
    return x[:, :-1].astype(np.int32), x[:, 1:].astype(np.int32)


def train(strategy, steps=4, optimizer=None, tied=True):
    optimizer = optimizer or parml.AdamW(3e-3, betas=(0.9, 0.99), weight_decay=0.1, clip_grad_norm=0.05)
    with gpt(tied=tied) as model, parml.Trainer(model, optimizer=optimizer, strategy=strategy) as t:
        losses = [t.step(*batch(k)) for k in range(steps)]
        return losses, model.state_dict(), t.plan()


def test_the_matrix_is_held_once():
    with gpt() as tied, gpt(tied=False) as untied:
        names = list(tied.state_dict())
        assert len(untied.state_dict()) == len(names) + 1
        assert not any(n.startswith(f"{len(tied.layers) - 1}.") for n in names), names
        assert tied.num_params == untied.num_params - VOCAB * C
        assert tied.parameters.size == tied.num_params
        assert "(tied to the embedding's weight)" in tied.summary()
        x, _ = batch(0)
        # Before any training the head is the embedding: logits are x·Wᵀ.
        logits = tied.predict(x)
        assert logits.shape == (8, T, VOCAB)


def test_a_tied_classifier_needs_an_embedding_before_it():
    with pytest.raises(parml.InvalidArgumentError, match=r"tied_classifier.*add the embedding first"):
        parml.Sequential([parml.Linear(C, C), parml.TiedClassifier(VOCAB, C)])
    with pytest.raises(parml.InvalidArgumentError, match=r"tied_classifier.*\(16, 8\).*embedding"):
        parml.Sequential([parml.Embedding(VOCAB, C), parml.LayerNorm(8), parml.TiedClassifier(VOCAB, 8)])


def test_one_step_moves_the_matrix_by_both_gradients():
    """With plain SGD, the tied matrix moves by −lr·(g_embedding + g_head):
    the sum of what an untied model, started from the same matrix in both
    places, moves its two copies by."""
    lr = 0.5
    x, y = batch(0)
    with gpt() as tied, gpt(tied=False) as untied:
        state = tied.state_dict()
        last = len(untied.layers) - 1
        untied.load_state_dict({**state, f"{last}.weight": state["0.weight"]})
        w0 = state["0.weight"].astype(np.float64)
        with parml.Trainer(tied, optimizer=parml.SGD(lr)) as t1, parml.Trainer(untied, optimizer=parml.SGD(lr)) as t2:
            assert t1.step(x, y) == pytest.approx(t2.step(x, y), rel=1e-6)
        after = untied.state_dict()
        want = after["0.weight"].astype(np.float64) + after[f"{last}.weight"] - w0
        got = tied.state_dict()["0.weight"]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
        assert np.abs(got - state["0.weight"]).max() > 1e-3  # it moved


def torch_gpt_logits(torch, params, x):
    """The model of `gpt()` in PyTorch, with logits = h · wteᵀ (nanoGPT's tie),
    or h · W7ᵀ for the untied model's linear head."""
    ln = torch.nn.functional.layer_norm
    emb = params["0.weight"]
    h = emb[x] + params["1.weight"][: x.shape[1]]
    b, t, _ = h.shape
    for k in (2, 4):
        a = ln(h, (C,), params[f"{k}.0.weight"], None, 1e-5)
        q, kk, v = (a @ params[f"{k}.1.c_attn.weight"].T).split(C, dim=2)
        q, kk, v = (z.view(b, t, 4, C // 4).transpose(1, 2) for z in (q, kk, v))
        y = torch.nn.functional.scaled_dot_product_attention(q, kk, v, is_causal=True)
        h = h + y.transpose(1, 2).reshape(b, t, C) @ params[f"{k}.1.c_proj.weight"].T
        a = ln(h, (C,), params[f"{k + 1}.0.weight"], None, 1e-5)
        h = h + torch.nn.functional.gelu(a @ params[f"{k + 1}.1.weight"].T) @ params[f"{k + 1}.3.weight"].T
    return ln(h, (C,), params["6.weight"], None, 1e-5) @ params.get("7.weight", emb).T


def test_matches_nanogpt_tied_head_in_torch():
    """AdamW (decay on matrices), clipping, four steps: the loss per step and
    the parameters match PyTorch's with lm_head.weight = wte.weight. The
    clipping norm counts the matrix once, as clip_grad_norm_ over
    model.parameters() does, and clip 0.05 is active at every step."""
    torch = pytest.importorskip("torch")
    optimizer = parml.AdamW(3e-3, betas=(0.9, 0.99), weight_decay=0.1, clip_grad_norm=0.05, decay_by_kind=True)
    losses, state, _ = train(parml.Strategy(deterministic=True), steps=4, optimizer=optimizer)
    with gpt() as model:
        params = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(
        [
            {"params": [p for p in params.values() if p.dim() >= 2], "weight_decay": 0.1},
            {"params": [p for p in params.values() if p.dim() < 2], "weight_decay": 0.0},
        ],
        lr=3e-3, betas=(0.9, 0.99),
    )
    want, norms = [], []
    for k in range(4):
        x, y = (torch.tensor(a, dtype=torch.long) for a in batch(k))
        loss = torch.nn.functional.cross_entropy(torch_gpt_logits(torch, params, x).reshape(-1, VOCAB), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(list(params.values()), 0.05)))
        opt.step()
        want.append(loss.item())
    assert min(norms) > 0.05, norms
    np.testing.assert_allclose(losses, want, rtol=1e-5)
    for name, p in params.items():
        np.testing.assert_allclose(state[name], p.detach().numpy(), rtol=0, atol=1e-5, err_msg=name)


LAYOUTS = [
    dict(dp=2),
    dict(dp=2, zero=1),
    dict(dp=2, zero=2),
    dict(dp=2, zero=3),
    dict(pp=2, micro_batches=2),
    dict(pp=3, micro_batches=4, schedule="1f1b"),
    dict(dp=2, pp=2, micro_batches=2, zero=1),
    dict(dp=2, pp=2, micro_batches=2, zero=3),
]


@pytest.mark.parametrize("layout", LAYOUTS, ids=[",".join(f"{k}={v}" for k, v in x.items()) for x in LAYOUTS])
def test_every_layout_trains_as_serially(layout):
    """Deterministic mode: dp, ZeRO 1-3 and pipelines (the embedding on the
    first stage, the tied classifier on the last, the gradients summed
    across them) give serial training's losses and parameters bit for bit,
    with clipping on."""
    serial_losses, serial, _ = train(parml.Strategy(deterministic=True))
    losses, split, _ = train(parml.Strategy(deterministic=True, **layout))
    assert losses == serial_losses
    assert list(split) == list(serial)
    for name in serial:
        np.testing.assert_array_equal(split[name], serial[name], err_msg=name)


@pytest.mark.parametrize("layout", [dict(tp=2), dict(dp=2, pp=2, tp=2, micro_batches=2, zero=1)])
def test_tensor_parallel_keeps_the_tie(layout):
    """Under tp the embedding and the tied classifier are replicated; the
    rest splits as usual, within the tp tolerance of serial training."""
    steps = 4
    serial_losses, serial, _ = train(parml.Strategy(deterministic=True), steps)
    losses, split, plan = train(parml.Strategy(deterministic=True, **layout), steps)
    assert "tied_classifier(16→16) replicated" in plan, plan
    np.testing.assert_allclose(losses, serial_losses, rtol=1e-5, atol=1e-6)
    scale = max(float(np.abs(v).max()) for v in serial.values())
    d = max(float(np.abs(split[k].astype(np.float64) - serial[k]).max()) for k in serial) / scale
    assert d <= 2e-6 * steps, d


SPLIT_LAYOUTS = [
    dict(tp=2),
    dict(tp=4),
    dict(dp=2, tp=2, zero=1),
    dict(pp=2, tp=2, micro_batches=2),
    dict(dp=2, pp=2, tp=2, micro_batches=2, zero=2),
]


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("layout", SPLIT_LAYOUTS, ids=[",".join(f"{k}={v}" for k, v in x.items()) for x in SPLIT_LAYOUTS])
def test_split_classifier_splits_the_vocabulary(layout, tied):
    """With split_classifier, tp rank t holds rows t·V/tp..<(t+1)·V/tp of
    the token embedding (Megatron's VocabParallelEmbedding: other ids give
    zeros, an all-reduce sums the ranks' outputs) and of the classifier, tied
    or not; the loss runs on the sharded logits. Training stays within the
    tp tolerance of serial training."""
    steps = 4
    serial_losses, serial, _ = train(parml.Strategy(deterministic=True), steps, tied=tied)
    losses, split, plan = train(parml.Strategy(deterministic=True, split_classifier=True, **layout), steps, tied=tied)
    per = VOCAB // layout["tp"]
    assert f"0: vocabulary-parallel embedding({VOCAB}×{C}), ids 0..<{per} on rank 0" in plan, plan
    head = "vocabulary-parallel classifier tied_classifier" if tied else "column-parallel classifier linear"
    assert head in plan, plan
    np.testing.assert_allclose(losses, serial_losses, rtol=1e-5, atol=1e-6)
    scale = max(float(np.abs(v).max()) for v in serial.values())
    d = max(float(np.abs(split[k].astype(np.float64) - serial[k]).max()) for k in serial) / scale
    assert d <= 2e-6 * steps, d


def test_the_vocabulary_split_needs_tp_to_divide_it():
    layers = [parml.Embedding(15, C), parml.LayerNorm(C), parml.TiedClassifier(15, C)]
    with parml.Sequential(layers, seed=1) as model:
        with pytest.raises(parml.InvalidArgumentError, match=r"tp=2 does not divide the vocabulary of layer 0 embedding\(15×16\).*pad it"):
            parml.Trainer(model, strategy=parml.Strategy(tp=2, split_classifier=True))


def test_files_hold_the_matrix_once_and_resume_across_layouts(tmp_path):
    x, _ = batch(9)
    opt = parml.AdamW(3e-3, weight_decay=0.1)
    with gpt() as m1, parml.Trainer(m1, optimizer=opt, strategy=parml.Strategy(deterministic=True, pp=2, micro_batches=2)) as t1:
        for k in range(2):
            t1.step(*batch(k))
        t1.save_checkpoint(tmp_path / "pp.ckpt")
        m1.save(tmp_path / "gpt.model")
        predicted = m1.predict(x)
        for k in range(2, 4):
            t1.step(*batch(k))
        after = m1.state_dict()
    with gpt(tied=False) as untied:
        untied.save(tmp_path / "untied.model")
    saved = (tmp_path / "gpt.model").stat().st_size
    assert saved < (tmp_path / "untied.model").stat().st_size - VOCAB * C * 4 + 64
    with parml.Model.load(tmp_path / "gpt.model") as m2:
        np.testing.assert_array_equal(m2.predict(x), predicted)
        assert "tied_classifier" in m2.summary()
    with gpt(seed=77) as m3, parml.Trainer(m3, optimizer=opt, strategy=parml.Strategy(deterministic=True)) as t3:
        t3.load_checkpoint(tmp_path / "pp.ckpt")
        np.testing.assert_array_equal(m3.predict(x), predicted)
        for k in range(2, 4):
            t3.step(*batch(k))
        for name, v in after.items():
            np.testing.assert_array_equal(m3.state_dict()[name], v, err_msg=name)


def test_set_parameters_moves_both_slots():
    x, _ = batch(1)
    with gpt() as m:
        state = m.state_dict()
        state["0.weight"] = state["0.weight"] * 3
        m.load_state_dict(state)
        h = m.predict(x)
        with gpt(tied=False) as u:
            last = len(u.layers) - 1
            u.load_state_dict({**state, f"{last}.weight": state["0.weight"]})
            np.testing.assert_allclose(h, u.predict(x), rtol=1e-6, atol=1e-6)


def test_onnx_export_holds_the_matrix_once(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    with gpt() as model:
        with parml.Trainer(model, optimizer=parml.AdamW(1e-2)) as t:
            t.step(*batch(0))
        model.export_onnx(tmp_path / "tied.onnx", input_shape=(2, T))
        session = ort.InferenceSession(str(tmp_path / "tied.onnx"), providers=["CPUExecutionProvider"])
        x, _ = batch(3)
        (out,) = session.run(["output"], {"input": x.astype(np.float32)})
        np.testing.assert_allclose(out, model.predict(x), rtol=1e-4, atol=1e-5)
        with gpt(tied=False) as untied:
            untied.export_onnx(tmp_path / "untied.onnx", input_shape=(2, T))
        assert (tmp_path / "tied.onnx").stat().st_size < (tmp_path / "untied.onnx").stat().st_size - VOCAB * C * 4 + 1024


def test_generation_uses_the_tied_head():
    """A trained tied model generates what an untied model holding the
    matrix in both places generates."""
    with gpt() as model:
        with parml.Trainer(model, optimizer=parml.AdamW(1e-2)) as t:
            for k in range(3):
                t.step(*batch(k))
        state = model.state_dict()
        out = model.generate([1, 2, 3], 10, temperature=0.8, seed=5)
        assert len(out) == 10 and all(0 <= v < VOCAB for v in out)
        with gpt(tied=False) as untied:
            untied.load_state_dict({**state, f"{len(untied.layers) - 1}.weight": state["0.weight"]})
            np.testing.assert_array_equal(untied.generate([1, 2, 3], 10, temperature=0.8, seed=5), out)


@pytest.mark.parametrize("zero", [1, 3])
def test_gather_params_is_a_no_op_where_the_model_is_whole(zero):
    """Threads share one arena under ZeRO-3: the model is whole after every
    step, gather_params communicates nothing and changes no value (under
    MPI, tests/mpi/py_zero3.py checks the partial model and the gather)."""
    m = gpt()
    with m, parml.Trainer(m, optimizer=parml.AdamW(1e-3), strategy=parml.Strategy(dp=2, zero=zero)) as t:
        assert t.params_whole
        x, y = batch(0)
        t.step(x, y)
        assert t.params_whole
        before = m.parameters.copy()
        t.gather_params()
        assert t.params_whole
        np.testing.assert_array_equal(m.parameters, before)
    assert _capi_status(lambda v: parml._capi.parml_trainer_params_whole(None, v)) == parml._capi.PARML_ERR_INVALID_ARGUMENT
    assert parml._capi.parml_trainer_gather_params(None) == parml._capi.PARML_ERR_INVALID_ARGUMENT


def _capi_status(call):
    from ctypes import byref, c_int32

    v = c_int32(7)
    status = call(byref(v))
    assert v.value == 7  # left alone on error
    return status
