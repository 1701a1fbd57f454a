"""The pixel models' pictures: samples, completions of half-hidden digits, and a histogram of
bits per dimension (the registry's `pictures` hook for pixelcnn and pixelrnn)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genkeras.models.pixel.samplers import compiled_completer, compiled_sampler, complete, sample
from genkeras.pictures.grid import save_figure, save_grid, save_panels


def pixel_pictures(model, examples, view, out_dir, seed: int = 0) -> list[Path]:
    """Samples (temperature 1), and completions of the top half of test images.

    Files: `samples.png` (16 samples from the fast sampler; a conditional model: 8 per class,
    one row per label) and `completions.png` (original | top half given | three completions
    with different seeds; a conditional model completes with the true labels).
    """
    out_dir = Path(out_dir)
    labels = examples.get("label") if model.conditional else None
    if model.conditional:
        per_class = 8
        sample_labels = np.repeat(np.arange(model.num_classes), per_class)
        samples = sample(model, len(sample_labels), seed, 1.0, labels=sample_labels).numpy()
        picture = save_grid(
            samples,
            per_class,
            out_dir / "samples.png",
            title="samples (T=1), one row per label y",
            row_labels=[f"y = {label}" for label in range(model.num_classes)],
        )
    else:
        samples = compiled_sampler(model)(16, seed, 1.0).numpy()
        picture = save_panels([("samples (T=1)", samples)], out_dir / "samples.png", columns=4)
    paths = [picture]

    images = np.asarray(examples["image"][:8], np.float32)
    if view.binarize:
        images = (images >= 0.5).astype(np.float32)
    rows = model.image_shape[0] // 2
    given = images.copy()
    given[:, rows:] = 0.5
    panels = [("original", images), (f"top {rows} rows", given)]
    for index in range(3):
        if model.conditional:
            done = complete(model, images, rows, seed + index, labels=labels[:8]).numpy()
        else:
            done = compiled_completer(model)(images, rows, seed + index).numpy()
        panels.append((f"seed {seed + index}", done))
    paths.append(save_panels(panels, out_dir / "completions.png", columns=2))
    return paths


def bits_per_dim_histogram(per_image: dict, path, title=None) -> Path:
    """Histogram PNG of per-image bits/dim, one series per data set name."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for name, values in per_image.items():
        axis.hist(values, bins=80, alpha=0.55, density=True, label=name)
    axis.set_xlabel("bits per dimension (lower = more likely)")
    axis.set_ylabel("density")
    axis.legend()
    if title:
        axis.set_title(title)
    return save_figure(figure, path)
