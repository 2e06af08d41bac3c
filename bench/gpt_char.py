#!/usr/bin/env python3
"""Benchmark (not a test): one training iteration of nanoGPT's character
model at its CPU configuration, parml against PyTorch, alternating in one
process so the machine's drift hits both alike.

Configuration (nanoGPT config/train_shakespeare_char.py with its README's
CPU settings): 4 layers, 4 heads, n_embd 128, context 64, batch 12, vocab
65, dropout 0, AdamW (lr 1e-3, betas 0.9/0.99, weight decay 0.1 on
matrices), gradient clipping at 1.0. Random token batches.

The PyTorch side is nanoGPT's model written out here (pre-LayerNorm blocks,
fused q,k,v, scaled_dot_product_attention(is_causal=True), 4x MLP with GELU,
the head tied to the token embedding, lm_head.weight = wte.weight, as
parml's TiedClassifier), eager mode, torch.optim.AdamW with the same two
parameter groups. One iteration = forward, backward, clip, step.

For each thread count (OpenBLAS threads for parml, torch.set_num_threads for
PyTorch), rounds alternate: parml block, PyTorch block; each block times
--iters iterations after --warmup, and the figure is the median over all
blocks of the per-iteration times. tokens/s = 12 x 64 / time.

usage: PYTHONPATH=bindings/python python3 bench/gpt_char.py [--rounds 3] [--iters 20] [--threads 1 2] [--json OUT] [--clock wall|thread]
                                                             [--jsonl FILE] [--bf16]
--jsonl appends gpt_char_t1/_t2 (tokens/s against PyTorch's, same run) for
bench/results.json (make bench); without PyTorch it appends nothing.

--bf16 (issue 23, docs/precision.md): the same model three ways per round,
alternating: parml float32, parml precision="bf16", and PyTorch under
torch.autocast("cpu", dtype=torch.bfloat16) (nanoGPT's CPU bf16 mode:
forward and loss in the autocast region, float32 master weights and AdamW).
--jsonl then appends gpt_char_t1_bf16/_t2_bf16 (parml bf16 against parml
float32, same run; written without PyTorch too) and
gpt_char_t1_bf16_vs_torch/_t2_... (against PyTorch's autocast, same run;
not where the plan says bf16 fell back to float32, a CPU without
AVX512-BF16, whose first entry then says so).
In this mode OMP_WAIT_POLICY is passive unless set, as in
bench/cnn_fmnist.py: PyTorch's wheel brings its own libgomp.so.1, which
oneDNN (parml's bf16 products) then shares, since the soname is loaded
already; with libgomp's default policy its threads spin after every
product and take the core parml's own worker needs (on the loaded machine,
with the default policy, parml's two-thread bf16 step took 0.19x its
float32 step's speed; with passive, 1.10x).

--clock thread times each iteration by the calling thread's CPU time
(time.thread_time) instead of the wall clock: on one thread both engines
run the whole iteration on the calling thread (parml's pool and PyTorch's
intra-op pool are then empty, and PyTorch's autograd runs CPU backward on
the caller), so on a machine that other jobs load the figure leaves out the
time the thread waited for a CPU. One thread only; a quiet machine's wall
clock remains the figure the targets speak of.
"""

from __future__ import annotations

import json
import os
import statistics
import time

import numpy as np

import parml
import same_run  # bench/same_run.py, beside this script

B, T, C, H, L, V = 12, 64, 128, 4, 4, 65


def parml_gpt(threads: int, precision: str = "fp32"):
    layers = [parml.Embedding(V, C, init_std=0.02), parml.PositionEmbedding(T, C, init_std=0.02)]
    for _ in range(L):
        layers.append(parml.Residual([parml.LayerNorm(C), parml.CausalSelfAttention(C, H)]))
        layers.append(parml.Residual([parml.LayerNorm(C), parml.Linear(C, 4 * C), parml.GELU(), parml.Linear(4 * C, C)]))
    layers += [parml.LayerNorm(C), parml.TiedClassifier(V, C)]
    model = parml.Sequential(layers, seed=1)
    opt = parml.AdamW(1e-3, betas=(0.9, 0.99), weight_decay=0.1, decay_by_kind=True, clip_grad_norm=1.0)
    trainer = parml.Trainer(model, optimizer=opt, strategy=parml.Strategy(blas_threads=threads, precision=precision))
    return model, trainer


def torch_gpt(torch):
    nn, F = torch.nn, torch.nn.functional

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)

        def forward(self, x):
            b, t, c = x.shape
            q, k, v = self.c_attn(x).split(C, dim=2)
            q, k, v = (z.view(b, t, H, c // H).transpose(1, 2) for z in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.attn, self.ln_2 = nn.LayerNorm(C), Attention(), nn.LayerNorm(C)
            self.mlp = nn.Sequential(nn.Linear(C, 4 * C), nn.GELU(), nn.Linear(4 * C, C))

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(T, C)
            self.h = nn.ModuleList(Block() for _ in range(L))
            self.ln_f, self.lm_head = nn.LayerNorm(C), nn.Linear(C, V, bias=False)
            self.lm_head.weight = self.wte.weight  # nanoGPT's weight tying

        def forward(self, idx):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for block in self.h:
                x = block(x)
            return self.lm_head(self.ln_f(x))

    torch.manual_seed(1)
    model = GPT()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}], lr=1e-3, betas=(0.9, 0.99))
    return model, opt


def batches(n, seed):
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, V, size=(B, T)), rng.integers(0, V, size=(B, T))) for _ in range(n)]


def time_parml(trainer, data, warmup, iters, clock=time.perf_counter):
    for x, y in data[:warmup]:
        trainer.step(x, y)
    out = []
    for x, y in data[warmup : warmup + iters]:
        t0 = clock()
        trainer.step(x, y)
        out.append(clock() - t0)
    return out


def time_torch(torch, model, opt, data, warmup, iters, clock=time.perf_counter, bf16=False):
    F = torch.nn.functional

    def step(x, y):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
            loss = F.cross_entropy(logits.view(-1, V), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    tensors = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in data]
    for x, y in tensors[:warmup]:
        step(x, y)
    out = []
    for x, y in tensors[warmup : warmup + iters]:
        t0 = clock()
        step(x, y)
        out.append(clock() - t0)
    return out


def tokens_per_s(ms):
    return round(B * T / ms * 1000, 1)


def compare_fp32(torch, data, a, clock):
    """parml float32 against PyTorch eager float32, per thread count."""
    results = []
    for threads in a.threads:
        ours, theirs = [], []
        model, trainer = parml_gpt(threads)
        if torch is not None:
            torch.set_num_threads(threads)
            tmodel, topt = torch_gpt(torch)
        for _ in range(a.rounds):
            ours += time_parml(trainer, data, a.warmup, a.iters, clock)
            if torch is not None:
                theirs += time_torch(torch, tmodel, topt, data, a.warmup, a.iters, clock)
        trainer.close()
        model.close()
        ms = 1000 * statistics.median(ours)
        row = {"name": f"gpt_char_t{threads}", "clock": a.clock, "parml_ms": round(ms, 2), "parml_tokens_per_s": tokens_per_s(ms)}
        if theirs:
            tms = 1000 * statistics.median(theirs)
            row |= {"torch_ms": round(tms, 2), "torch_tokens_per_s": tokens_per_s(tms), "speedup_vs_torch": round(tms / ms, 3)}
        results.append(row)
        print(json.dumps(row))
    lines = [{
        "name": r["name"], "value": r["parml_tokens_per_s"], "unit": "tokens/s",
        "baseline": "PyTorch eager, same model and step (same run, alternating)",
        "baseline_value": r["torch_tokens_per_s"], "ratio": r["speedup_vs_torch"],
    } for r in results if "torch_ms" in r]
    return results, lines


def compare_bf16(torch, data, a, clock):
    """parml bf16 against parml float32 and PyTorch's bf16 autocast, per thread count."""
    results, lines = [], []
    for threads in a.threads:
        times = {"fp32": [], "bf16": [], "torch_bf16": []}
        engines = {p: parml_gpt(threads, p) for p in ("fp32", "bf16")}
        plan = same_run.precision_line(engines["bf16"][1])
        fallback = same_run.fell_back(plan)
        with_torch = torch is not None and not fallback
        if with_torch:
            torch.set_num_threads(threads)
            tmodel, topt = torch_gpt(torch)
        for _ in range(a.rounds):
            for p, (_, trainer) in engines.items():
                times[p] += time_parml(trainer, data, a.warmup, a.iters, clock)
            if with_torch:
                times["torch_bf16"] += time_torch(torch, tmodel, topt, data, a.warmup, a.iters, clock, bf16=True)
        for model, trainer in engines.values():
            trainer.close()
            model.close()
        ms = {k: 1000 * statistics.median(v) for k, v in times.items() if v}
        name = f"gpt_char_t{threads}_bf16"
        row = {"name": name, "clock": a.clock, "plan": plan, "parml_bf16_ms": round(ms["bf16"], 2),
               "parml_fp32_ms": round(ms["fp32"], 2), "bf16_over_fp32": round(ms["fp32"] / ms["bf16"], 3)}
        lines.append({
            "name": name, "value": tokens_per_s(ms["bf16"]), "unit": "tokens/s",
            "baseline": f"parml float32, same model and step (same run, alternating; {a.clock} clock, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')})"
                        + ("; bf16 fell back to float32 on this CPU (the plan's precision line)" if fallback else ""),
            "baseline_value": tokens_per_s(ms["fp32"]), "ratio": row["bf16_over_fp32"],
        })
        if "torch_bf16" in ms:
            row |= {"torch_bf16_ms": round(ms["torch_bf16"], 2), "speedup_vs_torch_bf16": round(ms["torch_bf16"] / ms["bf16"], 3)}
            lines.append({
                "name": name + "_vs_torch", "value": tokens_per_s(ms["bf16"]), "unit": "tokens/s",
                "baseline": f"PyTorch eager under torch.autocast(cpu, bfloat16), same model and step (same run, alternating; {a.clock} clock, "
                            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')})",
                "baseline_value": tokens_per_s(ms["torch_bf16"]), "ratio": row["speedup_vs_torch_bf16"],
            })
        results.append(row)
        print(json.dumps(row))
    return results, lines


def main():
    ap = same_run.parser(rounds=3, iters=20, warmup=5)
    ap.add_argument("--json")
    ap.add_argument("--bf16", action="store_true", help="parml bf16 against parml float32 and PyTorch's bf16 autocast")
    a = ap.parse_args()
    clock = same_run.clock(ap, a)
    if a.bf16:
        os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # before PyTorch loads its libgomp
    torch = same_run.optional_torch()
    data = batches(a.warmup + a.iters, seed=2)
    results, lines = (compare_bf16 if a.bf16 else compare_fp32)(torch, data, a, clock)
    if a.jsonl:
        with open(a.jsonl, "a", encoding="utf-8") as f:
            for line in lines:
                f.write(json.dumps(line) + "\n")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"parml": parml.library_version(), "torch": getattr(torch, "__version__", None), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
