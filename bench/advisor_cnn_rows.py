"""Benchmark (not a test): step times of prefixes of bench/advisor.py's CNN (conv1; + bn, relu, pool;
+ conv2; + bn, relu, pool; the whole model) at 8, 16 and 32 rows on 1 and 2 BLAS threads, the median
over 5 rounds of each round's fastest of 8 steps, and the advisor's one-rank prediction at the same
rows and threads. usage: PARML_LIBRARY=... python3 bench/advisor_cnn_rows.py [cache_dir]"""
import sys, os, time, statistics, tempfile
import numpy as np
sys.path.insert(0, "bindings/python")
import parml
cache = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()

def layers_all():
    return [parml.Conv2d(1, 16, 3, padding=1), parml.BatchNorm(16), parml.ReLU(), parml.MaxPool2d(2),
            parml.Conv2d(16, 32, 3, padding=1), parml.BatchNorm(32), parml.ReLU(), parml.MaxPool2d(2),
            parml.Flatten(), parml.Linear(32 * 7 * 7, 10)]
PREFIX = {"conv1": 1, "conv1+bn+relu+pool": 4, "..conv2": 5, "..pool2": 8, "full": 10}
rng = np.random.default_rng(0)

def trainer(k, threads):
    ls = layers_all()[:k]
    model = parml.Sequential(ls, seed=1)
    loss = "cross_entropy" if k == 10 else "mse"
    return model, parml.Trainer(model, loss=loss, optimizer=parml.SGD(0.01, momentum=0.9), strategy=parml.Strategy(blas_threads=threads))

def data(k, rows, model):
    x = rng.normal(size=(rows, 1, 28, 28)).astype(np.float32)
    if k == 10:
        return x, rng.integers(0, 10, size=rows).astype(np.int64)
    shape = {1: (16, 28, 28), 4: (16, 14, 14), 5: (32, 14, 14), 8: (32, 7, 7)}[k]
    return x, rng.normal(size=(rows,) + shape).astype(np.float32)

configs = [(rows, th) for rows in (8, 16, 32) for th in (1, 2)]
res = {}
for rnd in range(5):
    for name, k in PREFIX.items():
        for rows, th in configs:
            model, t = trainer(k, th)
            x, y = data(k, rows, model)
            t.step(x, y)
            best = 1e9
            for _ in range(8):
                t0 = time.perf_counter(); t.step(x, y); best = min(best, time.perf_counter() - t0)
            t.close() if hasattr(t, "close") else None
            res.setdefault((name, rows, th), []).append(best)
print("load", os.getloadavg())
for name, k in PREFIX.items():
    line = [name]
    for rows, th in configs:
        line.append(f"{rows}r{th}t {statistics.median(res[(name, rows, th)])*1e3:6.3f}")
    print("  ".join(line))
# advisor prediction of dp1 at 1 thread (cores=1) and at 2 threads
model = parml.Sequential(layers_all(), seed=1)
for rows in (8, 16, 32):
    for cores in (1, 2):
        a = parml.advise(model, (1, 28, 28), rows, optimizer=parml.SGD(0.01, momentum=0.9), cache_dir=cache, show=False, max_ranks=1, cores=cores)
        p = a.ranked[0]
        print(f"pred full {rows}r{cores}t compute {p.compute_seconds*1e3:.3f} step {p.step_seconds*1e3:.3f}")
