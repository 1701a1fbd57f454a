"""Gated PixelCNN (van den Oord et al., 2016): masked convolutions, no blind spot.

Two stacks run side by side:

* the vertical stack sees only the rows strictly above the current pixel: the input is
  shifted down one row (mask A) and every later convolution is padded so it never looks
  down (kernel (k//2 + 1, k), padded on top);
* the horizontal stack sees the pixels to the left in the current row: the input is shifted
  right one column (mask A) and later (1, k//2 + 1) convolutions are padded on the left
  (mask B). Each layer adds a 1x1 projection of the vertical stack into the horizontal one.

The union covers everything above and to the left (no blind spot). Colour (RGB): a 1x1 mask A
layer adds the current pixel's earlier channels to the horizontal stack; the horizontal taps
at the current pixel, the 1x1 layers and the head are channel-group masked (mask B), so the
logits of R, G, B see the pixel's channels before R, G, B (see `channels.py`). Each gated
block computes tanh(a) * sigmoid(b) (plus a per-layer label projection when
class-conditional); the horizontal stack has residual connections. Output: per-pixel (per
channel) Bernoulli logits or 256-way logits.

Sampling (see samplers.py) uses the per-pixel cache (Ramachandran et al., 2017): `row_step`
runs the vertical stack on one new row from what the cache keeps of the rows above, and
`pixel_step` the horizontal stack and the head at one new pixel from what it keeps of the
pixels to the left. Their logits equal `logits` up to float rounding.
"""

import keras
import numpy as np
from keras import layers, ops

from genkeras.models.pixel import channels
from genkeras.models.pixel.base import (
    PixelModel,
    down_shift,
    gate,
    pad_down,
    pad_right,
    right_shift,
)


@keras.saving.register_keras_serializable(package="genkeras")
class PixelCNN(PixelModel):
    """Gated PixelCNN with optional class conditioning.

    Args:
        image_shape: (height, width, 1), or (height, width, 3): R, G, B in that order.
        latent_dim: ignored (pixel models have no latent); accepted for the registry.
        filters: channels of each stack.
        num_layers: gated blocks after the first (mask A) layer.
        hidden: channels of the 1x1 output head.
        first_kernel_size: width of the first layer's kernels (odd).
        **kwargs: `kernel_size` (of the gated blocks, odd), `likelihood`, `num_classes`: see
            `PixelModel`.

    Example:
    >>> model = PixelCNN((4, 4, 1), filters=8, num_layers=2)
    >>> model(np.zeros((2, 4, 4, 1))).shape
    (2, 4, 4, 1)
    """

    colour = True

    def __init__(
        self,
        image_shape,
        latent_dim=None,
        filters=64,
        num_layers=7,
        hidden=128,
        first_kernel_size=7,
        **kwargs,
    ):
        super().__init__(image_shape, filters, num_layers, hidden, **kwargs)
        if first_kernel_size % 2 == 0:
            raise ValueError(f"first_kernel_size must be odd, got {first_kernel_size}.")
        self.first_kernel_size = int(first_kernel_size)
        p, k, k1 = self.filters, self.kernel_size, self.first_kernel_size
        self.v_kernel = (k // 2 + 1, k)
        self.h_kernel = k // 2 + 1
        self.v_first_kernel = (k1 // 2 + 1, k1)
        self.h_first_kernel = k1 // 2 + 1

        self.v_in = layers.Conv2D(p, self.v_first_kernel, name="v_in")
        self.h_in = layers.Conv2D(p, (1, self.h_first_kernel), name="h_in")
        c = self.channels
        if c > 1:  # the current pixel's earlier channels (mask A); h_in sees the pixels left
            self.h_self = channels.conv(p, 1, c, "A", (0, 0), "h_self", use_bias=False)
        self.v_to_h_in = layers.Conv2D(p, 1, name="v_to_h_in")
        self.v_convs, self.h_convs, self.v_to_h, self.h_out = [], [], [], []
        self.v_cond, self.h_cond = [], []
        for index in range(self.num_layers):
            self.v_convs.append(layers.Conv2D(2 * p, self.v_kernel, name=f"v_conv_{index}"))
            self.h_convs.append(
                channels.conv(
                    *(2 * p, (1, self.h_kernel), c, "B", (0, self.h_kernel - 1)),
                    *(f"h_conv_{index}", (1, 2)),
                )
            )
            self.v_to_h.append(layers.Conv2D(2 * p, 1, name=f"v_to_h_{index}"))
            self.h_out.append(channels.conv(p, 1, c, "B", (0, 0), f"h_out_{index}"))
            if self.conditional:
                self.v_cond.append(layers.Dense(2 * p, use_bias=False, name=f"v_cond_{index}"))
                self.h_cond.append(layers.Dense(2 * p, use_bias=False, name=f"h_cond_{index}"))
        self.build_output_head()

    def vertical(self, x, labels=None):
        """Vertical stack: per layer, the (2p-channel) input it gives the horizontal stack.

        Every returned tensor's row i depends only on rows < i of `x`.
        """
        cond = self.label_features(labels)
        kh, kw = self.v_first_kernel
        v = self.v_in(pad_down(down_shift(x), kh, kw))
        context = [self.v_to_h_in(v)]
        for index in range(self.num_layers):
            v_pre = self.v_convs[index](pad_down(v, *self.v_kernel))
            to_h = self.v_to_h[index](v_pre)
            if cond is not None:
                v_pre = v_pre + self.v_cond[index](cond)[:, None, None, :]
                to_h = to_h + self.h_cond[index](cond)[:, None, None, :]
            context.append(to_h)
            v = gate(v_pre)
        return context

    def horizontal(self, rows, context):
        """Horizontal stack and output head on whole rows (row-local given `context`)."""
        h = self.h_in(pad_right(right_shift(rows), self.h_first_kernel)) + context[0]
        if self.channels > 1:
            h = h + self.h_self(rows)
        for index in range(self.num_layers):
            h_pre = self.h_convs[index](pad_right(h, self.h_kernel)) + context[index + 1]
            h = h + self.h_out[index](gate(h_pre))
        return self.output_head(h)

    # -- the per-pixel cache of the fast sampler (see `PixelModel` and samplers.py) ----------
    # Activations are feature-major here: [channels, (W + 1) * N] for a row (column W is an
    # extra column of zeros, the causal padding), [channels, N] for a pixel. A convolution
    # restricted to the positions it must update is then one matmul of its kernel, as an
    # [in, out] matrix, with the windows it sees (`_windows`: one gather), and splitting
    # channels (the gates, the context of each layer) slices whole rows, which TensorFlow
    # does without copying. Vertical kernels stack their rows: one matmul of a new row gives
    # its term for itself and the terms it adds to the rows below (`pending`). The vertical
    # stack also carries a channel of ones (zero in column W), through which these matmuls
    # add the biases: its rows [a; 30; b; 30; 1] gate to [v; 1], tanh(30) * sigmoid(30)
    # being exactly 1 in float32, and column W gates to tanh(0) * sigmoid(0) = 0.

    @property
    def pixel_cache(self):
        """Whether the per-pixel cache applies (a kernel_size of 1 leaves it nothing to cache,
        the row cache samples such a model)."""
        return self.kernel_size > 1

    def cache_constants(self, batch, labels=None):
        """The kernels as [in, out] matrices with the biases folded in, and the label
        projections of conditional models, computed once outside the sampling loops. Kernels
        are only reshaped, sliced and gathered (oneDNN transposes of small tensors are slow).

        Args:
            batch: number of images N (int32 scalar).
            labels: [N] classes, for class-conditional models.

        Returns:
            dict of tensors for `row_step` and `pixel_step`.
        """
        cond, dtype = self.label_features(labels), self.v_in.compute_dtype
        width, p, (kh1, kw1) = self.image_shape[1], self.filters, self.v_first_kernel
        c = self.channels
        mask = ops.cast(ops.arange(width + 1) < width, dtype)[None, :, None]  # [1, W + 1, 1]
        v_in = _kernel(self.v_in)  # [kh1, kw1, C, p]
        if c > 1:  # the windows' rows are (row, channel, tap)
            v_in = ops.transpose(v_in, (0, 2, 1, 3))
        v_in = ops.reshape(v_in, (kh1 * c * kw1, p))  # rows (row, channel, tap)
        v_in = ops.concatenate([v_in, _centre(_vector(self.v_in), kw1)], axis=0)
        ones = _centre_column((kh1 * c + 1) * kw1, kw1, 1.0, dtype)
        v_in = ops.concatenate([v_in, ones], axis=1)
        bias = _vector(self.h_in) + _vector(self.v_to_h_in)
        to_h = [ops.concatenate([_kernel(self.v_to_h_in)[0, 0], bias[None]], axis=0)]  # [p + 1, p]
        v_cond, zero = [], ops.zeros((1, 2 * p), dtype)
        for index in range(self.num_layers):
            kernel = _kernel(self.v_to_h[index])[0, 0]
            bias = _vector(self.h_convs[index]) + _vector(self.v_to_h[index])
            to_h.append(ops.concatenate([kernel[:p], zero, kernel[p:], zero, bias[None]], axis=0))
            if cond is not None:  # [2p + 3, W + 1, N]: a and b of every image, column W zero
                rows = ops.cast(self.v_cond[index](cond), dtype)  # [N, 2p]
                rows = ops.pad(ops.reshape(rows, (-1, 2, p)), [[0, 0], [0, 0], [0, 1]])
                rows = ops.pad(ops.reshape(rows, (-1, 2 * p + 2)), [[0, 0], [0, 1]])
                v_cond.append(ops.transpose(rows)[:, None] * mask)
        h_convs = [ops.reshape(_kernel(layer), (-1, 2 * p)) for layer in self.h_convs]
        return {
            "ones": ops.broadcast_to(mask, (1, width + 1, batch)),
            "v_in": v_in,  # [(kh1 * C + 1) * kw1, p + 1]
            "v_convs": [_vertical(layer) for layer in self.v_convs],
            "v_cond": v_cond or None,
            "v_to_h": to_h,
            "h_cond": None
            if cond is None
            else [ops.transpose(ops.cast(layer(cond), dtype))[:, None] for layer in self.h_cond],
            "h_in": ops.reshape(_kernel(self.h_in), (self.h_first_kernel * c, p)),  # (tap, ch)
            "h_self": _kernel(self.h_self)[0, 0] if c > 1 else None,  # [C, p], mask A
            "h_convs": h_convs,  # [taps * p, 2p]: the columns j-k+1..j
            "h_out": [(_kernel(layer)[0, 0], _column(layer)) for layer in self.h_out],
            "head": (_kernel(self.head)[0, 0], _column(self.head)),
            "logits": (_kernel(self.out_conv)[0, 0], _vector(self.out_conv)),
        }

    def row_cache(self, batch):
        """The vertical stack's cache before row 0 (zeros: the causal padding).

        Returns:
            (rows, pending): the encoded rows above that the first kernel still needs,
            [(kh1 - 1) * C, W + 1, N] (rows (row, channel)), and per gated layer what the
            rows above add to this and the next rows, [(kh - 1) * (2p + 3), W + 1, N].
        """
        width, (kh1, _), (kh, _) = self.image_shape[1], self.v_first_kernel, self.v_kernel
        dtype, rows = self.v_in.compute_dtype, (kh - 1) * (2 * self.filters + 3)
        pending = [ops.zeros((rows, width + 1, batch), dtype) for _ in range(self.num_layers)]
        return ops.zeros(((kh1 - 1) * self.channels, width + 1, batch), dtype), pending

    def row_step(self, cache, above, constants):
        """The vertical stack on one row, from what the cache keeps of the rows above.

        Args:
            cache: `row_cache` or the cache the previous step returned.
            above: the previous row, encoded, [C, W, N] (zeros above row 0; [W, N] when C = 1).
            constants: `cache_constants`.

        Returns:
            (columns, cache): per column, what the vertical stack and the biases add to the
            horizontal stack, [p + num_layers * 2p, W + 1, N] (column W unused), and the cache
            for the next row.
        """
        rows, pending = cache
        width, p, block = self.image_shape[1], self.filters, 2 * self.filters + 3
        (_, kw1), (kh, kw) = self.v_first_kernel, self.v_kernel
        above = ops.cast(above, rows.dtype)
        above = ops.pad(above[None] if len(above.shape) == 2 else above, [[0, 0], [0, 1], [0, 0]])
        window = ops.concatenate([rows, above, constants["ones"]], axis=0)
        v = _mm(constants["v_in"], _windows(window, kw1, width))  # [p + 1, (W + 1) * N]
        context, next_pending = [_mm(constants["v_to_h"][0], v)], []
        for index in range(self.num_layers):
            terms = _mm(constants["v_convs"][index], _windows(v, kw, width))
            current, later = ops.split(terms, [block], axis=0)
            here = pending[index] if kh == 2 else pending[index][:block]
            v_pre = current + ops.reshape(here, (block, -1))  # [a; 30; b; 30; 1]
            later = ops.reshape(later, ((kh - 1) * block, width + 1, ops.shape(rows)[-1]))
            if kh > 2:  # the older rows' terms move one row closer
                later = later + ops.pad(pending[index][block:], [[0, block], [0, 0], [0, 0]])
            next_pending.append(later)
            to_h = _mm(constants["v_to_h"][index + 1], v_pre)
            if constants["h_cond"] is not None:
                to_h = ops.reshape(to_h, (2 * p, width + 1, -1)) + constants["h_cond"][index]
            context.append(ops.reshape(to_h, (2 * p, -1)))
            if index == self.num_layers - 1:
                break  # the last gate feeds nothing
            if constants["v_cond"] is not None:  # after the projection, as in `vertical`
                v_pre = ops.reshape(v_pre, (block, width + 1, -1)) + constants["v_cond"][index]
                v_pre = ops.reshape(v_pre, (block, -1))
            a, b, _ = ops.split(v_pre, [p + 1, 2 * p + 2], axis=0)
            v = ops.tanh(a) * ops.sigmoid(b)  # [v; 1], column W stays zeros
        shape = (p + 2 * p * self.num_layers, width + 1, ops.shape(rows)[-1])
        return ops.reshape(ops.concatenate(context, axis=0), shape), (
            window[self.channels : -1],
            next_pending,
        )

    def pixel_start(self, batch):
        """The horizontal stack's cache at column 0 (zeros: the causal padding).

        Returns:
            (pixels, lefts): the encoded pixels to the left that the first kernel sees,
            [kw1 * C, N] (rows (column, channel)), and per gated layer its inputs in the
            columns to the left, [(taps - 1) * p, N].
        """
        dtype, p, taps = self.h_in.compute_dtype, self.filters, self.h_kernel
        lefts = [ops.zeros(((taps - 1) * p, batch), dtype) for _ in range(self.num_layers)]
        return ops.zeros((self.h_first_kernel * self.channels, batch), dtype), lefts

    def pixel_step(self, cache, columns, j, previous, constants, current=None):
        """The horizontal stack and the head at one pixel: only what that pixel changes.

        Args:
            cache: `pixel_start` or the cache the previous step returned.
            columns: `row_step`'s columns for this row, [p + num_layers * 2p, W + 1, N].
            j: the column (int32 scalar).
            previous: the encoded pixel to the left [N, C] (zeros at column 0).
            constants: `cache_constants`.
            current: colour only: this pixel's channels drawn so far, encoded, [N, C]; the
                logits of channel c are exact once channels < c are in it, and the returned
                cache once all but the last are (mask A never lets the last one in).

        Returns:
            (logits [N, out_channels], cache for the next column).
        """
        pixels, lefts = cache
        p = self.filters
        c = self.channels
        previous = ops.cast(previous, pixels.dtype)
        previous = ops.reshape(previous, (1, -1)) if c == 1 else ops.transpose(previous)
        pixels = ops.concatenate([pixels[c:], previous], axis=0)  # columns j-k..j-1
        context = ops.split(columns[:, j], [p + 2 * p * n for n in range(self.num_layers)], 0)
        h = _mm(constants["h_in"], pixels) + context[0]
        if c > 1:
            h = h + _mm(constants["h_self"], ops.transpose(ops.cast(current, pixels.dtype)))
        next_lefts = []
        for index in range(self.num_layers):
            window = ops.concatenate([lefts[index], h], axis=0)  # columns j-k+1..j
            next_lefts.append(window[p:])
            a, b = ops.split(_mm(constants["h_convs"][index], window) + context[index + 1], 2, 0)
            kernel, bias = constants["h_out"][index]
            h = h + (_mm(kernel, ops.tanh(a) * ops.sigmoid(b)) + bias)
        (kernel, bias), (out, out_bias) = constants["head"], constants["logits"]
        hidden = ops.relu(_mm(kernel, ops.relu(h)) + bias)
        return _mm(hidden, out, transpose=True) + out_bias, (pixels, next_lefts)

    def grow_from(self, source):
        """Start from `source`, a trained PixelCNN with fewer gated blocks: the same logits
        until training moves the new blocks (`deepen.deepen`, which names what it refuses)."""
        from genkeras.models.pixel.deepen import deepen

        deepen(self, source)

    def get_config(self):
        return {**super().get_config(), "first_kernel_size": self.first_kernel_size}


def _kernel(layer):
    """A layer's kernel in its compute dtype (as the layer itself computes), channel-group
    masked where the layer is (colour)."""
    kernel = layer.masked_kernel() if hasattr(layer, "masked_kernel") else layer.kernel
    return ops.cast(kernel, layer.compute_dtype)


def _vector(layer):
    """A layer's bias [c_out] in its compute dtype."""
    return ops.cast(layer.bias, layer.compute_dtype)


def _column(layer):
    """A layer's bias as a column [c_out, 1], added to feature-major activations."""
    return _vector(layer)[:, None]


def _mm(a, b, transpose=False):
    """An [in, out] matrix `a` applied to feature-major b [in, M] -> [out, M], or with
    `transpose`, feature-major a [in, M] through the matrix b [in, out] -> [M, out]. The matmul
    reads `a` transposed: no transpose op (oneDNN's are slow on small tensors)."""
    import tensorflow as tf  # the sampler's steps only: this module serves any Keras backend

    if transpose:
        return tf.matmul(ops.cast(a, b.dtype), b, transpose_a=True)
    return tf.matmul(a, ops.cast(b, a.dtype), transpose_a=True)


def _centre(vector, kw):
    """[kw, c_out] rows of a matrix over `_windows` for the ones channel: `vector` (a bias) at
    the centre tap, zeros at the others."""
    return ops.pad(vector[None], [[kw // 2, kw // 2], [0, 0]])


def _centre_column(rows, kw, value, dtype):
    """[rows, 1] column that reads the ones channel (the last kw rows) at its centre tap."""
    return ops.cast(ops.one_hot(rows - kw // 2 - 1, rows) * value, dtype)[:, None]


def _vertical(layer):
    """A gated vertical kernel [kh, kw, p, 2p] as one matrix [(p + 1) * kw, kh * (2p + 3)]
    over `_windows` of [v; 1]: first the row's own term [a; 30; b; 30; 1] (the bias through
    the ones channel), then the terms it adds to each row below (kernel rows bottom to top)."""
    kernel, dtype = _kernel(layer), layer.compute_dtype
    kh, kw, p = kernel.shape[0], kernel.shape[1], kernel.shape[2]
    order = (np.arange(kw)[None, :] * p + np.arange(p)[:, None]).reshape(-1)  # -> (ch, tap)
    big = _centre_column((p + 1) * kw, kw, 30.0, dtype)
    one = _centre_column((p + 1) * kw, kw, 1.0, dtype)
    blocks = []
    for row in range(kh - 1, -1, -1):
        own = row == kh - 1  # the bias, and the ones that make [v; 1], in the row's own term
        matrix = ops.take(ops.reshape(kernel[row], (kw * p, 2 * p)), order, axis=0)
        bias = _vector(layer) if own else ops.zeros((2 * p,), dtype)
        matrix = ops.concatenate([matrix, _centre(bias, kw)], axis=0)  # [(p + 1) * kw, 2p]
        scale = 1.0 if own else 0.0
        blocks += [matrix[:, :p], big * scale, matrix[:, p:], big * scale, one * scale]
    return ops.concatenate(blocks, axis=1)


def _windows(x, kw, width):
    """x [C, (W + 1) * N] (column W zeros) -> [C * kw, (W + 1) * N]: for every output column
    the window a (1, kw) convolution padded with kw//2 zero columns each side sees, in one
    gather, so that the convolution is one matmul (column W sees only zeros)."""
    x = ops.reshape(x, (x.shape[0], width + 1, -1))
    index = np.arange(width + 1)[None, :] + np.arange(kw)[:, None] - kw // 2  # [kw, W + 1]
    index = np.where((index >= 0) & (index < width) & (np.arange(width + 1) < width), index, width)
    return ops.reshape(ops.take(x, index, axis=1), (x.shape[0] * kw, -1))
