"""DP-SGD on MNIST with a CNN (issue 21): the tanh ("tempered sigmoid")
CNN of Papernot et al. 2020, which is TensorFlow Privacy's tutorial CNN
with tanh for ReLU, trained privately with Poisson sampling; sigma chosen
by the accountant for a target epsilon; epsilon from the trainer's
accountant; test accuracy on the 10,000 test images.

  PYTHONPATH=bindings/python python3 bench/dpsgd_mnist_cnn.py EPOCHS TARGET_EPS SEED [lr] [momentum] [batch] [C] [train_images] [normalise] [schedule] [average]

Data from ../shared/data/mnist (kept out of the repository); pixels in
[0, 1] as load_idx gives them, or with normalise = 1 standardised with
MNIST's customary mean 0.1307 and deviation 0.3081 (PyTorch's MNIST
example's constants, fixed in advance, not measured here). schedule "cosine" decays the learning rate to 0 over the
run's steps (parml.schedules.cosine); otherwise (e.g. "constant") it is constant.
average > 0 also keeps an exponential moving average of the parameters
with that per-step decay (parml.callbacks.ParameterAverage, with its
warm-up min(decay, (1 + t) / (10 + t))) and evaluates both the final
iterate and the average after the same run: post-processing, no epsilon.
train_images > 0 trains on the first N images only (for
timing a step; its epsilon is for that N)."""
import sys
import time

import numpy as np

import parml
from dpsgd_mnist_common import delta, idx, positional, private_trainer

args = sys.argv[1:]
epochs, target, seed, lr, momentum, batch, c, limit = positional(args, 15, 1.0, 0, 0.5, 0.9, 512, 0.1, 0)
normalise = len(args) > 8 and args[8] == "1"
cosine = len(args) > 9 and args[9] == "cosine"
average = float(args[10]) if len(args) > 10 else 0.0


def cnn(seed):
    # TF Privacy's tutorial CNN (16 8x8 filters stride 2, 32 4x4 stride 2, 32 units), tanh activations.
    return parml.Sequential(
        [
            parml.Conv2d(1, 16, 8, stride=2, padding=3), parml.Tanh(), parml.MaxPool2d(2, stride=1),  # (N, 16, 13, 13)
            parml.Conv2d(16, 32, 4, stride=2), parml.Tanh(), parml.MaxPool2d(2, stride=1),  # (N, 32, 4, 4)
            parml.Flatten(), parml.Linear(512, 32), parml.Tanh(), parml.Linear(32, 10),
        ],
        seed=seed,
    )


x_train = (idx("train-images-idx3-ubyte.gz").astype(np.float32) / 255).reshape(-1, 1, 28, 28)
y_train = idx("train-labels-idx1-ubyte.gz").astype(np.int32)
if limit > 0:
    x_train, y_train = x_train[:limit], y_train[:limit]
x_test = (idx("t10k-images-idx3-ubyte.gz").astype(np.float32) / 255).reshape(-1, 1, 28, 28)
y_test = idx("t10k-labels-idx1-ubyte.gz").astype(np.int32)
if normalise:
    x_train, x_test = (x_train - 0.1307) / 0.3081, (x_test - 0.1307) / 0.3081
with parml.Dataset(x_train, y_train) as train, parml.Dataset(x_test, y_test) as test:
    model = cnn(seed)
    trainer, sigma, q, steps = private_trainer(model, len(train), epochs, target, seed, lr, momentum, batch, c, cosine)
    with model, trainer:
        t0 = time.time()
        ema = parml.callbacks.ParameterAverage(average) if average > 0 else None
        history = trainer.fit(
            train, epochs=epochs, batch_size=batch, verbose="plain",
            callbacks=[ema] if ema is not None else None, callback_every_steps=1 if ema is not None else None,
        )
        result = trainer.evaluate(test)
        averaged = ""
        if ema is not None:
            ema.apply(model)
            averaged = f", average (decay {average}, {ema.updates} iterates) test accuracy {trainer.evaluate(test).accuracy:.4f}"
        print(
            f"tanh CNN, sigma {sigma:.4f}, C {c}, batch {batch} (Poisson, q {q:.5f}), lr {lr}, momentum {momentum}, {epochs} epochs "
            f"({steps} steps), seed {seed}{', normalised' if normalise else ''}{', cosine lr' if cosine else ''}: epsilon {trainer.epsilon:.3f} (delta {delta}, target {target}), "
            f"test accuracy {result.accuracy:.4f}{averaged}, {time.time() - t0:.0f} s",
            flush=True,
        )
