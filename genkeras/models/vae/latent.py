"""Latent-space tools of the lecture: a grid over the code space, averaging codes
(interpolation), and attribute vectors ("add smile") for editing.

Each takes codes as numpy arrays or a `VAE` (`posterior`, `decode`); conditional models also
take their labels.
"""

from __future__ import annotations

import numpy as np


def latent_grid(dims=(0, 1), latent_dim=2, steps=15, extent=2.5, base=None) -> np.ndarray:
    """Codes on a `steps` x `steps` grid over two dimensions, the others at `base` (0).

    The grid spans the Gaussian quantiles in [-extent, extent] (rows: second dim, top = high).
    Returns [steps * steps, latent_dim] float32.
    """
    values = np.linspace(-extent, extent, steps, dtype=np.float32)
    base = np.zeros(latent_dim, np.float32) if base is None else np.asarray(base, np.float32)
    codes = np.repeat(base[None], steps * steps, axis=0)
    for row, y in enumerate(values[::-1]):
        for column, x in enumerate(values):
            codes[row * steps + column, dims[0]] = x
            codes[row * steps + column, dims[1]] = y
    return codes


def most_active_dims(model, images, labels=None, count=2) -> list[int]:
    """The `count` latent dimensions whose posterior means vary most over `images`."""
    z_mean, _ = model.posterior(images, labels)
    return [int(d) for d in np.argsort(-np.asarray(z_mean).var(axis=0))[:count]]


def interpolate_codes(z_a, z_b, steps=9) -> np.ndarray:
    """(1 - t) z_a + t z_b for t in [0, 1]; t = 0.5 is the average of the two codes."""
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    return (1.0 - t) * np.asarray(z_a, np.float32)[None] + t * np.asarray(z_b, np.float32)[None]


def attribute_vector(codes, has_attribute) -> np.ndarray:
    """s = mean(z | attribute) - mean(z | not attribute), as in the lecture's "add smile"."""
    codes = np.asarray(codes, np.float32)
    mask = np.asarray(has_attribute, bool)
    if mask.all() or not mask.any():
        raise ValueError("attribute_vector needs examples with and without the attribute.")
    return codes[mask].mean(axis=0) - codes[~mask].mean(axis=0)


def edit_codes(mu, s, ks=range(-4, 5)) -> np.ndarray:
    """mu + k s for each k: [len(ks), D] (or [len(ks) * N, D] for a batch of mu [N, D])."""
    mu = np.atleast_2d(np.asarray(mu, np.float32))
    return np.concatenate([mu + k * np.asarray(s, np.float32) for k in ks], axis=0)


def attribute_editing(model, images, has_attribute, labels=None, ks=range(-4, 5), which=(0,)):
    """Edits the codes of `images[which]` along the attribute vector of `images`.

    Args:
        model: a VAE.
        images: [N, H, W, C] examples, with and without the attribute.
        has_attribute: [N] bools (MNIST: thick strokes; CelebA: `Smiling`).
        labels: labels for a conditional model.
        ks: multiples of s, -4..4 as in the lecture.
        which: indices of the images whose codes are edited.

    Returns:
        dict: `s` [D], `ks`, `images` [len(which) * len(ks), H, W, C] ordered k-major.
    """
    z_mean, _ = model.posterior(images, labels)
    z_mean = np.asarray(z_mean)
    s = attribute_vector(z_mean, has_attribute)
    which = list(which)
    ks = list(ks)
    codes = edit_codes(z_mean[which], s, ks)
    edit_labels = None if labels is None else np.tile(np.asarray(labels)[which], len(ks))
    return {"s": s, "ks": ks, "images": np.asarray(model.decode(codes, edit_labels))}


def stroke_thickness(images) -> np.ndarray:
    """Mean ink per image: the measurable MNIST attribute used for editing."""
    return np.asarray(images, np.float32).reshape(len(images), -1).mean(axis=1)
