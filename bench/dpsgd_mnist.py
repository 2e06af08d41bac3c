"""DP-SGD on MNIST (issue 21): an MLP trained privately with Poisson
sampling, epsilon from the trainer's accountant, test accuracy.

  PYTHONPATH=bindings/python python3 bench/dpsgd_mnist.py [epochs] [sigma] [seed] [lr] [momentum]

Data from ../shared/data/mnist (kept out of the repository). Pixels in
[0, 1] as load_idx gives them, centred by the training mean."""
import os
import sys
import time

import numpy as np

import parml

root = os.environ.get("MNIST_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist"))
epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
sigma = float(sys.argv[2]) if len(sys.argv) > 2 else 1.26
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
lr = float(sys.argv[4]) if len(sys.argv) > 4 else 0.5
momentum = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
batch, c, delta = 256, 1.0, 1e-5

with parml.load_idx(f"{root}/train-images-idx3-ubyte.gz", f"{root}/train-labels-idx1-ubyte.gz") as train, parml.load_idx(
    f"{root}/t10k-images-idx3-ubyte.gz", f"{root}/t10k-labels-idx1-ubyte.gz"
) as test:
    model = parml.Sequential([parml.Flatten(), parml.Linear(784, 512), parml.ReLU(), parml.Linear(512, 10)], seed=seed)
    privacy = parml.Privacy(noise_multiplier=sigma, max_grad_norm=c, delta=delta)
    with model, parml.Trainer(
        model, optimizer=parml.SGD(lr, momentum=momentum), strategy=parml.Strategy(seed=seed), privacy=privacy
    ) as trainer:
        t0 = time.time()
        history = trainer.fit(train, epochs=epochs, batch_size=batch, verbose="plain")
        result = trainer.evaluate(test)
        print(
            f"MLP 784-512-10, sigma {sigma}, C {c}, batch {batch} (Poisson), lr {lr}, momentum {momentum}, {epochs} epochs, seed {seed}: "
            f"epsilon {trainer.epsilon:.3f} (delta {delta}), test accuracy {result.accuracy:.4f}, {time.time() - t0:.0f} s"
        )
