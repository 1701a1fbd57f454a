"""Building `static/explorer_data.json`, the data bundled with the latent explorer page.

It holds (a) the first `count` MNIST test digits (0-255 integers, row-major 28x28) with their
labels and two attribute scores computed from the pixels, and (b) for every shipped model with a
`log_prob` signature, a histogram of log p(x) over the first `hist` test images, computed with
the SavedModel's own `log_prob` signature, i.e. exactly what the server answers. Build it again
after re-exporting a likelihood model (`genkeras/commands/explorer_data.py`). Attributes:

* `thickness`: stroke width ~ 2 * ink area / ink perimeter (pixels above 0.5), which does not
  depend much on the digit's class;
* `slant`: the image moment mu11 / mu02 (positive leans right).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from genkeras.serving.explorer.routes import STATIC_DIR

DEFAULT_OUTPUT = STATIC_DIR / "explorer_data.json"


def thickness(image: np.ndarray) -> float:
    """Stroke width of a digit: 2 * ink area / ink perimeter, ink being pixels above 0.5.

    Args:
        image: one image, `[height, width]`, values in [0, 1].

    Returns:
        The width in pixels.
    """
    ink = image > 0.5
    padded = np.pad(ink, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & ink
    perimeter = max(int(ink.sum() - interior.sum()), 1)
    return float(2.0 * ink.sum() / perimeter)


def slant(image: np.ndarray) -> float:
    """Slant of a digit: the image moment -mu11 / mu02, positive when it leans right.

    Args:
        image: one image, `[height, width]`, values in [0, 1].

    Returns:
        The slant (horizontal shift per row, in pixels).
    """
    ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    mass = image.sum() + 1e-8
    cx, cy = (xs * image).sum() / mass, (ys * image).sum() / mass
    mu11 = ((xs - cx) * (ys - cy) * image).sum() / mass
    mu02 = ((ys - cy) ** 2 * image).sum() / mass
    return float(-mu11 / (mu02 + 1e-8))  # y grows downwards: a right lean has mu11 < 0


def build_explorer_data(
    savedmodels: str | Path = "savedmodels",
    count: int = 32,
    hist: int = 500,
    bins: int = 40,
    echo: Callable[[str], None] | None = None,
) -> dict:
    """The explorer's data document: test digits with attributes, log p(x) histograms.

    Args:
        savedmodels: the folder of exported models (`NAME/VERSION/`); the latest version of
            each model with a `log_prob` signature gets a histogram.
        count: how many MNIST test digits to bundle.
        hist: how many test images each histogram covers.
        bins: histogram bins.
        echo: called with one line per model histogram (its mean log p(x)); `None` is quiet.

    Returns:
        The document, ready for `json.dumps`.
    """
    import tensorflow as tf

    from genkeras.data import take_examples

    examples = take_examples("mnist", "test", max(count, hist))
    images = np.asarray(examples["image"], np.float32)
    if images.max() > 1.5:
        images = images / 255.0
    labels = np.asarray(examples["label"]).astype(int)
    digits = images[:count, :, :, 0]
    doc = {
        "source": "MNIST test split, first examples (genkeras.data.take_examples)",
        "digits": [
            {
                "label": int(labels[i]),
                "pixels": [int(round(v * 255)) for v in digits[i].reshape(-1)],
                "thickness": round(thickness(digits[i]), 4),
                "slant": round(slant(digits[i]), 4),
            }
            for i in range(len(digits))
        ],
        "attributes": {
            "thickness": "stroke width: 2 * ink area / ink perimeter",
            "slant": "image moment -mu11 / mu02 (positive leans right)",
        },
        "log_prob_histograms": {},
    }
    for folder in sorted(Path(savedmodels).glob("*/")):
        versions = sorted(
            (p for p in folder.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
        )
        if not versions:
            continue
        loaded = tf.saved_model.load(str(versions[-1]))
        if "log_prob" not in loaded.signatures:
            continue
        signature = loaded.signatures["log_prob"]
        values = []
        for start in range(0, hist, 50):
            batch = {"images": tf.constant(images[start : start + 50])}
            if "labels" in signature.structured_input_signature[1]:
                batch["labels"] = tf.constant(labels[start : start + 50], tf.int32)
            values.append(signature(**batch)["log_prob"].numpy())
        values = np.concatenate(values)[:hist]
        counts, edges = np.histogram(values, bins=bins)
        doc["log_prob_histograms"][folder.name] = {
            "version": int(versions[-1].name),
            "n": int(len(values)),
            "counts": counts.tolist(),
            "edges": [round(float(e), 3) for e in edges],
            "values": sorted(round(float(v), 2) for v in values),  # for percentiles
        }
        if echo is not None:
            echo(f"{folder.name}: log_prob mean {values.mean():.1f} over {len(values)} test images")
    return doc
