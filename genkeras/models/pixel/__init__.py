"""Autoregressive pixel models: exact likelihoods, pixel-by-pixel sampling.

`base.py` holds what both share (likelihoods, the causal shifts, the output head), `pixelcnn.py`
and `pixelrnn.py` the two networks, `samplers.py` the naive and row-cached samplers.
"""

from genkeras.models.pixel.base import PixelModel
from genkeras.models.pixel.pixelcnn import PixelCNN
from genkeras.models.pixel.pixelrnn import PixelRNN

__all__ = ["PixelModel", "PixelCNN", "PixelRNN"]
