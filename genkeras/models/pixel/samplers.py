"""Sampling and completion for the autoregressive pixel models, naive and row-cached.

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

import tensorflow as tf

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
    # An empty batch has nothing to draw (and oneDNN's convolutions refuse one).
    return tf.cond(
        tf.shape(x)[0] > 0,
        lambda: loop(model, x, start_row, seed, temperature, labels),
        lambda: x,
    )


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
