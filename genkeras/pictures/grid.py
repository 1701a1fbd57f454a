"""The grid helper every picture uses: images tiled into grids, saved as PNG files."""

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


def save_grid(images, columns, path, title=None, row_labels=None, column_labels=None) -> Path:
    """Saves one grid of images as a PNG, with an optional title and row / column tick labels.

    Args:
        images: [N, H, W, C] in [0, 1], laid out row by row.
        columns: images per row.
        path: the PNG file to write.
        title: optional title above the grid.
        row_labels, column_labels: optional tick labels, one per row / column.

    Returns:
        The path written.
    """
    grid = tile(np.asarray(images), columns)
    height = grid.shape[0] / grid.shape[1] * 6
    figure, axis = plt.subplots(figsize=(6.4, max(1.6, height + (0.6 if title else 0.2))))
    show_grid(axis, grid)
    axis.set_xticks([])
    axis.set_yticks([])
    if column_labels is not None:
        size = images.shape[2] + 1
        axis.set_xticks([size * i + size / 2 - 1 for i in range(len(column_labels))])
        axis.set_xticklabels(column_labels, fontsize=7)
    if row_labels is not None:
        size = images.shape[1] + 1
        axis.set_yticks([size * i + size / 2 - 1 for i in range(len(row_labels))])
        axis.set_yticklabels(row_labels, fontsize=7)
    if title:
        axis.set_title(title, fontsize=9)
    return save_figure(figure, path)
