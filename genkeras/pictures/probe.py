"""The linear probe's picture: test accuracy against labels per class, one line per model."""

from __future__ import annotations

from pathlib import Path

from genkeras.pictures.grid import plt, save_figure


def probe_figure(results: dict, path) -> Path:
    """Accuracy (mean and spread over draws) against labelled digits per class, log scale.

    Args:
        results: `genkeras.evaluation.probe.probe`'s dict.
        path: the PNG file to write.

    Returns:
        The path written.
    """
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, row in results.items():
        counts = sorted(row, key=int)
        means = [100 * row[n]["mean"] for n in counts]
        spreads = [100 * row[n]["std"] for n in counts]
        axis.errorbar(
            [int(n) for n in counts], means, yerr=spreads, marker="o", capsize=3, label=name
        )
    axis.set_xscale("log")
    axis.set_xlabel("labelled training digits per class")
    axis.set_ylabel("MNIST test accuracy of a linear probe (%)")
    axis.set_title("Features learned without labels")
    axis.grid(alpha=0.3)
    axis.legend()
    return save_figure(figure, path)
