"""Train a character-level GPT on tinyshakespeare with parml, as nanoGPT's
train.py does with config/train_shakespeare_char.py on a CPU.

    python3 examples/python/train_gpt.py [--max-iters 2000] [--dp 2] ...

The configuration is nanoGPT's CPU one (4 layers, 4 heads, n_embd 128,
context 64, batch 12, dropout 0, AdamW lr 1e-3 with 100 warm-up iterations
and cosine decay to 1e-4 at 2,000, betas (0.9, 0.99), weight decay 0.1 on
matrices, gradient clip 1.0). The tokenizer is nanoGPT's: the 65 distinct
characters, sorted. It prints train and validation loss every
--eval-interval iterations, saves the model and prints a generated sample.
Batches are cut on the host by get_batch, as nanoGPT's train.py cuts them;
parml.TokenDataset cuts the same kind of windows inside the library for
Trainer.fit (docs/transformers.md, "Token data").
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

import parml

ROOT = Path(__file__).resolve().parents[2]


def get_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(ROOT / "data/tinyshakespeare/input.txt"))
    p.add_argument("--out", default="gpt_char.pb")
    p.add_argument("--max-iters", type=int, default=2000)
    p.add_argument("--eval-interval", type=int, default=250)
    p.add_argument("--eval-iters", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-lr", type=float, default=1e-4)
    p.add_argument("--warmup-iters", type=int, default=100)
    p.add_argument("--lr-decay-iters", type=int, default=2000)
    p.add_argument("--dp", type=int, default=1, help="data-parallel ranks (threads)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: Linear and attention projections on bf16 operands, float32 accumulation (docs/precision.md)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--sample-tokens", type=int, default=200)
    return p.parse_args()


def block(n_embd, n_head, dropout):
    """nanoGPT's Block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""
    attn = [parml.LayerNorm(n_embd), parml.CausalSelfAttention(n_embd, n_head, dropout=dropout)]
    mlp = [parml.LayerNorm(n_embd), parml.Linear(n_embd, 4 * n_embd), parml.GELU(), parml.Linear(4 * n_embd, n_embd)]
    if dropout > 0:
        attn.append(parml.Dropout(dropout))
        mlp.append(parml.Dropout(dropout))
    return [parml.Residual(attn), parml.Residual(mlp)]


def gpt(vocab, a):
    layers = [parml.Embedding(vocab, a.n_embd, init_std=0.02), parml.PositionEmbedding(a.block_size, a.n_embd, init_std=0.02)]
    for _ in range(a.n_layer):
        layers += block(a.n_embd, a.n_head, a.dropout)
    # The head is the token embedding's matrix, as nanoGPT ties lm_head to wte.
    layers += [parml.LayerNorm(a.n_embd), parml.TiedClassifier(vocab, a.n_embd)]
    return parml.Sequential(layers, seed=a.seed)


def main():
    a = get_args()
    text = Path(a.data).read_text()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = np.array([stoi[c] for c in text], dtype=np.int64)
    n = int(0.9 * len(data))
    train_data, val_data = data[:n], data[n:]
    rng = np.random.default_rng(a.seed)

    def get_batch(split):
        d = train_data if split == "train" else val_data
        ix = rng.integers(0, len(d) - a.block_size, size=a.batch_size)
        x = np.stack([d[i : i + a.block_size] for i in ix])
        y = np.stack([d[i + 1 : i + 1 + a.block_size] for i in ix])
        return x, y

    model = gpt(len(chars), a)
    print(f"vocab {len(chars)}, {model.num_params / 1e6:.2f}M parameters, {len(train_data):,} training tokens")
    optimizer = parml.AdamW(
        a.lr, betas=(0.9, 0.99), weight_decay=0.1, decay_by_kind=True, clip_grad_norm=1.0,
        schedule=parml.schedules.cosine(a.lr_decay_iters, a.min_lr, warmup_steps=a.warmup_iters),
    )
    with parml.Trainer(model, optimizer=optimizer, strategy=parml.Strategy(dp=a.dp, precision=a.precision)) as trainer:

        def estimate_loss():
            out = {}
            for split in ("train", "val"):
                losses = [trainer.evaluate(*get_batch(split)).loss for _ in range(a.eval_iters)]
                out[split] = float(np.mean(losses))
            return out

        t0 = time.time()
        for it in range(a.max_iters + 1):
            if it % a.eval_interval == 0 or it == a.max_iters:
                losses = estimate_loss()
                print(f"step {it}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f} ({time.time() - t0:.1f} s)")
            if it == a.max_iters:
                break
            trainer.step(*get_batch("train"))
        elapsed = time.time() - t0
        print(f"{a.max_iters} iterations in {elapsed:.1f} s ({1000 * elapsed / max(a.max_iters, 1):.1f} ms/iteration with evaluation)")
    model.save(a.out)
    print(f"saved {a.out} ({os.path.getsize(a.out):,} bytes)")
    prompt = np.array([stoi["\n"]])
    sample = model.generate(prompt, a.sample_tokens, temperature=0.8, top_k=200, seed=a.seed)
    print("---\n" + "".join(chars[i] for i in sample) + "\n---")


if __name__ == "__main__":
    main()
