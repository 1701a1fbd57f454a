"""Sampling and completion for the autoregressive pixel models: naive, row cache, pixel cache.

Sampling is pixel by pixel in raster order, inside TensorFlow graphs (`tf.while_loop`), so the
same code runs eagerly, under `tf.function` and inside an exported SavedModel (no XLA).

Three samplers draw the same images for the same seed: channel c of pixel t = row * W + column
(C channels; colour draws a pixel's R, then G, then B) is draw s = t * C + c, which uses the
stateless uniform draws keyed by `(seed, s)` in all of them (s = t for grayscale), and their
logits agree up to float rounding (a draw within rounding of its threshold could in principle
tell them apart; `test_pixel_models.py` pins the images equal, a 28x28 model included):

* naive (`fast=False`): recomputes the whole network on the whole image for each of the H*W
  pixels;
* row cache (`fast="rows"`, in the spirit of Fast PixelCNN++): the vertical context
  (`model.vertical`, which only sees rows above) is computed once per row; each pixel of the
  row then runs the row-local horizontal stack (`model.horizontal`) on that one row. Per pixel
  this costs about 1/H of a full pass. Any `PixelModel` with `vertical` and `horizontal`
  (the Row LSTM uses it).
* pixel cache (`fast="pixels"`, Ramachandran et al. 2017, "Fast Generation for Convolutional
  Autoregressive Models"): every layer's activations are cached, and each step computes only
  what is new: the vertical stack once per row for that row alone (from the rows above kept
  in the cache), then per pixel the horizontal stack and the head at that one position (from
  the columns to the left kept in the cache). Altogether one forward pass per image, so the
  work per pixel is that of one position. Models that implement the steps of `PixelModel`
  (`pixel_cache`): PixelCNN, and the Diagonal BiLSTM (carrying its LSTM states). `fast=True`
  picks it where available, else the row cache. A large batch runs in `CHAINS` slices, each
  row's pixels in one loop per slice, so that it keeps more than one core busy.

Randomness: Bernoulli pixels are `u < sigmoid(logit / T)`; categorical pixels use the
Gumbel-max trick `argmax(logits / T - log(-log u))`, with `u` from
`tf.random.stateless_uniform(..., seed=[seed, t])`.
"""

from __future__ import annotations

import itertools

import tensorflow as tf

MIN_TEMPERATURE = 1e-3


def _noise(model, shape, seed, step):
    """The randomness of pixel `step` for a batch of logits of `shape`: the uniform draws of a
    Bernoulli pixel, or the Gumbel offsets log(-log u) of a categorical one."""
    key = tf.stack([tf.cast(seed, tf.int32), tf.cast(step, tf.int32)])
    if model.likelihood == "bernoulli":
        return tf.random.stateless_uniform(shape, seed=key)
    u = tf.random.stateless_uniform(shape, seed=key, minval=1e-12, maxval=1.0)
    return tf.math.log(-tf.math.log(u))


def _temperature(temperature):
    """The temperature that divides the logits, kept away from zero."""
    return tf.maximum(tf.cast(temperature, tf.float32), MIN_TEMPERATURE)


def _pick(model, logits, noise, temperature):
    """One channel of a pixel for every image from its logits [N, 1] or [N, 1, levels],
    `_noise` and the `_temperature`: values [N, 1] in [0, 1]."""
    logits = tf.cast(logits, tf.float32) / temperature
    if model.likelihood == "bernoulli":
        return tf.cast(noise < tf.sigmoid(logits), tf.float32)
    index = tf.argmax(logits - noise, axis=-1, output_type=tf.int32)
    return tf.cast(index, tf.float32) / float(model.levels - 1)


def _draw(model, logits, seed, step, temperature):
    """One channel for every image: logits [N, 1] or [N, 1, levels] -> values [N, 1]."""
    noise = _noise(model, tf.shape(logits), seed, step)
    return _pick(model, logits, noise, _temperature(temperature))


def _loop_naive(model, x, start_row, seed, temperature, labels):
    height, width, channels = model.image_shape
    size = height * width * channels

    def body(s, x):  # draw s: channel s % C of pixel s // C
        logits = model.logits(x, labels)
        t, c = s // channels, s % channels
        i, j = t // width, t % width
        value = _draw(model, logits[:, i, j, c][:, None], seed, s, temperature)
        mask = tf.reshape(tf.one_hot(s, size), [1, height, width, channels])
        return s + 1, x * (1.0 - mask) + mask * value[:, None, None, :]

    start = [start_row * width * channels, x]
    _, x = tf.while_loop(lambda s, x: s < size, body, start, parallel_iterations=1)
    return x


def _loop_rows(model, x, start_row, seed, temperature, labels):
    height, width, channels = model.image_shape
    size = width * channels

    def row_body(i, x):
        context = model.vertical(model.encode_input(x), labels)  # rows < i only matter
        context_row = [c[:, i : i + 1] for c in context]
        row = x[:, i : i + 1]

        def pixel_body(k, row):  # draw k of the row: channel k % C of column k // C
            logits = model.horizontal(model.encode_input(row), context_row)
            j, c = k // channels, k % channels
            value = _draw(model, logits[:, 0, j, c][:, None], seed, i * size + k, temperature)
            mask = tf.reshape(tf.one_hot(k, size), [1, 1, width, channels])
            return k + 1, row * (1.0 - mask) + mask * value[:, None, None, :]

        _, row = tf.while_loop(lambda k, row: k < size, pixel_body, [0, row], parallel_iterations=1)
        row_mask = tf.reshape(tf.one_hot(i, height), [1, height, 1, 1])
        return i + 1, x * (1.0 - row_mask) + row_mask * row

    _, x = tf.while_loop(lambda i, x: i < height, row_body, [start_row, x], parallel_iterations=1)
    return x


# The per-pixel cache splits a batch of `SPLIT_FROM` images or more into `CHAINS` slices.
# Each row's pixels are a long chain of small operations, one after another; a chain per slice
# gives TensorFlow's executor that many operations to run at once, so a large batch keeps two
# cores busy. The chains meet at the end of every row, where a request served beside them gets
# its turn on a thread. A small batch stays whole: its operations are too small to gain from a
# second core, and its chains would wait on each other (see docs/benchmarks.md).
CHAINS = 2
SPLIT_FROM = 32


def _loop_pixels(model, x, start_row, seed, temperature, labels):
    """The per-pixel cache on the whole batch, or on `CHAINS` slices of it from `SPLIT_FROM`
    images on, each row's pixels in one loop per slice. Every image keeps the randomness it
    has in one loop over the whole batch."""
    batch = tf.shape(x)[0]

    def sliced(count):
        bounds = [batch * k // count for k in range(count + 1)]
        parts = [
            (x[low:high], None if labels is None else labels[low:high], low, high)
            for low, high in itertools.pairwise(bounds)
        ]
        return tf.concat(_sample_parts(model, parts, start_row, seed, temperature, batch), 0)

    if CHAINS == 1:
        return sliced(1)
    return tf.cond(batch >= SPLIT_FROM, lambda: sliced(CHAINS), lambda: sliced(1))


def _sample_parts(model, parts, start_row, seed, temperature, total):
    """Rows from `start_row` on, each pixel from the model's cache steps; rows above it as
    given (they only feed the vertical stack's cache). `parts` = [(x, labels, low, high)]: x
    is images low..high-1 of a batch of `total`, whose randomness they draw; each part has its
    own caches and its own loop over a row's pixels. Rows travel as [C, W, N] (the steps of a
    grayscale model take [W, N]). Colour: each pixel's channels in turn, by C calls of
    `pixel_step` with the channels drawn so far (`current`). Returns the parts' images."""
    height, width, channels = model.image_shape
    sizes = [tf.shape(x)[0] for x, *_ in parts]
    constants = [model.cache_constants(n, part[1]) for n, part in zip(sizes, parts, strict=True)]
    per_channel = model.out_channels // channels
    draw_shape = [1] if model.likelihood == "bernoulli" else [1, per_channel]
    temperature = _temperature(temperature)

    given = [tf.transpose(x, [1, 3, 2, 0]) for x, *_ in parts]  # rows [C, W, N]

    def given_row(i):
        return [rows[i] for rows in given]

    def above_of(row):
        return model.encode_input(row[0] if channels == 1 else row)

    def pixel(cache, columns, j, previous, noise, batch, fixed):
        """Pixel j of `batch` images: (values [N, C], encoded [N, C], cache)."""
        shape = [batch, *draw_shape]
        if channels == 1:
            logits, cache = model.pixel_step(cache, columns, j, previous, fixed)
            value = _pick(model, tf.reshape(logits, shape), noise[j], temperature)
            return value, model.encode_input(value), cache
        drawn, picked, before = [], [], cache
        for c in range(channels):  # R, then G, then B: each sees the ones before it
            current = tf.concat([*drawn, tf.zeros([batch, channels - c])], axis=1)
            logits, cache = model.pixel_step(before, columns, j, previous, fixed, current)
            logits = tf.reshape(logits, [batch, channels, -1])[:, c : c + 1]
            value = _pick(model, tf.reshape(logits, shape), noise[j * channels + c], temperature)
            picked.append(value)
            drawn.append(model.encode_input(value))
        return tf.concat(picked, axis=1), tf.concat(drawn, axis=1), cache

    def sample_row(k, columns, noise):
        """Part k's row, from the vertical stack's `columns` for it: [C, W, N]."""
        batch, fixed = sizes[k], constants[k]

        def pixel_body(j, cache, previous, values):
            value, encoded, cache = pixel(cache, columns, j, previous, noise, batch, fixed)
            return j + 1, cache, encoded, values.write(j, value)

        start = [0, model.pixel_start(batch), tf.zeros([batch, channels])]
        values = tf.TensorArray(tf.float32, size=width, element_shape=[None, channels])
        _, _, _, values = tf.while_loop(
            lambda j, *_: j < width, pixel_body, [*start, values], parallel_iterations=1
        )
        return tf.transpose(values.stack(), [2, 0, 1])

    def sample_rows(i, columns):
        # The whole row's randomness at once, each draw's exactly as the naive loop's.
        steps = range(width * channels)
        whole = [total, *draw_shape]
        noise = tf.stack([_noise(model, whole, seed, i * width * channels + k) for k in steps])
        return [
            sample_row(k, columns[k], noise[:, low:high]) for k, (*_, low, high) in enumerate(parts)
        ]

    def row_body(i, rows, above, caches):
        steps = [
            model.row_step(cache, up, fixed)
            for cache, up, fixed in zip(caches, above, constants, strict=True)
        ]
        columns = [step[0] for step in steps]
        row = tf.cond(i >= start_row, lambda: sample_rows(i, columns), lambda: given_row(i))
        rows = [r.write(i, value) for r, value in zip(rows, row, strict=True)]
        return i + 1, rows, [above_of(value) for value in row], [step[1] for step in steps]

    rows = [
        tf.TensorArray(tf.float32, size=height, element_shape=[channels, width, None])
        for _ in parts
    ]
    above = [tf.zeros([width, n] if channels == 1 else [channels, width, n]) for n in sizes]
    start = [0, rows, above, [model.row_cache(n) for n in sizes]]
    _, rows, _, _ = tf.while_loop(lambda i, *_: i < height, row_body, start, parallel_iterations=1)
    return [tf.transpose(r.stack(), [3, 0, 2, 1]) for r in rows]  # [N, H, W, C]


LOOPS = {"naive": _loop_naive, "rows": _loop_rows, "pixels": _loop_pixels}


def method_of(model, fast) -> str:
    """The loop `fast` names: True -> the fastest the model has (the per-pixel cache where the
    model implements it, else the row cache), False -> "naive", or a name of `LOOPS`."""
    if fast is True:
        return "pixels" if getattr(model, "pixel_cache", False) else "rows"
    if fast is False:
        return "naive"
    if fast not in LOOPS or (fast == "pixels" and not getattr(model, "pixel_cache", False)):
        raise ValueError(f"Unknown sampler {fast!r} for {type(model).__name__}.")
    return fast


def _run(model, x, start_row, seed, temperature, labels, fast):
    x = tf.convert_to_tensor(x, tf.float32)
    start_row = tf.clip_by_value(tf.cast(start_row, tf.int32), 0, model.image_shape[0])
    seed = tf.cast(seed, tf.int32)
    if labels is not None:
        labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    loop = LOOPS[method_of(model, fast)]
    # An empty batch has nothing to draw (and oneDNN's convolutions refuse one).
    return tf.cond(
        tf.shape(x)[0] > 0,
        lambda: loop(model, x, start_row, seed, temperature, labels),
        lambda: x,
    )


def _sample(model, num, seed, temperature=1.0, labels=None, fast=True):
    num = tf.cast(num, tf.int32)
    x = tf.zeros(tf.concat([[num], tf.constant(model.image_shape, tf.int32)], 0), tf.float32)
    return _run(model, x, 0, seed, temperature, labels, fast)


def _complete(model, images, rows, seed=0, temperature=1.0, labels=None, fast=True):
    images = tf.convert_to_tensor(images, tf.float32)
    height = model.image_shape[0]
    rows = tf.clip_by_value(tf.cast(rows, tf.int32), 0, height)
    keep = tf.reshape(tf.range(height) < rows, [1, height, 1, 1])
    start = tf.where(keep, model.quantize_pixels(images), tf.zeros_like(images))
    sampled = _run(model, start, rows, seed, temperature, labels, fast)
    return tf.where(keep, images, sampled)


# The loops are explicit TensorFlow control flow: autograph has nothing to convert, and
# converting this module's functions and the model's (its default under `tf.function`, as in
# genkeras.export) would take most of the tracing time.
@tf.autograph.experimental.do_not_convert
def sample(model, num, seed, temperature=1.0, labels=None, fast=True):
    """`num` images [num, H, W, 1] drawn pixel by pixel; deterministic per `seed`.

    Called eagerly, it runs as a `tf.function` traced once per model and sampler (a Python
    loop of eager ops would cost far more than the sampling itself).

    Example:
    >>> images = sample(model, 16, seed=3, temperature=1.0)
    """
    if model.conditional and labels is None:
        raise ValueError("A class-conditional model needs `labels` to sample.")
    if not tf.executing_eagerly():
        return _sample(model, num, seed, temperature, labels, fast)
    specs = [_SCALAR_INT, _SCALAR_INT, tf.TensorSpec([], tf.float32)]
    args = [tf.cast(num, tf.int32), tf.cast(seed, tf.int32), tf.cast(temperature, tf.float32)]
    return _eagerly(model, fast, "sample", _sample, specs, args, labels)


@tf.autograph.experimental.do_not_convert
def complete(model, images, rows, seed=0, temperature=1.0, labels=None, fast=True):
    """Keeps rows < `rows` of `images` exactly as given and samples the others.

    The model conditions on the quantized given rows (binarized at 0.5 for Bernoulli models);
    the output's given rows are the input's, untouched. `rows` is clipped to [0, H]. Called
    eagerly, it runs as a `tf.function` (see `sample`).
    """
    if not tf.executing_eagerly():
        return _complete(model, images, rows, seed, temperature, labels, fast)
    specs = [
        tf.TensorSpec([None, *model.image_shape], tf.float32),
        _SCALAR_INT,
        _SCALAR_INT,
        tf.TensorSpec([], tf.float32),
    ]
    args = [tf.cast(images, tf.float32), tf.cast(rows, tf.int32), tf.cast(seed, tf.int32)]
    args.append(tf.cast(temperature, tf.float32))
    return _eagerly(model, fast, "complete", _complete, specs, args, labels)


_COMPILED: dict = {}
_SCALAR_INT = tf.TensorSpec([], tf.int32)


def _cached_function(key, fn, input_signature):
    """`fn` as a `tf.function` with `input_signature`, traced once per `key` and reused."""
    if key not in _COMPILED:
        _COMPILED[key] = tf.function(
            fn, input_signature=input_signature, jit_compile=False, autograph=False
        )
    return _COMPILED[key]


def _eagerly(model, fast, kind, fn, specs, args, labels):
    """`fn(model, *args, labels=labels, fast=fast)` through a cached `tf.function`."""
    if labels is None:
        run = _cached_function((id(model), fast, kind), lambda *a: fn(model, *a, fast=fast), specs)
        return run(*args)
    specs = [*specs, tf.TensorSpec([None], tf.int32)]
    run = _cached_function(
        (id(model), fast, kind, "labels"),
        lambda *a: fn(model, *a[:-1], labels=a[-1], fast=fast),
        specs,
    )
    return run(*args, tf.reshape(tf.cast(labels, tf.int32), [-1]))


def compiled_sampler(model, fast=True):
    """A `tf.function` `(num, seed, temperature) -> images` (cached per model), for speed."""
    scalars = [_SCALAR_INT, _SCALAR_INT, tf.TensorSpec([], tf.float32)]
    return _cached_function(
        (id(model), fast, "sampler"),
        lambda num, seed, temperature: _sample(model, num, seed, temperature, fast=fast),
        scalars,
    )


def compiled_completer(model, fast=True):
    """A `tf.function` `(images, rows, seed) -> images` (cached per model)."""
    specs = [tf.TensorSpec([None, *model.image_shape], tf.float32), _SCALAR_INT, _SCALAR_INT]
    return _cached_function(
        (id(model), fast, "completer"),
        lambda images, rows, seed: _complete(model, images, rows, seed, fast=fast),
        specs,
    )
