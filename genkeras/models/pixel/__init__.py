"""Autoregressive pixel models: exact likelihoods, pixel-by-pixel sampling.

`base.py` holds what they share (likelihoods, the causal shifts, the output head), `channels.py`
the R -> G -> B channel-group masks of colour images, `pixelcnn.py`,
`pixelrnn.py` (Row LSTM) and `diagonal_bilstm.py` (Diagonal BiLSTM) the networks, `samplers.py`
the naive, row-cache and per-pixel-cache samplers.
"""

from genkeras.models.pixel.base import PixelModel
from genkeras.models.pixel.diagonal_bilstm import DiagonalBiLSTM
from genkeras.models.pixel.pixelcnn import PixelCNN
from genkeras.models.pixel.pixelrnn import PixelRNN

__all__ = ["PixelModel", "PixelCNN", "PixelRNN", "DiagonalBiLSTM"]
