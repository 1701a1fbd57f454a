"""Build `static/explorer_data.json`, the data bundled with the latent explorer page.

    python -m genkeras.serving.explorer_data [--savedmodels savedmodels] [--count 32] [--hist 500]

It holds (a) the first `count` MNIST test digits (0-255 integers, row-major 28x28) with their
labels and two attribute scores computed from the pixels, and (b) for every shipped model with a
`log_prob` signature, a histogram of log p(x) over the first `hist` test images, computed with
the SavedModel's own `log_prob` signature, i.e. exactly what the server answers. Run it again
after re-exporting a likelihood model. Attributes:

* `thickness`: stroke width ~ 2 * ink area / ink perimeter (pixels above 0.5), which does not
  depend much on the digit's class;
* `slant`: the image moment mu11 / mu02 (positive leans right).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

STATIC = Path(__file__).resolve().parent / "static"


def thickness(image: np.ndarray) -> float:
    ink = image > 0.5
    padded = np.pad(ink, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & ink
    perimeter = max(int(ink.sum() - interior.sum()), 1)
    return float(2.0 * ink.sum() / perimeter)


def slant(image: np.ndarray) -> float:
    ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    mass = image.sum() + 1e-8
    cx, cy = (xs * image).sum() / mass, (ys * image).sum() / mass
    mu11 = ((xs - cx) * (ys - cy) * image).sum() / mass
    mu02 = ((ys - cy) ** 2 * image).sum() / mass
    return float(-mu11 / (mu02 + 1e-8))  # y grows downwards: a right lean has mu11 < 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--savedmodels", default="savedmodels")
    parser.add_argument("--count", type=int, default=32)
    parser.add_argument("--hist", type=int, default=500)
    parser.add_argument("--bins", type=int, default=40)
    parser.add_argument("--output", default=str(STATIC / "explorer_data.json"))
    args = parser.parse_args(argv)

    import tensorflow as tf

    from genkeras.data import take_examples

    examples = take_examples("mnist", "test", max(args.count, args.hist))
    images = np.asarray(examples["image"], np.float32)
    if images.max() > 1.5:
        images = images / 255.0
    labels = np.asarray(examples["label"]).astype(int)
    digits = images[: args.count, :, :, 0]
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
    for folder in sorted(Path(args.savedmodels).glob("*/")):
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
        for start in range(0, args.hist, 50):
            batch = {"images": tf.constant(images[start : start + 50])}
            if "labels" in signature.structured_input_signature[1]:
                batch["labels"] = tf.constant(labels[start : start + 50], tf.int32)
            values.append(signature(**batch)["log_prob"].numpy())
        values = np.concatenate(values)[: args.hist]
        counts, edges = np.histogram(values, bins=args.bins)
        doc["log_prob_histograms"][folder.name] = {
            "version": int(versions[-1].name),
            "n": int(len(values)),
            "counts": counts.tolist(),
            "edges": [round(float(e), 3) for e in edges],
            "values": sorted(round(float(v), 2) for v in values),  # for percentiles
        }
        print(f"{folder.name}: log_prob mean {values.mean():.1f} over {len(values)} test images")
    Path(args.output).write_text(json.dumps(doc, separators=(",", ":")))
    print(f"wrote {args.output} ({Path(args.output).stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
