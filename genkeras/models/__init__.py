"""Keras models, one module per family. Importing this registers them for `load_model`."""

from genkeras.models.autoencoders import Autoencoder, ConvAutoencoder, DenseAutoencoder
from genkeras.models.pca import PCA
from genkeras.models.pixelcnn import PixelCNN
from genkeras.models.pixelrnn import PixelRNN
from genkeras.models.seeds import StatelessSeed
from genkeras.models.vae import VAE, ConditionalVAE, ConvVAE, DenseVAE

__all__ = [
    "PCA",
    "PixelCNN",
    "PixelRNN",
    "Autoencoder",
    "ConvAutoencoder",
    "DenseAutoencoder",
    "StatelessSeed",
    "VAE",
    "DenseVAE",
    "ConvVAE",
    "ConditionalVAE",
]
