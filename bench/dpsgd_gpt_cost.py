"""Cost of a private step of a small GPT (issue 21): a character-level
model (2 blocks, C = 64, T = 64, 4 heads, vocabulary 65, batch 32), one
BLAS thread, private (sigma 1, C 1) and ordinary steps interleaved; the
medians of 10 steps each after 2 warm-up steps, with the tied classifier
and with an untied linear head.

  PYTHONPATH=bindings/python python3 bench/dpsgd_gpt_cost.py"""
import time

import numpy as np

import parml

V, T, C, H = 65, 64, 64, 4


def gpt(tied):
    layers = [parml.Embedding(V, C, init_std=0.02), parml.PositionEmbedding(T, C, init_std=0.02)]
    for _ in range(2):
        layers += [parml.Residual([parml.LayerNorm(C), parml.CausalSelfAttention(C, H)]),
                   parml.Residual([parml.LayerNorm(C), parml.Linear(C, 4 * C), parml.GELU(), parml.Linear(4 * C, C)])]
    layers += [parml.LayerNorm(C), parml.TiedClassifier(V, C) if tied else parml.Linear(C, V, bias=False)]
    return parml.Sequential(layers, seed=1)


rng = np.random.default_rng(0)
x = rng.integers(0, V, (32, T + 1))
xb, yb = x[:, :-1].astype(np.int32), x[:, 1:].astype(np.int32)
for tied in (True, False):
    with gpt(tied) as a, gpt(tied) as b, parml.Trainer(a, optimizer=parml.SGD(0.1), strategy=parml.Strategy(blas_threads=1)) as ta, \
         parml.Trainer(b, optimizer=parml.SGD(0.1), strategy=parml.Strategy(blas_threads=1), privacy=parml.Privacy(noise_multiplier=1.0, max_grad_norm=1.0)) as tb:
        to, tp = [], []
        for k in range(12):
            t0 = time.perf_counter()
            ta.step(xb, yb)
            t1 = time.perf_counter()
            tb.step(xb, yb)
            t2 = time.perf_counter()
            if k >= 2:
                to.append(t1 - t0)
                tp.append(t2 - t1)
        print(f"tied={tied}: ordinary median {1e3*np.median(to):.1f} ms, private {1e3*np.median(tp):.1f} ms, ratio {np.median(tp)/np.median(to):.2f}")
