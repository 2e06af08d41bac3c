"""What the private MNIST benches share (bench/dpsgd_mnist_cnn.py,
bench/dpsgd_mnist_scatter.py): reading MNIST's idx files from
../shared/data/mnist or $MNIST_DIR (kept out of the repository), and a
private trainer whose sigma the accountant chooses for a target epsilon
over the steps fit takes."""
import gzip
import math
import os

root = os.environ.get("MNIST_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist"))
delta = 1e-5


def positional(args, *defaults):
    """The command line's positional values, each converted to its default's
    type; the default where the command line stops."""
    return [type(d)(args[i]) if i < len(args) else d for i, d in enumerate(defaults)]


def idx(name):
    import numpy as np

    with gzip.open(f"{root}/{name}") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def private_trainer(model, n, epochs, target, seed, lr, momentum, batch, c, cosine=False):
    """(trainer, sigma, q, steps): DP-SGD with Poisson sampling at
    q = batch / n, sigma the smallest whose epsilon (delta 1e-5) after fit's
    epochs * ceil(n / batch) steps is at most target."""
    import parml

    q = batch / n
    steps = epochs * math.ceil(n / batch)  # fit's steps: ceil(n / batch) an epoch
    sigma = parml.privacy.sigma_for(target, q=q, delta=delta, steps=steps)
    privacy = parml.Privacy(noise_multiplier=sigma, max_grad_norm=c, delta=delta)
    trainer = parml.Trainer(
        model,
        optimizer=parml.SGD(lr, momentum=momentum, schedule=parml.schedules.cosine(steps) if cosine else None),
        strategy=parml.Strategy(seed=seed), privacy=privacy,
    )
    return trainer, sigma, q, steps
