"""The VAE family's pictures: samples, reconstructions, the latent manifold, interpolation
and attribute editing (the registry's `pictures` hook for vae, conv_vae and cvae)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from genkeras.models.vae.latent import (
    attribute_editing,
    interpolate_codes,
    latent_grid,
    most_active_dims,
    stroke_thickness,
)
from genkeras.pictures.grid import save_grid, save_panels


def vae_pictures(model, examples, view=None, out_dir=".", seed=0) -> list[Path]:
    """samples.png, reconstructions.png, manifold.png, interpolation.png, attribute_editing.png.

    The registry's `pictures` for the VAE family. `examples` holds test `image` (and `label`);
    with `view.binarize` the examples are binarized (a fixed draw) as the model saw them.
    Editing figures are also written as numbers into `attribute_editing.json`.
    """
    out_dir = Path(out_dir)
    images = np.asarray(examples["image"], np.float32)
    if view is not None and view.binarize:
        images = (np.random.default_rng(seed).random(images.shape) < images).astype(np.float32)
    labels = np.asarray(examples["label"], np.int32) if model.num_classes else None
    paths = []

    # Samples from the prior; the conditional model draws one row per class.
    if model.num_classes:
        count = min(model.num_classes, 10)
        sample_labels = np.repeat(np.arange(count, dtype=np.int32), 8)
        samples = model.sample(len(sample_labels), seed, sample_labels)
        paths.append(
            save_grid(
                np.asarray(samples),
                8,
                out_dir / "samples.png",
                "Samples z ~ N(0, I), one row per label",
                row_labels=list(range(count)),
            )
        )
        # Same z (style), every label: the conditional model separates style from class.
        z = np.repeat(
            np.random.default_rng(seed).standard_normal((6, model.latent_dim)).astype(np.float32),
            count,
            0,
        )
        style = model.decode(z, np.tile(np.arange(count, dtype=np.int32), 6))
        paths.append(
            save_grid(
                np.asarray(style),
                count,
                out_dir / "styles.png",
                "One z per row decoded with every label",
            )
        )
    else:
        samples = model.sample(64, seed)
        paths.append(
            save_grid(
                np.asarray(samples), 8, out_dir / "samples.png", "Samples: decoder(z), z ~ N(0, I)"
            )
        )

    originals = images[:16]
    recon = np.asarray(model.reconstruct(originals, None if labels is None else labels[:16]))
    paths.append(
        save_panels(
            [("Original", originals), ("Reconstruction", recon)], out_dir / "reconstructions.png"
        )
    )

    # The 2-D latent manifold (over the two most used dimensions for larger latents).
    dims = [0, 1] if model.latent_dim == 2 else most_active_dims(model, images, labels)
    steps = 15
    codes = latent_grid(dims, model.latent_dim, steps)
    grid_labels = None if labels is None else np.full(len(codes), labels[0], np.int32)
    manifold = model.decode(codes, grid_labels)
    title = f"Decoder over a grid of z{dims[0]}, z{dims[1]} in [-2.5, 2.5]"
    if model.latent_dim > 2:
        title += " (other dims 0)"
    paths.append(save_grid(np.asarray(manifold), steps, out_dir / "manifold.png", title))

    # Interpolation strips between pairs of test images: decoding averaged code vectors.
    z_mean, _ = model.posterior(images, labels)
    z_mean = np.asarray(z_mean)
    rows = []
    for a, b in [(0, 1), (2, 3), (4, 5)]:
        codes = interpolate_codes(z_mean[a], z_mean[b], 9)
        strip_labels = (
            None
            if labels is None
            else np.where(np.arange(9) < 5, labels[a], labels[b]).astype(np.int32)
        )
        rows.append(
            np.concatenate(
                [
                    images[a : a + 1],
                    np.asarray(model.decode(codes, strip_labels)),
                    images[b : b + 1],
                ]
            )
        )
    paths.append(
        save_grid(
            np.concatenate(rows),
            11,
            out_dir / "interpolation.png",
            "x_a | decoder((1-t) z_a + t z_b), t = 0..1 | x_b",
        )
    )

    # Attribute editing: s = mean(z | thick) - mean(z | thin), decode mu + k s, k = -4..4.
    thickness = stroke_thickness(examples["image"])
    thick = thickness > np.median(thickness)
    ks = list(range(-4, 5))
    which = [0, 1, 2, 3]
    edited = attribute_editing(model, images, thick, labels, ks, which)
    per_k = edited["images"].reshape(len(ks), len(which), *images.shape[1:])
    ordered = per_k.transpose(1, 0, 2, 3, 4).reshape(-1, *images.shape[1:])
    paths.append(
        save_grid(
            ordered,
            len(ks),
            out_dir / "attribute_editing.png",
            "mu + k s, s = mean(z | thick) - mean(z | thin)",
            column_labels=[f"k={k}" for k in ks],
        )
    )
    measured = {f"k={k}": float(stroke_thickness(per_k[i]).mean()) for i, k in enumerate(ks)}
    (out_dir / "attribute_editing.json").write_text(
        json.dumps(
            {
                "attribute": "stroke thickness (mean intensity above the median)",
                "mean_intensity_of_edited_images": measured,
                "norm_of_s": float(np.linalg.norm(edited["s"])),
            },
            indent=2,
        )
        + "\n"
    )
    return paths
