"""Autoencoder pictures: original | reconstruction, or original | noisy | denoised."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genkeras.pictures.grid import save_panels


def reconstruction_pictures(model, examples, view, out_dir, seed: int = 0) -> list[Path]:
    """Original | reconstruction, or original | noisy | denoised when the view adds noise.

    Args:
        model: has `reconstruct` and `denoise`.
        examples: dict with `image` [N, H, W, C] test images in [0, 1].
        view: the model's `genkeras.data.View`.
        out_dir: folder for `reconstructions.png`.
        seed: seeds the noise.
    """
    import tensorflow as tf

    originals = examples["image"][:20]
    if view.noise is None:
        panels = [("Original", originals), ("Reconstruction", model.reconstruct(originals))]
    else:
        noisy = view.noise.apply(
            tf.constant(originals), tf.random.Generator.from_seed(seed)
        ).numpy()
        panels = [
            ("Original", originals),
            (f"Noisy ({view.noise})", noisy),
            ("Denoised", model.denoise(noisy)),
        ]
    return [
        save_panels(
            [(name, np.asarray(images)) for name, images in panels],
            Path(out_dir) / "reconstructions.png",
        )
    ]
