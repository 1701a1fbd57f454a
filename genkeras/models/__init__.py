"""Keras models, one module or folder per family. Importing this registers every class with
Keras serialization, so `keras.saving.load_model` rebuilds them from `.keras` files.

Nothing here imports from outside `genkeras.models`."""

from genkeras.models.autoencoders import Autoencoder, ConvAutoencoder, DenseAutoencoder
from genkeras.models.pca import PCA
from genkeras.models.pixel import ConditionalPixelCNN, DiagonalBiLSTM, PixelCNN, PixelRNN
from genkeras.models.seeds import StatelessSeed
from genkeras.models.vae import VAE, ConditionalVAE, ConvVAE, DenseVAE

__all__ = [
    "PCA",
    "PixelCNN",
    "ConditionalPixelCNN",
    "PixelRNN",
    "DiagonalBiLSTM",
    "Autoencoder",
    "ConvAutoencoder",
    "DenseAutoencoder",
    "StatelessSeed",
    "VAE",
    "DenseVAE",
    "ConvVAE",
    "ConditionalVAE",
]
