"""Class weights on skewed data: 4 overlapping classes in 8 features, the
last 1 in 50 of the training samples. Trains the same MLP with a plain and
a class-weighted cross-entropy (sklearn's "balanced" weights) and prints
per-class recall, macro F1, accuracy and top-2 accuracy on a balanced
validation set (docs/metrics-and-losses.md)."""

import numpy as np

import parml

rng = np.random.default_rng(0)
# 4 overlapping classes in 8 features; class 3 is 1 in 50 of the training samples.
centers = rng.normal(scale=1.2, size=(4, 8)).astype(np.float32)


def draw(n, p):
    y = rng.choice(4, size=n, p=p)
    return (centers[y] + rng.normal(size=(n, 8))).astype(np.float32), y.astype(np.int64)


x, y = draw(5000, [0.49, 0.3, 0.19, 0.02])
xv, yv = draw(4000, [0.25, 0.25, 0.25, 0.25])
counts = np.bincount(y, minlength=4)
balanced = len(y) / (4 * counts)          # sklearn's class_weight="balanced"
for w in (None, balanced):
    model = parml.Sequential([parml.Linear(8, 32), parml.ReLU(), parml.Linear(32, 4)], seed=1)
    with parml.Trainer(model, optimizer=parml.Adam(1e-2), class_weight=w) as t:
        t.fit(x, y, epochs=10, batch_size=64, verbose=False)
        m = t.evaluate_metrics(xv, yv, top_k=2)
    print("weights" if w is not None else "plain  ", "recall", np.round(m.recall, 3), "macro F1 %.3f" % m.macro_f1,
          "acc %.3f" % m.accuracy, "top-2 %.3f" % m.top_k_accuracy)
print(counts, np.round(balanced, 3))
