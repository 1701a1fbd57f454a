"""VAE evaluation and latent-space pictures: IWAE likelihood, KL per dimension, active units,
samples, the latent manifold, interpolation by averaging codes and attribute editing.

Everything takes a `genkeras.models.vae.VAE`; conditional models get their labels from the
batches (`(images, labels)`) or from `examples["label"]`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from genkeras import pictures

# ---------------------------------------------------------------------------------------------
# Batches and compiled helpers.


def _split(batch, model):
    """`images` or `(images, labels)` (or `(inputs, targets)` pairs) -> `(images, labels|None)`."""
    if isinstance(batch, (tuple, list)):
        first = batch[0]
        if isinstance(first, (tuple, list)):  # ((images, labels), targets)
            return first[0], first[1] if model.num_classes else None
        return first, batch[1] if model.num_classes else None
    return batch, None


def _log_weights_fn(model, num_samples):
    """A compiled `(images, labels, seed) -> log w [k, N]`, one per model and k."""
    import tensorflow as tf

    cache = model.__dict__.setdefault("_genkeras_log_weight_fns", {})
    if num_samples not in cache:
        if model.num_classes:
            fn = lambda images, labels, seed: model.importance_log_weights(
                images, labels, num_samples, seed
            )
        else:
            fn = lambda images, labels, seed: model.importance_log_weights(
                images, None, num_samples, seed
            )
        cache[num_samples] = tf.function(fn, reduce_retracing=True)
    return cache[num_samples]


def importance_weighted_log_prob(model, images, labels=None, num_samples=5000, chunk=100, seed=0):
    """log p(x) estimates [N] with k = `num_samples` importance samples, `chunk` at a time.

    The running log-sum-exp is kept in float64, so k = 5000 fits in memory for any batch size
    that the decoder can take `chunk` times over.
    """
    import tensorflow as tf

    images = tf.convert_to_tensor(images, tf.float32)
    labels = (
        tf.zeros([tf.shape(images)[0]], tf.int32) if labels is None else tf.cast(labels, tf.int32)
    )
    total = None
    done = 0
    index = 0
    while done < num_samples:
        size = min(chunk, num_samples - done)
        log_w = _log_weights_fn(model, size)(
            images, labels, tf.constant(seed * 1_000_003 + index, tf.int32)
        )
        part = np.logaddexp.reduce(np.asarray(log_w, np.float64), axis=0)
        total = part if total is None else np.logaddexp(total, part)
        done += size
        index += 1
    return total - math.log(num_samples)


def iwae_nll(model, batches, num_samples=5000, chunk=100, max_images=None, seed=0) -> dict:
    """Test negative log-likelihood in nats from the k-sample importance-weighted bound.

    Args:
        model: a VAE.
        batches: test batches (images, or (images, labels)); already binarized for Bernoulli.
        num_samples: k per image (the IWAE paper reports k = 5000).
        chunk: samples decoded at once per image.
        max_images: stop after this many images (None = the whole split).

    Returns:
        dict: `iwae_nll` (mean), `iwae_nll_stderr`, `iwae_samples`, `iwae_images`.
    """
    values = []
    for batch in batches:
        images, labels = _split(batch, model)
        if max_images is not None:
            left = max_images - sum(len(v) for v in values)
            if left <= 0:
                break
            images = images[:left]
            labels = None if labels is None else labels[:left]
        values.append(
            -importance_weighted_log_prob(model, images, labels, num_samples, chunk, seed)
        )
    nll = np.concatenate(values)
    return {
        "iwae_nll": float(nll.mean()),
        "iwae_nll_stderr": float(nll.std(ddof=1) / math.sqrt(len(nll))) if len(nll) > 1 else 0.0,
        "iwae_samples": int(num_samples),
        "iwae_images": int(len(nll)),
    }


def posterior_statistics(model, batches, max_images=None, seed=0) -> dict:
    """One pass over `batches`: ELBO, KL per dimension, active units, sigma, reconstruction MSE.

    Active units follow Burda et al.: dimension d is active when Var_x(E_q[z_d | x]) > 0.01.
    `posterior_sigma_mean` is the mean of exp(z_log_var / 2): close to 0 when the posterior
    has collapsed to a point (beta = 0), close to 1 for dimensions the model does not use.
    """
    import keras
    from keras import ops

    rec, kl_dims, means, sigmas, squared, pixels = [], [], [], [], 0.0, 0
    count = 0
    for index, batch in enumerate(batches):
        images, labels = _split(batch, model)
        if max_images is not None and count >= max_images:
            break
        z_mean, z_log_var = model.posterior(images, labels)
        eps = keras.random.normal(ops.shape(z_mean), seed=seed * 7919 + index)
        reconstruction, kl, _, _ = model.elbo_terms(images, labels, eps=eps)
        from genkeras.models.vae import gaussian_kl

        rec.append(np.asarray(reconstruction))
        kl_dims.append(np.asarray(gaussian_kl(z_mean, z_log_var)))
        means.append(np.asarray(z_mean))
        sigmas.append(np.exp(0.5 * np.asarray(z_log_var)))
        recon = np.asarray(model.decode(z_mean, labels))
        squared += float(((recon - np.asarray(images)) ** 2).sum())
        pixels += recon.size
        count += len(recon)
    rec, kl_dims = np.concatenate(rec), np.concatenate(kl_dims)
    means, sigmas = np.concatenate(means), np.concatenate(sigmas)
    kl = kl_dims.sum(axis=1)
    activity = means.var(axis=0)
    return {
        "elbo": float(-(rec + kl).mean()),
        "negative_elbo": float((rec + kl).mean()),
        "reconstruction_loss": float(rec.mean()),
        "kl_loss": float(kl.mean()),
        "kl_per_dimension": [round(float(v), 4) for v in kl_dims.mean(axis=0)],
        "active_units": int((activity > 0.01).sum()),
        "latent_dim": int(model.latent_dim),
        "posterior_sigma_mean": float(sigmas.mean()),
        "reconstruction_mse": squared / max(pixels, 1),
        "statistics_images": int(count),
    }


def vae_metrics(model, batches, view=None, iw_samples=64, iw_images=1000) -> dict:
    """The registry's `evaluate` for the VAE family (train.py writes these into metrics.json).

    A cheap importance-weighted NLL (k = 64 on the first 1000 test images) keeps training runs
    short; `genkeras evaluate --model NAME` computes the k = 5000 figure.
    """
    metrics = {f"test_{k}": v for k, v in posterior_statistics(model, batches).items()}
    metrics.update(
        {f"test_{k}": v for k, v in iwae_nll(model, batches, iw_samples, 64, iw_images).items()}
    )
    metrics["test_mse"] = metrics["test_reconstruction_mse"]
    return metrics


# ---------------------------------------------------------------------------------------------
# Latent-space tools (the lecture's sampling, manifold, averaging and editing of codes).


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


# ---------------------------------------------------------------------------------------------
# Pictures.


def _save_grid(images, columns, path, title=None, row_labels=None, column_labels=None) -> Path:
    import matplotlib.pyplot as plt

    grid = pictures.tile(np.asarray(images), columns)
    height = grid.shape[0] / grid.shape[1] * 6
    figure, axis = plt.subplots(figsize=(6.4, max(1.6, height + (0.6 if title else 0.2))))
    pictures.show_grid(axis, grid)
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
    return pictures.save_figure(figure, path)


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
            _save_grid(
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
            _save_grid(
                np.asarray(style),
                count,
                out_dir / "styles.png",
                "One z per row decoded with every label",
            )
        )
    else:
        samples = model.sample(64, seed)
        paths.append(
            _save_grid(
                np.asarray(samples), 8, out_dir / "samples.png", "Samples: decoder(z), z ~ N(0, I)"
            )
        )

    originals = images[:16]
    recon = np.asarray(model.reconstruct(originals, None if labels is None else labels[:16]))
    paths.append(
        pictures.save_panels(
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
    paths.append(_save_grid(np.asarray(manifold), steps, out_dir / "manifold.png", title))

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
        _save_grid(
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
        _save_grid(
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


# ---------------------------------------------------------------------------------------------
# Quality figures: k = 5000 likelihood, Frechet distance, outlier AUROC (`genkeras vae-evaluate`).


def auroc(inlier_scores, outlier_scores) -> float:
    """P(score of an inlier > score of an outlier), ties counted half (Mann-Whitney U)."""
    inliers = np.asarray(inlier_scores, np.float64)
    outliers = np.asarray(outlier_scores, np.float64)
    scores = np.concatenate([inliers, outliers])
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]  # 1-based, ties share their mean
    u = ranks[: len(inliers)].sum() - len(inliers) * (len(inliers) + 1) / 2
    return float(u / (len(inliers) * len(outliers)))


def _test_batches(
    model, dataset="mnist", split="test", limit=None, batch_size=100, seed=0, binarize=True
):
    from genkeras import data

    view = data.View(binarize=binarize, labels=bool(model.num_classes), targets=False)
    ds = data.load_split(dataset, split, limit=limit)
    return data.pipeline(ds, view, batch_size=batch_size, shuffle=False, seed=seed)


def _log_probs(model, batches, num_samples, chunk=64):
    values = []
    for batch in batches:
        images, labels = _split(batch, model)
        values.append(importance_weighted_log_prob(model, images, labels, num_samples, chunk))
    return np.concatenate(values)


def samples_for_frechet(model, count, seed=0, batch=500) -> np.ndarray:
    """`count` samples (Bernoulli means); a conditional model gets labels 0..9 in turn."""
    out = []
    for index, start in enumerate(range(0, count, batch)):
        size = min(batch, count - start)
        labels = (
            (np.arange(start, start + size) % model.num_classes).astype(np.int32)
            if model.num_classes
            else None
        )
        out.append(np.asarray(model.sample(size, seed * 1000 + index, labels)))
    return np.concatenate(out)


def evaluate_vae(
    model,
    iw_samples=5000,
    iw_images=200,
    frechet_samples=10000,
    auroc_images=2000,
    auroc_samples=64,
    seed=0,
) -> dict:
    """Every test figure of issue 3 for one MNIST VAE (see docs/benchmarks.md).

    - full test split: ELBO, reconstruction and KL, KL per dimension, active units, mean sigma,
      reconstruction MSE (one binarization draw, seed 0);
    - importance-weighted NLL with k = `iw_samples` on the first `iw_images` test images
      (k = 5000 costs about 2 s per image for conv_vae on one CPU core; 0 = skip);
    - Frechet distance of classifier logits: `frechet_samples` samples vs the test images, and
      the floor: test vs the first 10000 training images;
    - AUROC of log_prob (k = `auroc_samples`) for MNIST test (inliers) vs Fashion-MNIST test.
    """
    import time

    from genkeras import data, frechet

    report = {"model": type(model).__name__, "latent_dim": model.latent_dim, "beta": model.beta}
    started = time.perf_counter()
    report.update(posterior_statistics(model, _test_batches(model, seed=seed)))
    report["statistics_seconds"] = round(time.perf_counter() - started, 1)
    if iw_samples and iw_images:
        started = time.perf_counter()
        report.update(
            iwae_nll(model, _test_batches(model, limit=iw_images, seed=seed), iw_samples, 100)
        )
        report["iwae_seconds"] = round(time.perf_counter() - started, 1)
    if frechet_samples:
        classifier = frechet.load_classifier()
        test = data.take_examples("mnist", "test", count=10000)["image"]
        train = data.take_examples("mnist", "train", count=10000)["image"]
        samples = samples_for_frechet(model, frechet_samples, seed)
        report["frechet_distance_samples_vs_test"] = frechet.mnist_frechet_distance(
            samples, test, classifier
        )
        report["frechet_distance_test_vs_train_floor"] = frechet.mnist_frechet_distance(
            test, train, classifier
        )
        report["frechet_samples"] = int(frechet_samples)
    if auroc_images and not model.num_classes:
        started = time.perf_counter()
        inliers = _log_probs(
            model, _test_batches(model, "mnist", limit=auroc_images, seed=seed), auroc_samples
        )
        outliers = _log_probs(
            model,
            _test_batches(model, "fashion_mnist", limit=auroc_images, seed=seed),
            auroc_samples,
        )
        report["outlier_auroc_mnist_vs_fashion_mnist"] = auroc(inliers, outliers)
        report["outlier_mean_log_prob_mnist"] = float(inliers.mean())
        report["outlier_mean_log_prob_fashion_mnist"] = float(outliers.mean())
        report["outlier_images_each"] = int(auroc_images)
        report["outlier_log_prob_samples"] = int(auroc_samples)
        report["outlier_seconds"] = round(time.perf_counter() - started, 1)
    return report


def evaluate_main(argv=None) -> int:
    """`genkeras vae-evaluate PATH.keras [...]`: prints (and writes) the figures as JSON."""
    import argparse
    import sys

    import keras

    import genkeras.models  # noqa: F401  (registers the classes for load_model)

    parser = argparse.ArgumentParser(
        prog="genkeras vae-evaluate", description=evaluate_vae.__doc__.split("\n")[0]
    )
    parser.add_argument("model", help="a trained VAE saved as .keras (runs/NAME/NAME.keras)")
    parser.add_argument(
        "--iw-samples", type=int, default=5000, help="k of the IWAE bound (0 = skip)"
    )
    parser.add_argument("--iw-images", type=int, default=200, help="test images for the IWAE bound")
    parser.add_argument("--frechet-samples", type=int, default=10000, help="0 = skip")
    parser.add_argument("--auroc-images", type=int, default=2000, help="per data set; 0 = skip")
    parser.add_argument("--auroc-samples", type=int, default=64)
    parser.add_argument("--pictures", help="also write the PNG pictures into this folder")
    parser.add_argument("--out", help="write the JSON report here")
    parser.add_argument("--export-dir", help="also export a SavedModel here, figures in its card")
    parser.add_argument("--version", type=int, help="export version (default: next free)")
    parser.add_argument("--training-command", help="recorded in the model card")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    model = keras.saving.load_model(args.model)
    report = evaluate_vae(
        model,
        args.iw_samples,
        args.iw_images,
        args.frechet_samples,
        args.auroc_images,
        args.auroc_samples,
    )
    report["command"] = "genkeras vae-evaluate " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.pictures:
        from genkeras import data

        view = data.View(binarize=True, labels=bool(model.num_classes), targets=False)
        # 1000 test images: the attribute vector s averages over about 500 in each group.
        examples = data.take_examples("mnist", "test", count=1000)
        report["pictures"] = [str(p) for p in vae_pictures(model, examples, view, args.pictures)]
    if args.export_dir:
        from genkeras.export import export_model
        from genkeras.registry import SPECS

        spec = next(spec for spec in SPECS.values() if spec.build is type(model))
        card = {
            "dataset": "mnist (dynamically binarized)",
            "metrics": report,
            "hyperparameters": model.get_config(),
            "training_command": args.training_command,
            "log_prob_samples_at_export": model.log_prob_samples,
        }
        report["export_path"] = str(export_model(model, spec, args.export_dir, args.version, card))
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0
