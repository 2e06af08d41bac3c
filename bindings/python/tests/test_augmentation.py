"""Augmentation in the data path (issue 18, part 5): Dataset.set_augmentation
makes Trainer.fit train on randomly cropped (zero padding) and flipped
images, drawn from (seed, epoch, sample) by Philox4x32-10, so every layout
sees the same images; evaluation sees them unchanged.

The reference here recomputes each image the long way: its Philox block (a
Python Philox4x32-10), the image padded with zeros, the window cut out and
mirrored. Steps on those images, batch by batch, give fit's parameters bit
for bit."""

from __future__ import annotations

import numpy as np
import pytest

import parml

M32 = 0xFFFFFFFF


def philox_block(counter, key):
    """Philox4x32-10 (Salmon et al. 2011) of a 128-bit counter (four words)
    under a 64-bit key (two words)."""
    x0, x1, x2, x3 = counter
    k0, k1 = key
    for _ in range(10):
        p0, p1 = 0xD2511F53 * x0, 0xCD9E8D57 * x2
        x0, x1, x2, x3 = ((p1 >> 32) ^ x1 ^ k0) & M32, p1 & M32, ((p0 >> 32) ^ x3 ^ k1) & M32, p0 & M32
        k0, k1 = (k0 + 0x9E3779B9) & M32, (k1 + 0xBB67AE85) & M32
    return x0, x1, x2, x3


def augmented(image, seed, epoch, sample, padding, flip):
    """One (C, H, W) image as fit transforms it in epoch `epoch`."""
    stream = 0x8000_0000_0000 | epoch
    w = philox_block((sample & M32, sample >> 32, stream & M32, stream >> 32), (seed & M32, seed >> 32))
    top, left = (w[0] * (2 * padding + 1)) >> 32, (w[1] * (2 * padding + 1)) >> 32
    c, h, wd = image.shape
    padded = np.zeros((c, h + 2 * padding, wd + 2 * padding), np.float32)
    padded[:, padding : padding + h, padding : padding + wd] = image
    out = padded[:, top : top + h, left : left + wd]
    return out[:, :, ::-1] if flip and w[2] >> 31 else out


def images(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 8, 8), dtype=np.float32), (np.arange(n) % 3).astype(np.int64)


def cnn(seed=4):
    return parml.Sequential(
        [parml.Conv2d(1, 4, 3, padding=1), parml.ReLU(), parml.MaxPool2d(2), parml.Flatten(), parml.Linear(64, 3)], seed=seed
    )


def fit_params(strategy, epochs=2, padding=2, flip=True, augment=True):
    x, y = images()
    with cnn() as model, parml.Trainer(model, optimizer=parml.SGD(0.05, 0.9), strategy=strategy) as t:
        with parml.Dataset(x, y) as data:
            if augment:
                data.set_augmentation(crop_padding=padding, horizontal_flip=flip)
            t.fit(data, epochs=epochs, batch_size=8, shuffle=False, verbose=False)
        return model.state_dict()


@pytest.mark.parametrize("padding,flip", [(2, True), (3, False), (0, True)])
def test_fit_trains_on_the_reference_images(padding, flip):
    """fit over an augmented dataset, unshuffled, equals steps on the
    reference images of each batch, bit for bit."""
    seed = 11
    got = fit_params(parml.Strategy(seed=seed, blas_threads=1), padding=padding, flip=flip)
    x, y = images()
    with cnn() as model, parml.Trainer(model, optimizer=parml.SGD(0.05, 0.9), strategy=parml.Strategy(seed=seed, blas_threads=1)) as t:
        for epoch in range(2):
            batch = np.stack([augmented(x[s], seed, epoch, s, padding, flip) for s in range(len(x))])
            for b in range(0, len(x), 8):
                t.step(batch[b : b + 8], y[b : b + 8])
        want = model.state_dict()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    plain = fit_params(parml.Strategy(seed=seed, blas_threads=1), augment=False)
    assert any(not np.array_equal(plain[n], got[n]) for n in got), "augmentation changed nothing"


def test_reference_draws_are_spread():
    """The reference's offsets cover 0..2p and about half the images flip."""
    tops, flips = np.zeros(9, int), 0
    for s in range(2000):
        w = philox_block((s, 0, 0x8000_0000_0000 & M32, 0x8000_0000_0000 >> 32), (5, 0))
        tops[(w[0] * 9) >> 32] += 1
        flips += w[2] >> 31
    assert tops.min() > 150 and 900 < flips < 1100, (tops, flips)


@pytest.mark.parametrize("layout", [dict(dp=2), dict(pp=2, micro_batches=2), dict(dp=2, pp=2, micro_batches=2, zero=1)])
def test_every_layout_trains_on_the_same_images(layout):
    serial = fit_params(parml.Strategy(deterministic=True, seed=3))
    split = fit_params(parml.Strategy(deterministic=True, seed=3, **layout))
    for name in serial:
        np.testing.assert_array_equal(split[name], serial[name], err_msg=name)


def test_evaluation_sees_the_images_unchanged():
    x, y = images()
    with cnn() as model, parml.Trainer(model) as t, parml.Dataset(x, y) as plain, parml.Dataset(x, y) as data:
        data.set_augmentation(crop_padding=3, horizontal_flip=True)
        assert t.evaluate(data) == t.evaluate(plain)
        data.set_augmentation()  # off again


def test_bad_parameters_are_refused():
    x, y = images(4)
    with parml.Dataset(x, y) as data:
        with pytest.raises(parml.InvalidArgumentError, match=r"crop_padding 8 must be below the images' height and width \(8x8\)"):
            data.set_augmentation(crop_padding=8)
        with pytest.raises(parml.InvalidArgumentError, match="crop_padding"):
            data.set_augmentation(crop_padding=-1)
        with pytest.raises(TypeError):
            data.set_augmentation(crop_padding=1.5)
        with pytest.raises(TypeError):
            data.set_augmentation(horizontal_flip=1)
        assert data.set_augmentation(crop_padding=7, horizontal_flip=True) is data
    with parml.Dataset(np.zeros((4, 5), np.float32), np.zeros(4, np.int64)) as flat:
        with pytest.raises(parml.ShapeError, match=r"\(C, H, W\) or \(H, W\)"):
            flat.set_augmentation(horizontal_flip=True)
    with parml.TokenDataset(np.arange(50, dtype=np.int32) % 7, block_size=4) as tokens:
        with pytest.raises(parml.InvalidArgumentError, match="token windows"):
            tokens.set_augmentation(horizontal_flip=True)
