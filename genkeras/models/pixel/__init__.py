"""Autoregressive pixel models: exact likelihoods, pixel-by-pixel sampling.

`base.py` holds what they share (likelihoods, the causal shifts, the output head), `channels.py`
the R -> G -> B channel-group masks of colour images; the networks are `pixelcnn.py`,
`conditional.py` (the class-conditional PixelCNN, labels by Bayes' rule), `pixelrnn.py` (Row
LSTM) and `diagonal_bilstm.py` (Diagonal BiLSTM); `samplers.py` holds the naive, row-cache and
per-pixel-cache samplers.
"""

from genkeras.models.pixel.base import PixelModel
from genkeras.models.pixel.conditional import ConditionalPixelCNN
from genkeras.models.pixel.diagonal_bilstm import DiagonalBiLSTM
from genkeras.models.pixel.pixelcnn import PixelCNN
from genkeras.models.pixel.pixelrnn import PixelRNN

__all__ = ["PixelModel", "PixelCNN", "ConditionalPixelCNN", "PixelRNN", "DiagonalBiLSTM"]
