"""PNG pictures: image grids side by side, as in the lecture's "Results on the Test Set"."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def tile(images, columns: int) -> np.ndarray:
    """Tiles [N, H, W, C] images in [0, 1] into one [rows*H, columns*W, C] array, 1px gaps."""
    images = np.clip(np.asarray(images, np.float32), 0, 1)
    count, height, width, channels = images.shape
    rows = -(-count // columns)
    grid = np.ones((rows * (height + 1) - 1, columns * (width + 1) - 1, channels), np.float32)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        grid[
            row * (height + 1) : row * (height + 1) + height,
            column * (width + 1) : column * (width + 1) + width,
        ] = image
    return grid


def show_grid(axis, grid) -> None:
    """Draws a `tile` result on a matplotlib axis: grayscale for one channel, RGB for three."""
    axis.imshow(grid.squeeze(-1) if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=1)


def save_figure(figure, path) -> Path:
    """Lays `figure` out, writes it as a PNG at `path` (creating its folder) and closes it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def save_panels(panels, path, columns: int = 4, title: str | None = None) -> Path:
    """Saves grids side by side, one titled panel per `(title, images)` pair.

    Args:
        panels: list of `(title, images [N, H, W, C])`.
        path: the PNG file to write.
        columns: images per row inside each panel.
        title: optional figure title.

    Returns:
        The path written.
    """
    figure, axes = plt.subplots(
        1, len(panels), figsize=(2.6 * len(panels) * columns / 4, 3.6), squeeze=False
    )
    for axis, (name, images) in zip(axes[0], panels, strict=True):
        show_grid(axis, tile(images, columns))
        axis.set_title(name)
        axis.axis("off")
    if title:
        figure.suptitle(title)
    return save_figure(figure, path)


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
