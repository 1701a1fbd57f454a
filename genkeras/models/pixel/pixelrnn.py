"""PixelRNN as a Row LSTM (van den Oord et al., 2016): h_{x,y} = f(h_{x-1,y}, h_{x,y-1}).

Each Row LSTM layer processes the image one row at a time. For row i:

    gates_i = K_is (*) input_i  +  K_ss (*) h_{i-1}       (4p channels: i, f, o, g)
    c_i = sigmoid(f) * c_{i-1} + sigmoid(i) * tanh(g),   h_i = sigmoid(o) * tanh(c_i)

* input-to-state K_is is a (1, k) convolution along the row, masked so position j sees
  columns < j of the image (mask A, first layer) or <= j of the layer below (mask B);
* state-to-state K_ss is a (1, 3) convolution over the previous row's hidden state, so the
  state at (i, j) sees (i-1, j-1..j+1), i.e. a triangle of the rows above.

Colour (RGB, section 3.4 of the paper): the gates, hidden and cell states are split into three
channel groups R, G, B (`channels.py`; unit u of every gate, and of h and c, in the same
group). The first layer adds a 1x1 mask-A convolution of the current pixel (group c sees its
channels < c); the input-to-state convolutions of later layers are channel-group masked at the
current pixel's tap (mask B), and so is the output head. K_ss reads only the row above, all of
it in the past, and mixes all groups; the LSTM update is unit by unit and keeps the groups.

Layers after the first are residual. The same split as PixelCNN holds (see
`genkeras.models.pixel.base`): `vertical` runs the recurrence and returns, for every row, each
layer's state of the row above; `horizontal` computes one LSTM step on given rows from that
state, so the row-cache sampler reuses it. The Row LSTM's receptive field is triangular: a
pixel does not see the far corners above it (the Diagonal BiLSTM of `diagonal_bilstm.py`
removes that blind spot). `build_pixelrnn` builds either variant.
"""

import keras
from keras import layers, ops

from genkeras.models.pixel import channels
from genkeras.models.pixel.base import PixelModel, pad_right, right_shift
from genkeras.models.pixel.diagonal_bilstm import DiagonalBiLSTM


@keras.saving.register_keras_serializable(package="genkeras")
class PixelRNN(PixelModel):
    """Row LSTM PixelRNN with optional class conditioning.

    Args:
        image_shape: (height, width, 1), or (height, width, 3): R, G, B in that order.
        latent_dim: ignored (no latent); accepted for the registry.
        filters: hidden units p of each Row LSTM layer (colour: >= 3, split in three groups).
        num_layers: Row LSTM layers.
        hidden: channels of the 1x1 output head.
        **kwargs: `kernel_size` (of the input-to-state convolutions, odd), `likelihood`,
            `num_classes`: see `PixelModel`.

    Example:
    >>> model = PixelRNN((4, 4, 1), filters=8, num_layers=1)
    >>> model(np.zeros((2, 4, 4, 1))).shape
    (2, 4, 4, 1)
    """

    colour = True

    def __init__(self, image_shape, latent_dim=None, filters=32, num_layers=2, hidden=64, **kwargs):
        super().__init__(image_shape, filters, num_layers, hidden, **kwargs)
        p, c, width = self.filters, self.channels, self.kernel_size // 2 + 1
        # Layer 0 reads the pixels to the left (all channels: they are past); later layers
        # read the layer below up to the current pixel, whose tap is masked (colour, mask B).
        self.input_to_state = [layers.Conv2D(4 * p, (1, width), name="input_to_state_0")] + [
            channels.conv(
                *(4 * p, (1, width), c, "B", (0, width - 1)),
                *(f"input_to_state_{index}", (1, 4)),
            )
            for index in range(1, self.num_layers)
        ]
        if c > 1:  # the current pixel's earlier channels (mask A), into layer 0's gates
            self.input_self = channels.conv(
                4 * p, 1, c, "A", (0, 0), "input_self", (1, 4), use_bias=False
            )
        self.state_to_state = [
            layers.Conv2D(
                4 * p, (1, 3), padding="same", use_bias=False, name=f"state_to_state_{index}"
            )
            for index in range(self.num_layers)
        ]
        self.cond = (
            [
                layers.Dense(4 * p, use_bias=False, name=f"cond_{index}")
                for index in range(self.num_layers)
            ]
            if self.conditional
            else []
        )
        self.build_output_head()

    def _gate_inputs(self, index, inputs):
        """Input-to-state term for whole rows (mask A for layer 0, mask B after)."""
        width = self.kernel_size // 2 + 1
        shifted = right_shift(inputs) if index == 0 else inputs
        gates = self.input_to_state[index](pad_right(shifted, width))
        if index == 0 and self.channels > 1:
            gates = gates + self.input_self(inputs)
        return gates

    def _step(self, index, gate_inputs, h_above, c_above):
        gates = gate_inputs + self.state_to_state[index](h_above)
        i, f, o, g = ops.split(gates, 4, axis=-1)
        c = ops.sigmoid(f) * c_above + ops.sigmoid(i) * ops.tanh(g)
        return ops.sigmoid(o) * ops.tanh(c), c

    def _layer_output(self, index, inputs, h):
        return h if index == 0 else inputs + h

    def vertical(self, x, labels=None):
        """Runs the recurrence; returns per layer [h of row i-1, c of row i-1, label bias]."""
        height = self.image_shape[0]
        cond = self.label_features(labels)
        batch, width = ops.shape(x)[0], ops.shape(x)[2]
        context, inputs = [], x
        for index in range(self.num_layers):
            gate_inputs = self._gate_inputs(index, inputs)
            bias = ops.zeros_like(gate_inputs)
            if cond is not None:
                bias = bias + self.cond[index](cond)[:, None, None, :]
            gate_inputs = gate_inputs + bias
            h = ops.zeros((batch, 1, width, self.filters))
            c = ops.zeros((batch, 1, width, self.filters))
            h_above, c_above, outputs = [], [], []
            for row in range(height):
                h_above.append(h)
                c_above.append(c)
                h, c = self._step(index, gate_inputs[:, row : row + 1], h, c)
                outputs.append(h)
            context += [ops.concatenate(h_above, 1), ops.concatenate(c_above, 1), bias]
            inputs = self._layer_output(index, inputs, ops.concatenate(outputs, 1))
        return context

    def horizontal(self, rows, context):
        """One Row LSTM step per layer on the given rows, from the state of the rows above."""
        inputs = rows
        for index in range(self.num_layers):
            h_above, c_above, bias = context[3 * index : 3 * index + 3]
            h, _ = self._step(index, self._gate_inputs(index, inputs) + bias, h_above, c_above)
            inputs = self._layer_output(index, inputs, h)
        return self.output_head(inputs)


VARIANTS = {"row": PixelRNN, "diagonal": DiagonalBiLSTM}


def build_pixelrnn(image_shape, latent_dim=None, variant="row", **kwargs):
    """A PixelRNN of the given variant: "row" (Row LSTM, `PixelRNN`) or "diagonal" (Diagonal
    BiLSTM, `DiagonalBiLSTM`); the other arguments go to the class.

    Example:
    >>> build_pixelrnn((28, 28, 1), variant="diagonal", filters=16)
    """
    if variant not in VARIANTS:
        raise ValueError(
            f"Unknown PixelRNN variant {variant!r}; use one of: {', '.join(VARIANTS)}."
        )
    return VARIANTS[variant](image_shape, latent_dim, **kwargs)


build_pixelrnn.builds = tuple(VARIANTS.values())  # the classes (see registry.spec_of_model)
