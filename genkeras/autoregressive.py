"""Sampling, completion, evaluation and pictures for the autoregressive pixel models.

Sampling is pixel by pixel in raster order, inside TensorFlow graphs (`tf.while_loop`), so the
same code runs eagerly, under `tf.function` and inside an exported SavedModel.

Two samplers draw exactly the same images for the same seed (pixel t = row * W + column uses
the stateless uniform draws keyed by `(seed, t)` in both):

* naive: recomputes the whole network on the whole image for each of the H*W pixels;
* fast (row cache, in the spirit of Fast PixelCNN++): the vertical context
  (`model.vertical`, which only sees rows above) is computed once per row and cached; each
  pixel of the row then only runs the row-local horizontal stack (`model.horizontal`) on that
  one row. Per pixel this costs about 1/H of a full pass.

Randomness: Bernoulli pixels are `u < sigmoid(logit / T)`; categorical pixels use the
Gumbel-max trick `argmax(logits / T - log(-log u))`, with `u` from
`tf.random.stateless_uniform(..., seed=[seed, t])`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import tensorflow as tf

from genkeras import pictures

MIN_TEMPERATURE = 1e-3


def _draw(model, logits, seed, step, temperature):
    """One pixel for every image: logits [N, 1] or [N, 1, 256] -> values [N, 1] in [0, 1]."""
    key = tf.stack([tf.cast(seed, tf.int32), tf.cast(step, tf.int32)])
    temperature = tf.maximum(tf.cast(temperature, tf.float32), MIN_TEMPERATURE)
    logits = tf.cast(logits, tf.float32) / temperature
    if model.likelihood == "bernoulli":
        u = tf.random.stateless_uniform(tf.shape(logits), seed=key)
        return tf.cast(u < tf.sigmoid(logits), tf.float32)
    u = tf.random.stateless_uniform(tf.shape(logits), seed=key, minval=1e-12, maxval=1.0)
    index = tf.argmax(logits - tf.math.log(-tf.math.log(u)), axis=-1, output_type=tf.int32)
    return tf.cast(index, tf.float32) / 255.0


def _loop_naive(model, x, start_row, seed, temperature, labels):
    height, width, _ = model.image_shape

    def body(t, x):
        logits = model.logits(x, labels)
        i, j = t // width, t % width
        value = _draw(model, logits[:, i, j], seed, t, temperature)
        mask = tf.reshape(tf.one_hot(t, height * width), [1, height, width, 1])
        return t + 1, x * (1.0 - mask) + mask * value[:, None, None, :]

    _, x = tf.while_loop(
        lambda t, x: t < height * width, body, [start_row * width, x], parallel_iterations=1
    )
    return x


def _loop_fast(model, x, start_row, seed, temperature, labels):
    height, width, _ = model.image_shape

    def row_body(i, x):
        context = model.vertical(model.encode_input(x), labels)  # rows < i only matter
        context_row = [c[:, i : i + 1] for c in context]
        row = x[:, i : i + 1]

        def pixel_body(j, row):
            logits = model.horizontal(model.encode_input(row), context_row)
            value = _draw(model, logits[:, 0, j], seed, i * width + j, temperature)
            mask = tf.reshape(tf.one_hot(j, width), [1, 1, width, 1])
            return j + 1, row * (1.0 - mask) + mask * value[:, None, None, :]

        _, row = tf.while_loop(
            lambda j, row: j < width, pixel_body, [0, row], parallel_iterations=1
        )
        row_mask = tf.reshape(tf.one_hot(i, height), [1, height, 1, 1])
        return i + 1, x * (1.0 - row_mask) + row_mask * row

    _, x = tf.while_loop(lambda i, x: i < height, row_body, [start_row, x], parallel_iterations=1)
    return x


def _run(model, x, start_row, seed, temperature, labels, fast):
    x = tf.convert_to_tensor(x, tf.float32)
    start_row = tf.clip_by_value(tf.cast(start_row, tf.int32), 0, model.image_shape[0])
    seed = tf.cast(seed, tf.int32)
    if labels is not None:
        labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    loop = _loop_fast if fast else _loop_naive
    return loop(model, x, start_row, seed, temperature, labels)


def sample(model, num, seed, temperature=1.0, labels=None, fast=True):
    """`num` images [num, H, W, 1] drawn pixel by pixel; deterministic per `seed`.

    Example:
    >>> images = sample(model, 16, seed=3, temperature=1.0)
    """
    num = tf.cast(num, tf.int32)
    x = tf.zeros(tf.concat([[num], tf.constant(model.image_shape, tf.int32)], 0), tf.float32)
    if model.conditional and labels is None:
        raise ValueError("A class-conditional model needs `labels` to sample.")
    return _run(model, x, 0, seed, temperature, labels, fast)


def complete(model, images, rows, seed=0, temperature=1.0, labels=None, fast=True):
    """Keeps rows < `rows` of `images` exactly as given and samples the others.

    The model conditions on the quantized given rows (binarized at 0.5 for Bernoulli models);
    the output's given rows are the input's, untouched. `rows` is clipped to [0, H].
    """
    images = tf.convert_to_tensor(images, tf.float32)
    height = model.image_shape[0]
    rows = tf.clip_by_value(tf.cast(rows, tf.int32), 0, height)
    keep = tf.reshape(tf.range(height) < rows, [1, height, 1, 1])
    start = tf.where(keep, model.quantize_pixels(images), tf.zeros_like(images))
    sampled = _run(model, start, rows, seed, temperature, labels, fast)
    return tf.where(keep, images, sampled)


_COMPILED: dict = {}


def _cached_function(key, fn, input_signature):
    """`fn` as a `tf.function` with `input_signature`, traced once per `key` and reused."""
    if key not in _COMPILED:
        _COMPILED[key] = tf.function(fn, input_signature=input_signature, jit_compile=False)
    return _COMPILED[key]


def compiled_sampler(model, fast=True):
    """A `tf.function` `(num, seed, temperature) -> images` (cached per model), for speed."""
    scalars = [
        tf.TensorSpec([], tf.int32),
        tf.TensorSpec([], tf.int32),
        tf.TensorSpec([], tf.float32),
    ]
    return _cached_function(
        (id(model), fast, "sample"),
        lambda num, seed, temperature: sample(model, num, seed, temperature, fast=fast),
        scalars,
    )


def compiled_completer(model, fast=True):
    """A `tf.function` `(images, rows, seed) -> images` (cached per model)."""
    specs = [
        tf.TensorSpec([None, *model.image_shape], tf.float32),
        tf.TensorSpec([], tf.int32),
        tf.TensorSpec([], tf.int32),
    ]
    return _cached_function(
        (id(model), fast, "complete"),
        lambda images, rows, seed: complete(model, images, rows, seed, fast=fast),
        specs,
    )


# ---------------------------------------------------------------------------------------------
# Evaluation and pictures (the registry's `evaluate` and `pictures` hooks).


def log_probs(model, batches, targets=False) -> np.ndarray:
    """Exact log p(x) (nats) of every image in `batches`.

    Args:
        model: a pixel model.
        batches: model inputs (images, or (images, labels)), or `(inputs, targets)` pairs
            when `targets` is True.
    """
    values = []
    for batch in batches:
        if targets:
            batch = batch[0]
        images, labels = model.split_inputs(batch)
        values.append(np.asarray(model.log_prob(images, labels)["log_prob"]))
    return np.concatenate(values)


def likelihood_metrics(model, batches, view) -> dict:
    """Test negative log-likelihood: nats per image and bits per dimension.

    For Bernoulli models on dynamically binarized data the test images are one binarization
    drawn with the pipeline's seed.
    """
    values = log_probs(model, batches, targets=view.targets)
    dims = math.prod(model.image_shape)
    nll = float(-values.mean())
    return {
        "test_nll_nats": nll,
        "test_bits_per_dim": nll / (dims * math.log(2.0)),
        "test_images": int(len(values)),
    }


def auroc(positive_scores, negative_scores) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties count 1/2."""
    pos = np.asarray(positive_scores, np.float64)
    neg = np.asarray(negative_scores, np.float64)
    scores = np.concatenate([pos, neg])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores), np.float64)
    sorted_scores = scores[order]
    # average ranks for ties
    unique, start, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = start + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    rank_sum = ranks[: len(pos)].sum()
    return float((rank_sum - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def pixel_pictures(model, examples, view, out_dir, seed: int = 0) -> list[Path]:
    """Samples (temperature 1), and completions of the top half of test images.

    Files: `samples.png` (16 samples from the fast sampler) and `completions.png`
    (original | top half given | three completions with different seeds).
    """
    out_dir = Path(out_dir)
    labels = examples.get("label") if model.conditional else None
    if model.conditional:
        sample_labels = np.arange(16) % model.num_classes
        samples = sample(model, 16, seed, 1.0, labels=sample_labels).numpy()
    else:
        samples = compiled_sampler(model)(16, seed, 1.0).numpy()
    paths = [pictures.save_panels([("samples (T=1)", samples)], out_dir / "samples.png", columns=4)]

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
    paths.append(pictures.save_panels(panels, out_dir / "completions.png", columns=2))
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
    return pictures.save_figure(figure, path)
