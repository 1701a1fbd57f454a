"""Log densities and the KL term of a VAE, per example (summed over the last axes), in nats.

All in `keras.ops`, so they run under every Keras backend.
"""

import math

from keras import ops

LOG_2PI = math.log(2.0 * math.pi)
PIXEL_AXES = (-3, -2, -1)  # height, width, channels


def gaussian_kl(z_mean, z_log_var):
    """Analytic KL(N(mean, exp(log_var)) || N(0, 1)) per latent dimension, shape of `z_mean`."""
    return 0.5 * (ops.exp(z_log_var) + ops.square(z_mean) - 1.0 - z_log_var)


def standard_normal_log_density(z):
    """log N(z; 0, I), summed over the last axis."""
    return -0.5 * ops.sum(ops.square(z) + LOG_2PI, axis=-1)


def diagonal_normal_log_density(z, mean, log_var):
    """log N(z; mean, diag(exp(log_var))), summed over the last axis."""
    return -0.5 * ops.sum(ops.square(z - mean) * ops.exp(-log_var) + log_var + LOG_2PI, axis=-1)


def bernoulli_log_likelihood(images, logits):
    """log p(x | logits) of binary pixels, summed over height, width and channels: [..., N].

    `images` broadcast against `logits`, so [N, H, W, C] images score [k, N, H, W, C] logits
    of k importance samples without being copied k times.
    """
    return ops.sum(images * logits - ops.softplus(logits), axis=PIXEL_AXES)


def gaussian_log_likelihood(images, means, log_sigma):
    """log N(x; means, sigma^2 I) of continuous pixels (a density, not a probability): [N]."""
    log_p = -0.5 * (ops.square((images - means) * ops.exp(-log_sigma)) + LOG_2PI) - log_sigma
    return ops.sum(log_p, axis=PIXEL_AXES)
