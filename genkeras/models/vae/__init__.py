"""Variational autoencoders: `densities.py` (log densities, KL), `base.py` (the VAE: encoder,
decoder, ELBO, sampling, importance weights), `networks.py` (dense, convolutional and
conditional networks), `warmup.py` (KL warm-up) and `latent.py` (latent-space tools)."""

from genkeras.models.vae.base import VAE
from genkeras.models.vae.networks import ConditionalVAE, ConvVAE, DenseVAE
from genkeras.models.vae.warmup import KLWarmup, kl_warmup_callbacks

__all__ = ["VAE", "DenseVAE", "ConvVAE", "ConditionalVAE", "KLWarmup", "kl_warmup_callbacks"]
