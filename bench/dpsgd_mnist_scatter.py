"""DP-SGD on MNIST on ScatterNet features (issue 21): Tramer and Boneh 2021
("Differentially Private Learning Needs Better Features"). Each 28x28 image
goes through a scattering transform (J = 2, L = 8: 81 channels of 7x7),
which depends on no data and so costs no privacy; a parml model (linear, or
a small tanh CNN) is trained on the features with DP-SGD, Poisson sampling,
sigma chosen by the accountant for a target epsilon over the steps fit
takes; epsilon from the trainer's accountant; test accuracy on the 10,000
test images after the last epoch (no selection over epochs).

  PYTHONPATH=bindings/python python3 bench/dpsgd_mnist_scatter.py MODEL EPOCHS TARGET_EPS SEED [lr] [momentum] [batch] [C] [groups]
  python3 bench/dpsgd_mnist_scatter.py features [START END]   # only compute (part of) the feature cache

Defaults: linear 60 2.93 0 8 0.9 4096 0.1 27, the linear row of
bench/privacy.md's ScatterNet table (Tramer and Boneh's MNIST setting).

MODEL: "linear" (81*7*7 -> 10) or "cnn" (Tramer and Boneh's ScatterNet CNN
for MNIST, models.py's MNIST_CNN on 81 channels: conv 81->16 3x3 stride 2
padding 1, tanh, conv 16->32 3x3 padding 1, tanh, linear 32*4*4 -> 32,
tanh, linear 32 -> 10).

Normalisation: each example's features are normalised on their own, as
GroupNorm without affine parameters does (groups of 81 / groups channels,
each group to mean 0 and variance 1 over its channels and positions; eps
1e-5). That is a function of the one example, applied before training
like the scattering transform, so it costs no privacy. groups = 0 leaves
the features as they are.

The scattering transform comes from kymatio (pip install kymatio; 0.3.0
was used, with its numpy backend; only this script needs it, never the
library). Without kymatio the script says so and exits with status 0 and
nothing measured. The features are computed once and cached outside the
repository, in $PARML_SCATTER_CACHE or ~/.cache/parml/mnist_scatter, in
chunks of 1,000 images (1 to 5 s a chunk on the shared 2-core machine,
two `features START END` processes at once with OMP_NUM_THREADS=1; about
a minute for all 70 chunks). Pixels in [0, 1] as torchvision's ToTensor gives
them (Tramer and Boneh's input). Data from ../shared/data/mnist or
$MNIST_DIR, kept out of the repository."""
import math
import os
import sys
import time

import numpy as np

from dpsgd_mnist_common import delta, idx, positional, private_trainer

cache = os.environ.get("PARML_SCATTER_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "parml", "mnist_scatter"))
chunk = 1000


def scattering():
    try:
        # kymatio 0.3.0's kymatio.numpy also imports its 3-D frontend, which
        # needs scipy.special.sph_harm (gone from SciPy 1.15 on); the 2-D
        # frontend alone does not.
        from kymatio.scattering2d.frontend.numpy_frontend import ScatteringNumPy2D
    except ImportError as e:
        print(f"skipped: kymatio is not installed (pip install kymatio): {e}", flush=True)
        sys.exit(0)
    return ScatteringNumPy2D(J=2, shape=(28, 28), L=8)


def features(split, images, start=0, end=None):
    """The scattering features of images (N, 28, 28) uint8 as (N, 81, 7, 7)
    float32, from the cache where chunks are there, computing and caching
    the chunks from start to end (chunk indices) that are not."""
    os.makedirs(cache, exist_ok=True)
    chunks = math.ceil(len(images) / chunk)
    end = chunks if end is None else min(end, chunks)
    transform = None
    out = []
    for c in range(chunks):
        path = os.path.join(cache, f"{split}_{c:03d}.npy")
        if not os.path.exists(path):
            if not start <= c < end:
                continue
            if transform is None:
                transform = scattering()
            t0 = time.time()
            x = images[c * chunk : (c + 1) * chunk].astype(np.float32) / 255
            s = transform(x).astype(np.float32)
            np.save(path + ".tmp.npy", s)
            os.replace(path + ".tmp.npy", path)
            print(f"{split} chunk {c}/{chunks}: {time.time() - t0:.1f} s", flush=True)
        out.append(np.load(path))
    return np.concatenate(out) if len(out) == chunks else None


def group_norm(x, groups, eps=1e-5):
    n, c, h, w = x.shape
    g = x.reshape(n, groups, (c // groups) * h * w).astype(np.float64)
    g = (g - g.mean(axis=2, keepdims=True)) / np.sqrt(g.var(axis=2, keepdims=True) + eps)
    return g.reshape(n, c, h, w).astype(np.float32)


args = sys.argv[1:]
x_train_img = idx("train-images-idx3-ubyte.gz")
x_test_img = idx("t10k-images-idx3-ubyte.gz")
if args and args[0] == "features":
    start = int(args[1]) if len(args) > 1 else 0
    end = int(args[2]) if len(args) > 2 else None
    features("train", x_train_img, start, end)
    features("test", x_test_img, start, end)
    sys.exit(0)

import parml  # noqa: E402

kind, epochs, target, seed, lr, momentum, batch, c, groups = positional(args, "linear", 60, 2.93, 0, 8.0, 0.9, 4096, 0.1, 27)

x_train = features("train", x_train_img)  # computes and caches what the cache lacks
x_test = features("test", x_test_img)
if groups > 0:
    x_train, x_test = group_norm(x_train, groups), group_norm(x_test, groups)
y_train = idx("train-labels-idx1-ubyte.gz").astype(np.int32)
y_test = idx("t10k-labels-idx1-ubyte.gz").astype(np.int32)


def model(seed):
    if kind == "linear":
        return parml.Sequential([parml.Flatten(), parml.Linear(81 * 7 * 7, 10)], seed=seed)
    if kind == "cnn":
        return parml.Sequential(
            [
                parml.Conv2d(81, 16, 3, stride=2, padding=1), parml.Tanh(),  # (N, 16, 4, 4)
                parml.Conv2d(16, 32, 3, padding=1), parml.Tanh(),  # (N, 32, 4, 4)
                parml.Flatten(), parml.Linear(32 * 4 * 4, 32), parml.Tanh(), parml.Linear(32, 10),
            ],
            seed=seed,
        )
    raise SystemExit(f"unknown model {kind!r} (linear or cnn)")


with parml.Dataset(x_train, y_train) as train, parml.Dataset(x_test, y_test) as test:
    net = model(seed)
    trainer, sigma, q, steps = private_trainer(net, len(train), epochs, target, seed, lr, momentum, batch, c)
    with net, trainer:
        t0 = time.time()
        trainer.fit(train, epochs=epochs, batch_size=batch, verbose="plain")
        result = trainer.evaluate(test)
        print(
            f"ScatterNet + {kind}, groups {groups}, sigma {sigma:.4f}, C {c}, batch {batch} (Poisson, q {q:.5f}), lr {lr}, "
            f"momentum {momentum}, {epochs} epochs ({steps} steps), seed {seed}: epsilon {trainer.epsilon:.4f} "
            f"(delta {delta}, target {target}), test accuracy {result.accuracy:.4f}, {time.time() - t0:.0f} s",
            flush=True,
        )
