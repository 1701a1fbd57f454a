"""Colour: the channel-group masks that order a pixel's sub-pixels R, then G, then B.

For C-channel images (C = 3 for RGB) the pixel models factor each pixel as in both PixelRNN
and PixelCNN papers (van den Oord et al., 2016):

    p(x_t | x_<t) = p(R_t | x_<t) p(G_t | x_<t, R_t) p(B_t | x_<t, R_t, G_t).

Every feature map that sees the current pixel is split into C groups along its channels (group
c = the c-th contiguous slice); group c predicts channel c. The kernel taps that read the
current pixel are masked:

* mask A (the first layer that reads the current pixel's own values): group c sees input
  channels < c of that pixel (red sees none of it, green its red, blue its red and green);
* mask B (every later layer that reads features at the current pixel): group c sees feature
  groups <= c.

Taps that read other pixels (to the left, above) are not masked: those pixels are entirely
in the past. The same holds for recurrent states of earlier pixels (PixelRNN's state-to-state
convolutions), which mix all groups. The masks multiply the kernel where it is used
(`masked_kernel`), so the fast sampler, which reads the kernels directly, computes exactly
what the convolution does.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops


def groups_of(count: int, channels: int, halves: int = 1) -> np.ndarray:
    """The channel group of each of `count` features: contiguous slices, per part when the
    features are the `halves` parts of a gate (2: a and b of a gated unit; 4: the i, f, o, g of
    an LSTM unit; the parts of one unit share its group)."""
    size = count // halves
    return (np.arange(count) % size) * channels // size


def channel_mask(kernel_shape, centre, channels, mask_type, in_halves=1, out_halves=1):
    """[kh, kw, c_in, c_out] 0/1 mask: ones everywhere but at the `centre` tap (the current
    pixel), where output group g sees input groups < g (mask "A") or <= g (mask "B")."""
    kh, kw, c_in, c_out = kernel_shape
    g_in = groups_of(c_in, channels, in_halves)[:, None]
    g_out = groups_of(c_out, channels, out_halves)[None, :]
    allowed = g_in < g_out if mask_type == "A" else g_in <= g_out
    mask = np.ones((kh, kw, c_in, c_out), np.float32)
    mask[centre[0], centre[1]] = allowed
    return mask


@keras.saving.register_keras_serializable(package="genkeras")
class ChannelMaskedConv2D(layers.Conv2D):
    """A `valid` Conv2D whose kernel tap at `centre` is channel-group masked (see module).

    Args:
        filters, kernel_size: as Conv2D.
        channels: the image's channels C (the number of groups).
        mask_type: "A" or "B".
        centre: (row, column) of the kernel tap that reads the current pixel.
        in_halves / out_halves: 2 where the inputs / outputs are the two halves of a gate, 4
            where they are an LSTM's four gates (i, f, o, g).
    """

    def __init__(
        self,
        filters,
        kernel_size,
        channels=3,
        mask_type="B",
        centre=(0, 0),
        in_halves=1,
        out_halves=1,
        **kwargs,
    ):
        super().__init__(filters, kernel_size, **kwargs)
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}.")
        self.channels, self.mask_type = int(channels), mask_type
        self.centre = tuple(int(c) for c in centre)
        self.in_halves, self.out_halves = int(in_halves), int(out_halves)

    def build(self, input_shape):
        super().build(input_shape)
        self.mask = channel_mask(
            tuple(self.kernel.shape),
            self.centre,
            self.channels,
            self.mask_type,
            self.in_halves,
            self.out_halves,
        )

    def masked_kernel(self):
        return self.kernel * ops.cast(self.mask, self.kernel.dtype)

    def convolution_op(self, inputs, kernel):
        return super().convolution_op(inputs, kernel * ops.cast(self.mask, kernel.dtype))

    def get_config(self):
        return {
            **super().get_config(),
            "channels": self.channels,
            "mask_type": self.mask_type,
            "centre": self.centre,
            "in_halves": self.in_halves,
            "out_halves": self.out_halves,
        }


def conv(filters, kernel_size, channels, mask_type, centre, name, halves=(1, 1), **kwargs):
    """A plain Conv2D for grayscale images (the layers and weights as before colour), else the
    masked one (`halves`: the `in_halves`, `out_halves` of the mask)."""
    if channels == 1:
        return layers.Conv2D(filters, kernel_size, name=name, **kwargs)
    return ChannelMaskedConv2D(
        filters, kernel_size, channels, mask_type, centre, *halves, name=name, **kwargs
    )
