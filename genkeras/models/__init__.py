"""Keras models, one module per family. Importing this registers them for `load_model`."""

from genkeras.models.autoencoders import Autoencoder, ConvAutoencoder, DenseAutoencoder
from genkeras.models.pca import PCA
from genkeras.models.seeds import StatelessSeed

__all__ = ["PCA", "Autoencoder", "ConvAutoencoder", "DenseAutoencoder", "StatelessSeed"]
