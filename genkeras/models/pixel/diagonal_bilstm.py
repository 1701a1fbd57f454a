"""PixelRNN as a Diagonal BiLSTM (van den Oord et al., 2016, section 3.2): no blind spot.

Each layer runs two LSTMs over the image. The left-to-right one computes, at pixel (i, j),

    gates = K_is x_in(i, j) + K_ss [h(i-1, j); h(i, j-1)]      (4p channels: i, f, o, g)
    c(i, j) = sigmoid(f) * c(i, j-1) + sigmoid(i) * tanh(g),   h = sigmoid(o) * tanh(c),

the lecture's h(x, y) = f(h(x-1, y), h(x, y-1)). Pixel (i, j) lies on diagonal i + j and
depends only on earlier diagonals, so the whole image takes H + W - 1 sequential steps: the
feature map is skewed (row i moved i columns right) so that every diagonal becomes a column,
a column-wise LSTM whose state-to-state transition is a 2x1 convolution (rows a-1 and a of
the previous column: the pixels above and to the left) scans the H + W - 1 columns, and the
result is unskewed. The input-to-state K_is is a 1x1 convolution. States outside the image
are zero.

The right-to-left LSTM is the same on the mirrored image (it sees the pixels above and to the
right); its output is shifted down one row so that no pixel sees its own row through it. A
layer's output is h_lr + shift_down(h_rl), plus its input for layers after the first
(residual connections).

Causality and the full receptive field: in the first layer the left-to-right LSTM reads the
image shifted one column right (mask A), so it covers the pixels (i', j') with i' <= i and
j' < j; the right-to-left LSTM reads the image itself, and through the shift covers i' < i,
j' >= j. Together: every pixel above, and every pixel to the left in the same row, and nothing
else. (The paper starts with a 7x7 mask-A convolution instead; with it no pixel (i, j) with j
small sees the last pixel of the row above, which this first layer does.)

Colour (RGB, section 3.4 of the paper): the left-to-right LSTM's gates and states are split
into three channel groups R, G, B (`channels.py`; unit u of every gate, and of h and c, in the
same group). Its first layer adds a 1x1 mask-A convolution of the current pixel (group c sees
its channels < c), its later input-to-state convolutions are mask B (group c sees groups <= c
of the current pixel's features), and so is the output head. Its 2x1 state-to-state
convolution reads the states above and to the left, earlier pixels, and mixes all groups. The
right-to-left LSTM needs no mask: shifted down one row, it brings to row i only what it
computed from rows < i, every channel of which is in the past.

Sampling (see samplers.py) uses the per-pixel cache, carrying the recurrent state instead of
recomputing the network: `row_step` computes, once per row, both LSTMs on the finished row
above (W steps each, from the states of the row before), and `pixel_step` steps each layer's
left-to-right LSTM by one pixel from the state to its left. Logits equal `logits` up to float
rounding.
"""

import keras
import numpy as np
from keras import layers, ops

from genkeras.models.pixel import channels
from genkeras.models.pixel.base import PixelModel, down_shift, right_shift

DIRECTIONS = ("forward", "reverse")  # left to right; right to left, shifted down one row


def skew(x):
    """[N, H, W, C] -> [N, H, H + W - 1, C]: row i moved i columns right, zeros around, so
    that diagonal i + j of x is column i + j."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    x = ops.pad(x, [[0, 0], [0, 0], [0, height], [0, 0]])  # rows of W + H
    x = ops.reshape(x, (-1, height * (width + height), channels))
    # ops.slice, not x[...]: TensorFlow's gradient of a strided slice is slow on CPUs.
    x = ops.slice(x, [0, 0, 0], [ops.shape(x)[0], height * (width + height - 1), channels])
    return ops.reshape(x, (-1, height, width + height - 1, channels))


def unskew(x, width):
    """`skew`'s inverse: [N, H, H + W - 1, C] -> [N, H, W, C]."""
    height, span, channels = x.shape[1], x.shape[2], x.shape[3]
    x = ops.pad(ops.reshape(x, (-1, height * span, channels)), [[0, 0], [0, height], [0, 0]])
    x = ops.reshape(x, (-1, height, span + 1, channels))
    return ops.slice(x, [0, 0, 0, 0], [ops.shape(x)[0], height, width, channels])


def _cell(gates, c_before):
    """The LSTM update from gates [..., 4p] (i, f, o, g) and the cell to the left."""
    i, f, o, g = ops.split(gates, 4, axis=-1)
    c = ops.sigmoid(f) * c_before + ops.sigmoid(i) * ops.tanh(g)
    return ops.sigmoid(o) * ops.tanh(c), c


@keras.saving.register_keras_serializable(package="genkeras")
class DiagonalBiLSTM(PixelModel):
    """Diagonal BiLSTM PixelRNN: every pixel sees everything above and to its left.

    Args:
        image_shape: (height, width, 1), or (height, width, 3): R, G, B in that order.
        latent_dim: ignored (no latent); accepted for the registry.
        filters: hidden units p of each LSTM (each direction) of every layer (colour: >= 3,
            split in three groups).
        num_layers: Diagonal BiLSTM layers.
        hidden: channels of the 1x1 output head.
        **kwargs: `likelihood`, `num_classes`: see `PixelModel`; `kernel_size` is accepted for
            the registry and unused (the input-to-state convolutions are 1x1).

    Returns:
        Called on images [N, H, W, C] (or `(images, labels)`), the per-pixel logits
        [N, H, W, C] (bernoulli) or [N, H, W, C, levels] (categorical).

    Example:
    >>> model = DiagonalBiLSTM((4, 4, 1), filters=8, num_layers=1)
    >>> model(np.zeros((2, 4, 4, 1))).shape
    (2, 4, 4, 1)
    """

    pixel_cache = True
    colour = True

    def __init__(self, image_shape, latent_dim=None, filters=32, num_layers=2, hidden=64, **kwargs):
        super().__init__(image_shape, filters, num_layers, hidden, **kwargs)
        p, height, c = self.filters, self.image_shape[0], self.channels
        n = range(self.num_layers)
        # Per direction, one list per kind (Keras tracks the layers of list attributes). The
        # left-to-right LSTM of layer 0 reads the pixel to the left (all of it in the past);
        # its later layers read the current pixel's features (colour: mask B).
        self.forward_input = [layers.Conv2D(4 * p, 1, name="forward_input_0")] + [
            channels.conv(4 * p, 1, c, "B", (0, 0), f"forward_input_{k}", (1, 4)) for k in n[1:]
        ]
        if c > 1:  # the current pixel's earlier channels (mask A), into layer 0's forward gates
            self.forward_self = channels.conv(
                4 * p, 1, c, "A", (0, 0), "forward_self", (1, 4), use_bias=False
            )
        self.reverse_input = [layers.Conv2D(4 * p, 1, name=f"reverse_input_{k}") for k in n]
        # The 2x1 state-to-state convolutions, over rows (a - 1, a) of the previous skewed
        # column: the states above and to the left (to the right, mirrored).
        self.forward_state = [self._state(f"forward_state_{k}") for k in n]
        self.reverse_state = [self._state(f"reverse_state_{k}") for k in n]
        n = n if self.conditional else ()
        self.forward_cond = [
            layers.Dense(4 * p, use_bias=False, name=f"forward_cond_{k}") for k in n
        ]
        self.reverse_cond = [
            layers.Dense(4 * p, use_bias=False, name=f"reverse_cond_{k}") for k in n
        ]
        width = self.image_shape[1]
        column = np.arange(height + width - 1)[None, :] - np.arange(height)[:, None]  # j = c - a
        self._inside = ((column >= 0) & (column < width)).astype("float32")  # [H, H + W - 1]
        self.build_output_head()

    def _state(self, name):
        return layers.Conv1D(4 * self.filters, 2, padding="causal", use_bias=False, name=name)

    def _layer(self, kind, d, index):
        """The `kind` ("input", "state" or "cond") layer of direction `d` in layer `index`."""
        return getattr(self, f"{d}_{kind}")[index]

    # -- the network (training, log_prob, the naive sampler) --------------------------------
    def _scan(self, d, index, inputs, cond, extra=None):
        """One direction of layer `index`, left to right: inputs [N, H, W, C] -> h [N, H, W, p]
        (`extra`: a further input-to-state term [N, H, W, 4p], colour's mask-A one)."""
        height, width = self.image_shape[:2]
        gates = self._layer("input", d, index)(inputs)
        if extra is not None:
            gates = gates + extra
        if cond is not None:
            gates = gates + self._layer("cond", d, index)(cond)[:, None, None, :]
        # One [N, H, 4p] slice per skewed column (unstacked: cheap to differentiate).
        columns = ops.unstack(ops.transpose(skew(gates), (2, 0, 1, 3)), axis=0)
        kernel = self._state_matrix(d, index, gates.dtype)
        h = ops.zeros_like(columns[0][..., : self.filters])  # [N, H, p]
        c, outputs = h, []
        for column, column_gates in enumerate(columns):
            above = ops.slice(ops.pad(h, [[0, 0], [1, 0], [0, 0]]), [0, 0, 0], ops.shape(h))
            h, c = _cell(column_gates + ops.matmul(ops.concatenate([above, h], -1), kernel), c)
            inside = ops.cast(self._inside[None, :, column, None], h.dtype)
            h, c = h * inside, c * inside
            outputs.append(h)
        return unskew(ops.stack(outputs, axis=2), width)

    def _state_matrix(self, d, index, dtype):
        """The 2x1 state-to-state kernel of direction `d` in layer `index` as one [2p, 4p]
        matrix: rows :p read the state above (row a - 1), rows p: the state beside (row a).
        The column-wise convolution is this matmul on [h above; h], which trains faster here."""
        conv = self._layer("state", d, index)
        if not conv.built:
            conv.build((None, self.image_shape[0], self.filters))
        return ops.reshape(ops.cast(conv.kernel, dtype), (2 * self.filters, 4 * self.filters))

    def logits(self, images, labels=None):
        """Quantized images -> per-pixel logits, both LSTMs of every layer on skewed maps."""
        x = self.encode_input(images)
        cond = self.label_features(labels)
        inputs = x
        for index in range(self.num_layers):
            forward_in, reverse_in = (right_shift(x), x) if index == 0 else (inputs, inputs)
            extra = self.forward_self(x) if index == 0 and self.channels > 1 else None
            h = self._scan("forward", index, forward_in, cond, extra)
            mirrored = self._scan("reverse", index, ops.flip(reverse_in, axis=2), cond)
            h = h + down_shift(ops.flip(mirrored, axis=2))
            inputs = h if index == 0 else inputs + h
        return self.output_head(inputs)

    def vertical(self, x, labels=None):
        raise NotImplementedError("The Diagonal BiLSTM samples with its per-pixel cache.")

    def horizontal(self, rows, context):
        raise NotImplementedError("The Diagonal BiLSTM samples with its per-pixel cache.")

    # -- the per-pixel cache (samplers.py): rows travel as [W, N, C] ------------------------
    def cache_constants(self, batch, labels=None):
        """Per layer and direction: the input kernel [C, 4p] (channel-group masked where the
        layer is), its bias plus the label term [N, 4p], and the 2x1 kernel's halves for the
        state above and the state beside; colour: "self", the mask-A kernel [C, 4p]."""
        cond = self.label_features(labels)
        constants = {"self": _matrix(self.forward_self) if self.channels > 1 else None}
        for d in DIRECTIONS:
            for index in range(self.num_layers):
                conv = self._layer("input", d, index)
                bias = ops.zeros((batch, 4 * self.filters)) + ops.cast(conv.bias, "float32")
                if cond is not None:
                    bias = bias + ops.cast(self._layer("cond", d, index)(cond), "float32")
                kernel = ops.cast(self._layer("state", d, index).kernel, "float32")  # [2, p, 4p]
                constants[f"{d}_{index}"] = {
                    "input": _matrix(conv),
                    "bias": bias,
                    "above": kernel[0],
                    "beside": kernel[1],
                }
        return constants

    def _zero_rows(self, batch):
        return ops.zeros((self.image_shape[1], batch, self.filters))

    def row_cache(self, batch):
        """Before row 0: a flag (0: no row above yet) and per layer zero states of the
        left-to-right and right-to-left LSTMs for the row before the row above."""
        states = [(self._zero_rows(batch), self._zero_rows(batch)) for _ in range(self.num_layers)]
        return ops.zeros(()), states

    def _sweep(self, pre, beside, reverse):
        """The LSTM along one row: pre-activations [W, N, 4p] without the term of the state
        beside -> h [W, N, p], left to right (or right to left)."""
        width = self.image_shape[1]
        h = ops.zeros_like(pre[0, :, : self.filters])
        c, outputs = h, [None] * width
        for j in reversed(range(width)) if reverse else range(width):
            h, c = _cell(pre[j] + ops.matmul(h, beside), c)
            outputs[j] = h
        return ops.stack(outputs, axis=0)

    def row_step(self, cache, above, constants):
        """Both LSTMs of every layer on the finished row above, from the cached states of the
        row before it.

        Args:
            cache: `row_cache` or the cache the previous step returned.
            above: the row above, encoded, [W, N] (zeros above row 0; colour: [C, W, N]).
            constants: `cache_constants`.

        Returns:
            (columns, cache): per layer, the row above's left-to-right term plus the biases
            [W, N, 4p] and the right-to-left states shifted down onto this row [W, N, p]; the
            cache for the next row.
        """
        started, states = cache
        above = ops.cast(above, "float32")  # [W, N], or [C, W, N]
        if self.channels == 1:
            x = above[:, :, None]  # [W, N, C]
        else:
            x = ops.transpose(above, (1, 2, 0))
        inputs, columns, next_states = x, [], []
        for index, (forward_before, reverse_before) in enumerate(states):
            f, r = constants[f"forward_{index}"], constants[f"reverse_{index}"]
            if index == 0:
                forward_in = ops.pad(x, [[1, 0], [0, 0], [0, 0]])[:-1]  # mask A
                reverse_in = x
            else:
                forward_in = reverse_in = inputs
            pre = ops.matmul(forward_in, f["input"]) + f["bias"]
            if index == 0 and self.channels > 1:
                pre = pre + ops.matmul(x, constants["self"])
            forward = self._sweep(pre + ops.matmul(forward_before, f["above"]), f["beside"], False)
            pre = ops.matmul(reverse_in, r["input"]) + r["bias"]
            reverse = self._sweep(pre + ops.matmul(reverse_before, r["above"]), r["beside"], True)
            h = forward + reverse_before
            inputs = h if index == 0 else inputs + h
            forward, reverse = forward * started, reverse * started  # zeros above row 0
            next_states.append((forward, reverse))
            columns.append((ops.matmul(forward, f["above"]) + f["bias"], reverse))
        return columns, (ops.ones(()), next_states)

    def pixel_start(self, batch):
        """Per layer the left-to-right LSTM's (h, c) left of column 0: zeros."""
        zeros = ops.zeros((batch, self.filters))
        return [(zeros, zeros) for _ in range(self.num_layers)]

    def pixel_step(self, cache, columns, j, previous, constants, current=None):
        """Every layer's left-to-right LSTM one pixel on, then the head at that pixel.

        Args:
            cache: `pixel_start` or the cache the previous step returned.
            columns: `row_step`'s columns for this row.
            j: the column (int32 scalar).
            previous: the encoded pixel to the left [N, C] (zeros at column 0).
            constants: `cache_constants`.
            current: colour only: this pixel's channels drawn so far, encoded, [N, C]; the
                logits of channel c are exact once channels < c are in it, and the returned
                cache once all but the last are (mask A never lets the last one in).

        Returns:
            (logits [N, out_channels], cache for the next column).
        """
        inputs, next_cache = ops.cast(previous, "float32"), []
        for index, ((h, c), (above, reverse)) in enumerate(zip(cache, columns, strict=True)):
            f = constants[f"forward_{index}"]
            gates = ops.matmul(inputs, f["input"]) + above[j] + ops.matmul(h, f["beside"])
            if index == 0 and self.channels > 1:
                gates = gates + ops.matmul(ops.cast(current, "float32"), constants["self"])
            h, c = _cell(gates, c)
            next_cache.append((h, c))
            inputs = h + reverse[j] if index == 0 else inputs + h + reverse[j]
        logits = self.output_head(inputs[:, None, None, :])
        return ops.reshape(ops.cast(logits, "float32"), (-1, self.out_channels)), next_cache


def _matrix(conv):
    """A 1x1 convolution's kernel as a float32 [in, out] matrix, channel-group masked where the
    layer is (colour)."""
    kernel = conv.masked_kernel() if hasattr(conv, "masked_kernel") else conv.kernel
    return ops.cast(kernel[0, 0], "float32")
