"""Gated PixelCNN (van den Oord et al., 2016): masked convolutions, no blind spot.

Two stacks run side by side:

* the vertical stack sees only the rows strictly above the current pixel: the input is
  shifted down one row (mask A) and every later convolution is padded so it never looks
  down (kernel (k//2 + 1, k), padded on top);
* the horizontal stack sees the pixels to the left in the current row: the input is shifted
  right one column (mask A) and later (1, k//2 + 1) convolutions are padded on the left
  (mask B). Each layer adds a 1x1 projection of the vertical stack into the horizontal one.

The union covers everything above and to the left (no blind spot). Each gated block computes
tanh(a) * sigmoid(b) (plus a per-layer label projection when class-conditional); the horizontal
stack has residual connections. Output: per-pixel Bernoulli logits or 256-way logits.
"""

import keras
from keras import layers

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
        image_shape: (height, width, 1).
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
        self.v_to_h_in = layers.Conv2D(p, 1, name="v_to_h_in")
        self.v_convs, self.h_convs, self.v_to_h, self.h_out = [], [], [], []
        self.v_cond, self.h_cond = [], []
        for index in range(self.num_layers):
            self.v_convs.append(layers.Conv2D(2 * p, self.v_kernel, name=f"v_conv_{index}"))
            self.h_convs.append(layers.Conv2D(2 * p, (1, self.h_kernel), name=f"h_conv_{index}"))
            self.v_to_h.append(layers.Conv2D(2 * p, 1, name=f"v_to_h_{index}"))
            self.h_out.append(layers.Conv2D(p, 1, name=f"h_out_{index}"))
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
        for index in range(self.num_layers):
            h_pre = self.h_convs[index](pad_right(h, self.h_kernel)) + context[index + 1]
            h = h + self.h_out[index](gate(h_pre))
        return self.output_head(h)

    def get_config(self):
        return {**super().get_config(), "first_kernel_size": self.first_kernel_size}
