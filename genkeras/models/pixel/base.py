"""Shared pieces of the autoregressive pixel models (PixelCNN, PixelRNN).

Both models factor the image distribution in raster order,

    p(x) = prod_t p(x_t | x_<t),   t = row * width + column,

and predict the parameters of every conditional in one forward pass, so the exact log
likelihood costs one call. Causality (the prediction for pixel t never sees pixels >= t) is
built from shifts and one-sided ("causal") paddings instead of multiplicative weight masks:

* `down_shift` / `right_shift` move the image one row down / one column right, so position
  (i, j) sees what was at (i-1, j) / (i, j-1): this is mask A, the very first layer.
* `pad_down(x, kh, kw)` before a `valid` convolution of kernel (kh, kw) makes output row i
  depend on input rows i-kh+1..i only (a vertical stack that never looks down).
* `pad_right(x, kw)` before a `valid` (1, kw) convolution makes output column j depend on
  input columns j-kw+1..j of the same row only (mask B of a horizontal stack).

Every model also exposes the split the fast sampler relies on (see `samplers.py`):

    logits(x) == horizontal(x, vertical(x))

where `vertical(x)[k][:, i]` depends only on rows < i of x, and `horizontal(rows, context)` is
row-local: applying it to row i alone (with row i of the context) gives row i of the full
result. The row-cache sampler therefore recomputes `vertical` once per row and `horizontal` on
one row per pixel.

A model may also implement the steps of the per-pixel cache sampler (`pixel_cache` True;
PixelCNN does): `cache_constants`, `row_cache` and `row_step` (the vertical part of one new
row, from what it cached of the rows above), `pixel_start` and `pixel_step` (the rest at one
new pixel, from what it cached of the pixels to the left). See `samplers.py`.

Colour (C = 3): the models order a pixel's channels R, then G, then B, each predicted from
the pixels before it and the pixel's earlier channels (channel-group masks, `channels.py`;
PixelCNN and both PixelRNN variants). The samplers then draw C values per pixel in that
order.

Subclasses share the hyperparameters every pixel model has (`filters`, `num_layers`,
`kernel_size`, `hidden`), kept and serialized here, and the 1x1 output head.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from genkeras.models.loss_scaling import per_replica
from genkeras.models.pixel import channels

LIKELIHOODS = ("bernoulli", "categorical")
LEVELS = 256  # intensities of the categorical likelihood (the default of `levels`)


def down_shift(x):
    """[N, H, W, C] -> same shape, shifted one row down (row 0 becomes zeros)."""
    return ops.pad(x, [[0, 0], [1, 0], [0, 0], [0, 0]])[:, :-1]


def right_shift(x):
    """[N, H, W, C] -> same shape, shifted one column right (column 0 becomes zeros)."""
    return ops.pad(x, [[0, 0], [0, 0], [1, 0], [0, 0]])[:, :, :-1]


def pad_down(x, kh, kw):
    """Pads kh-1 rows on top, kw//2 columns each side: a (kh, kw) `valid` conv looks up only."""
    return ops.pad(x, [[0, 0], [kh - 1, 0], [kw // 2, kw // 2], [0, 0]])


def pad_right(x, kw):
    """Pads kw-1 columns on the left: a (1, kw) `valid` conv then looks left (and at j) only."""
    return ops.pad(x, [[0, 0], [0, 0], [kw - 1, 0], [0, 0]])


def gate(x):
    """Gated activation tanh(a) * sigmoid(b) over the two halves of the channels."""
    a, b = ops.split(x, 2, axis=-1)
    return ops.tanh(a) * ops.sigmoid(b)


class PixelModel(keras.Model):
    """Base class: likelihoods, exact `log_prob`, the training loss and sampling entry points.

    Subclasses build their layers in `__init__`, then call `build_output_head()`, and
    implement `vertical(x, labels)` and `horizontal(rows, context)` (see the module
    docstring); `logits` and `call` follow.

    Args:
        image_shape: (height, width, C): C = 1, or C = 3 (R, G, B) for models with `colour`.
        filters: channels (PixelCNN) or hidden units (PixelRNN) of each layer.
        num_layers: layers after the first.
        hidden: channels of the 1x1 output head.
        kernel_size: width of the layers' kernels (odd).
        likelihood: "bernoulli" (binary pixels; logits [N, H, W, C]) or "categorical"
            (`levels` intensities per channel; logits [N, H, W, C, levels]).
        num_classes: > 0 makes the model class-conditional: inputs are `(images, labels)`.
        levels: intensities of the categorical likelihood (256; fewer for small tests):
            channel values are k / (levels - 1).
    """

    supports_temperature = True
    pixel_cache = False  # True where the model implements the per-pixel cache steps below
    colour = False  # True where the model orders a pixel's channels (C > 1 images)

    def __init__(
        self,
        image_shape,
        filters,
        num_layers,
        hidden,
        kernel_size=3,
        likelihood="bernoulli",
        num_classes=0,
        levels=LEVELS,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.image_shape = tuple(int(d) for d in image_shape)
        self.channels = self.image_shape[-1]
        if self.channels != 1 and not (self.colour and self.channels == 3):
            raise ValueError(
                f"{type(self).__name__} supports grayscale images (channels 1)"
                + (" or RGB (channels 3)" if self.colour else " only")
                + f", not {self.image_shape}."
            )
        if likelihood not in LIKELIHOODS:
            raise ValueError(
                f"Unknown likelihood '{likelihood}'. Use one of: {', '.join(LIKELIHOODS)}."
            )
        if not 2 <= int(levels) <= LEVELS:
            raise ValueError(f"levels must be in [2, {LEVELS}], got {levels}.")
        self.likelihood = likelihood
        self.num_classes = int(num_classes or 0)
        self.levels = int(levels)
        per_channel = 1 if likelihood == "bernoulli" else self.levels
        self.out_channels = self.channels * per_channel  # channel c: the c-th slice
        if int(kernel_size) % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}.")
        self.filters = int(filters)
        self.num_layers = int(num_layers)
        self.kernel_size = int(kernel_size)
        self.hidden = int(hidden)

    def build_output_head(self):
        """The 1x1 head both models end with: ReLU, `hidden` channels, then the logits."""
        if self.channels > 1 and min(self.filters, self.hidden) < self.channels:
            raise ValueError(f"Colour needs filters and hidden >= {self.channels}.")
        c = self.channels  # colour: mask B, channel group c of the logits from groups <= c
        self.head = channels.conv(self.hidden, 1, c, "B", (0, 0), "head", activation="relu")
        self.out_conv = channels.conv(
            self.out_channels, 1, c, "B", (0, 0), "logits", dtype="float32"
        )

    def output_head(self, features):
        """Features [N, H, W, ?] -> per-pixel logits through the output head."""
        return self.output_logits(self.out_conv(self.head(ops.relu(features))))

    # -- inputs ----------------------------------------------------------------------------
    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def split_inputs(self, inputs):
        if isinstance(inputs, (tuple, list)):
            images, labels = inputs
            return images, (labels if self.conditional else None)
        if self.conditional:
            raise ValueError("A class-conditional pixel model takes (images, labels).")
        return inputs, None

    def quantize_pixels(self, images):
        """Images in [0, 1] -> the values the model is trained on: {0, 1} or k/255."""
        images = ops.cast(images, "float32")
        if self.likelihood == "bernoulli":
            return ops.cast(images >= 0.5, "float32")
        top = self.levels - 1
        return ops.round(ops.clip(images, 0.0, 1.0) * top) / top

    def encode_input(self, x):
        """Quantized pixels -> network input in [-1, 1]."""
        return 2.0 * ops.cast(x, "float32") - 1.0

    def label_features(self, labels):
        """Labels [N] -> one-hot [N, num_classes] (None for unconditional models)."""
        if not self.conditional or labels is None:
            return None
        return ops.one_hot(ops.reshape(ops.cast(labels, "int32"), (-1,)), self.num_classes)

    # -- the network -----------------------------------------------------------------------
    def vertical(self, x, labels=None):
        """Context from rows strictly above: list of [N, H, W, ?] tensors."""
        raise NotImplementedError

    def horizontal(self, rows, context):
        """Row-local part: rows [N, R, W, C] and context rows -> logits for those rows."""
        raise NotImplementedError

    # -- the per-pixel cache steps (optional; see samplers.py) ------------------------------
    def cache_constants(self, batch, labels=None):
        """What every step reuses (the weights as the steps want them), computed once."""
        raise NotImplementedError

    def row_cache(self, batch):
        """The cache of the rows above row 0 (the causal padding)."""
        raise NotImplementedError

    def row_step(self, cache, above, constants):
        """Row i-1 (encoded, [W, N]) and the cache -> (row i's columns, cache for row i+1)."""
        raise NotImplementedError

    def pixel_start(self, batch):
        """The cache of the pixels left of column 0 (the causal padding)."""
        raise NotImplementedError

    def pixel_step(self, cache, columns, j, previous, constants, current=None):
        """Pixel j-1 (encoded, [N, C]) and the cache -> (logits of pixel j [N, out_channels],
        cache). Colour: `current` holds pixel j's channels drawn so far (encoded, [N, C]); the
        logits of channel c are right once channels < c are in it."""
        raise NotImplementedError

    def output_logits(self, features):
        """[N, H, W, out_channels] -> [N, H, W, C] (bernoulli) or [N, H, W, C, levels]."""
        if self.likelihood == "bernoulli":
            return features
        if self.channels == 1:
            return ops.expand_dims(features, 3)
        return ops.stack(ops.split(features, self.channels, axis=-1), axis=3)

    def logits(self, images, labels=None):
        """Quantized images (unsampled pixels may hold anything) -> per-pixel logits."""
        x = self.encode_input(images)
        return self.horizontal(x, self.vertical(x, labels))

    def call(self, inputs, training=False):
        images, labels = self.split_inputs(inputs)
        return self.logits(self.quantize_pixels(images), labels)

    # -- likelihood ------------------------------------------------------------------------
    def log_prob_from_logits(self, images, logits):
        """Exact log p(x) in nats per image, from quantized images and their logits."""
        x = self.quantize_pixels(images)
        if self.likelihood == "bernoulli":
            per_pixel = -(x * ops.softplus(-logits) + (1.0 - x) * ops.softplus(logits))
        else:
            index = ops.cast(ops.round(x * (self.levels - 1)), "int32")
            log_probs = ops.log_softmax(logits, axis=-1)
            per_pixel = ops.sum(log_probs * ops.one_hot(index, self.levels), axis=-1)
        return ops.sum(ops.reshape(per_pixel, (ops.shape(per_pixel)[0], -1)), axis=-1)

    def log_prob(self, images, labels=None):
        """Exact log-likelihood of images in one forward pass.

        Args:
            images: [N, H, W, C] in [0, 1]. Bernoulli models threshold them at 0.5 (feed binary
                images for the exact probability of those images); categorical models round
                them to k / (levels - 1) (k/255).
            labels: [N] int classes, for class-conditional models only.

        Returns:
            dict with `log_prob` [N] (nats per image) and `bits_per_dim` [N]
            (-log_prob / (H*W*C*ln 2)).
        """
        images = ops.cast(images, "float32")
        log_p = self.log_prob_from_logits(images, self.logits(self.quantize_pixels(images), labels))
        dims = math.prod(self.image_shape)
        return {"log_prob": log_p, "bits_per_dim": -log_p / (dims * math.log(2.0))}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Mean negative log-likelihood in nats per image (what `fit` minimizes and logs)."""
        images, _ = self.split_inputs(x)
        loss = -ops.mean(ops.cast(self.log_prob_from_logits(images, y_pred), "float32"))
        extra = self.losses
        return per_replica(loss + ops.sum(ops.stack(extra)) if extra else loss)

    # -- sampling (TensorFlow loops; see samplers.py) ----------------------------------------
    def sample(self, num, seed, temperature=1.0, labels=None, fast=True):
        """`num` images drawn pixel by pixel; the same `seed` gives the same images.

        Args:
            num: number of images (int or int32 scalar tensor).
            seed: int or int32 scalar tensor keying all randomness (stateless).
            temperature: divides the logits; 1 samples the model, < 1 sharpens.
            labels: [num] classes for class-conditional models.
            fast: True: the fastest sampler the model has (the per-pixel cache where
                `pixel_cache`, else the row cache); "pixels" or "rows" to choose one; False:
                the naive full recompute per pixel. All draw the same images.

        Returns:
            [num, H, W, C] float32 images in [0, 1] (colour: each pixel's R, G, B drawn in
            that order).
        """
        from genkeras.models.pixel import samplers  # TensorFlow only when sampling

        return samplers.sample(self, num, seed, temperature, labels=labels, fast=fast)

    def complete(self, images, rows, seed=0, temperature=1.0, labels=None, fast=True):
        """Keeps the first `rows` rows of `images` as given and samples the rest.

        Returns:
            [N, H, W, C]: rows < `rows` equal the input exactly; the others are samples.
        """
        from genkeras.models.pixel import samplers

        return samplers.complete(self, images, rows, seed, temperature, labels=labels, fast=fast)

    def get_config(self):
        return {
            **super().get_config(),
            "image_shape": self.image_shape,
            "likelihood": self.likelihood,
            "num_classes": self.num_classes,
            "filters": self.filters,
            "num_layers": self.num_layers,
            "kernel_size": self.kernel_size,
            "hidden": self.hidden,
            "levels": self.levels,
        }
