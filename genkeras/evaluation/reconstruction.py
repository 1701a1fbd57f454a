"""Test-set metrics. Every figure in metrics.json and docs/benchmarks.md comes from here."""

from __future__ import annotations

import numpy as np


def psnr(mse: float) -> float:
    """Peak signal-to-noise ratio in dB for pixels in [0, 1]: 10 log10(1 / MSE)."""
    return float(10 * np.log10(1.0 / max(mse, 1e-12)))


class _SquaredError:
    """Streams squared errors: per-pixel MSE and per-image sum (Hinton & Salakhutdinov's figure)."""

    def __init__(self):
        self.total, self.pixels, self.images = 0.0, 0, 0

    def add(self, predictions, targets):
        error = (np.asarray(predictions, np.float64) - np.asarray(targets, np.float64)) ** 2
        self.total += error.sum()
        self.pixels += error.size
        self.images += len(error)

    def metrics(self, prefix: str) -> dict:
        mse = self.total / self.pixels
        return {
            f"{prefix}mse": mse,
            f"{prefix}psnr": psnr(mse),
            f"{prefix}squared_error_per_image": self.total / self.images,
        }


def reconstruction_metrics(model, batches, view) -> dict:
    """Test MSE, PSNR and squared error per image of a model that reconstructs images.

    With noise in `view`, the model denoises: the `test_*` figures compare its output on the
    noisy inputs with the clean images, and `noisy_input_*` measure the noisy inputs themselves.

    Args:
        model: has `reconstruct(images)` and `denoise(images)`.
        batches: `(inputs, clean_images)` pairs from `genkeras.data.pipeline`.
        view: the `genkeras.data.View` the batches were made with.

    Returns:
        A dict of floats: test_mse, test_psnr, test_squared_error_per_image, and with noise
        also noisy_input_mse, noisy_input_psnr, noisy_input_squared_error_per_image.
    """
    output, noisy = _SquaredError(), _SquaredError()
    restore = model.denoise if view.noise is not None else model.reconstruct
    for inputs, targets in batches:
        output.add(restore(inputs), targets)
        noisy.add(inputs, targets)
    metrics = output.metrics("test_")
    if view.noise is not None:
        metrics.update(noisy.metrics("noisy_input_"))
    return metrics
