"""Test log-likelihoods: importance-weighted (IWAE) bounds for the VAEs, exact for the pixel
models, and the VAE's posterior statistics (ELBO terms, KL per dimension, active units).

The registry's `evaluate` hooks of the likelihood models live here: `vae_metrics` and
`likelihood_metrics`. Conditional models get their labels from the batches.
"""

from __future__ import annotations

import math

import numpy as np

from genkeras.models.vae.densities import gaussian_kl


def split_batch(batch, model):
    """`images` or `(images, labels)` (or `(inputs, targets)` pairs) -> `(images, labels|None)`."""
    if isinstance(batch, (tuple, list)):
        first = batch[0]
        if isinstance(first, (tuple, list)):  # ((images, labels), targets)
            return first[0], first[1] if model.num_classes else None
        return first, batch[1] if model.num_classes else None
    return batch, None


def _log_weights_fn(model, num_samples):
    """A compiled `(images, labels, seed) -> log w [k, N]`, one per model and k."""
    import tensorflow as tf

    cache = model.__dict__.setdefault("_genkeras_log_weight_fns", {})
    if num_samples not in cache:
        if model.num_classes:
            fn = lambda images, labels, seed: model.importance_log_weights(
                images, labels, num_samples, seed
            )
        else:
            fn = lambda images, labels, seed: model.importance_log_weights(
                images, None, num_samples, seed
            )
        cache[num_samples] = tf.function(fn, reduce_retracing=True)
    return cache[num_samples]


def importance_weighted_log_prob(model, images, labels=None, num_samples=5000, chunk=100, seed=0):
    """log p(x) estimates [N] with k = `num_samples` importance samples, `chunk` at a time.

    The running log-sum-exp is kept in float64, so k = 5000 fits in memory for any batch size
    that the decoder can take `chunk` times over.
    """
    import tensorflow as tf

    images = tf.convert_to_tensor(images, tf.float32)
    labels = (
        tf.zeros([tf.shape(images)[0]], tf.int32) if labels is None else tf.cast(labels, tf.int32)
    )
    total = None
    done = 0
    index = 0
    while done < num_samples:
        size = min(chunk, num_samples - done)
        log_w = _log_weights_fn(model, size)(
            images, labels, tf.constant(seed * 1_000_003 + index, tf.int32)
        )
        part = np.logaddexp.reduce(np.asarray(log_w, np.float64), axis=0)
        total = part if total is None else np.logaddexp(total, part)
        done += size
        index += 1
    return total - math.log(num_samples)


def iwae_nll(model, batches, num_samples=5000, chunk=100, max_images=None, seed=0) -> dict:
    """Test negative log-likelihood in nats from the k-sample importance-weighted bound.

    Args:
        model: a VAE.
        batches: test batches (images, or (images, labels)); already binarized for Bernoulli.
        num_samples: k per image (the IWAE paper reports k = 5000).
        chunk: samples decoded at once per image.
        max_images: stop after this many images (None = the whole split).

    Returns:
        dict: `iwae_nll` (mean), `iwae_nll_stderr`, `iwae_samples`, `iwae_images`.
    """
    values = []
    for batch in batches:
        images, labels = split_batch(batch, model)
        if max_images is not None:
            left = max_images - sum(len(v) for v in values)
            if left <= 0:
                break
            images = images[:left]
            labels = None if labels is None else labels[:left]
        values.append(
            -importance_weighted_log_prob(model, images, labels, num_samples, chunk, seed)
        )
    nll = np.concatenate(values)
    return {
        "iwae_nll": float(nll.mean()),
        "iwae_nll_stderr": float(nll.std(ddof=1) / math.sqrt(len(nll))) if len(nll) > 1 else 0.0,
        "iwae_samples": int(num_samples),
        "iwae_images": int(len(nll)),
    }


def posterior_statistics(model, batches, max_images=None, seed=0) -> dict:
    """One pass over `batches`: ELBO, KL per dimension, active units, sigma, reconstruction MSE.

    Active units follow Burda et al.: dimension d is active when Var_x(E_q[z_d | x]) > 0.01.
    `posterior_sigma_mean` is the mean of exp(z_log_var / 2): close to 0 when the posterior
    has collapsed to a point (beta = 0), close to 1 for dimensions the model does not use.
    """
    import keras
    from keras import ops

    rec, kl_dims, means, sigmas, squared, pixels = [], [], [], [], 0.0, 0
    count = 0
    for index, batch in enumerate(batches):
        images, labels = split_batch(batch, model)
        if max_images is not None and count >= max_images:
            break
        z_mean, z_log_var = model.posterior(images, labels)
        eps = keras.random.normal(ops.shape(z_mean), seed=seed * 7919 + index)
        reconstruction, kl, _, _ = model.elbo_terms(images, labels, eps=eps)
        rec.append(np.asarray(reconstruction))
        kl_dims.append(np.asarray(gaussian_kl(z_mean, z_log_var)))
        means.append(np.asarray(z_mean))
        sigmas.append(np.exp(0.5 * np.asarray(z_log_var)))
        recon = np.asarray(model.decode(z_mean, labels))
        squared += float(((recon - np.asarray(images)) ** 2).sum())
        pixels += recon.size
        count += len(recon)
    rec, kl_dims = np.concatenate(rec), np.concatenate(kl_dims)
    means, sigmas = np.concatenate(means), np.concatenate(sigmas)
    kl = kl_dims.sum(axis=1)
    activity = means.var(axis=0)
    return {
        "elbo": float(-(rec + kl).mean()),
        "negative_elbo": float((rec + kl).mean()),
        "reconstruction_loss": float(rec.mean()),
        "kl_loss": float(kl.mean()),
        "kl_per_dimension": [round(float(v), 4) for v in kl_dims.mean(axis=0)],
        "active_units": int((activity > 0.01).sum()),
        "latent_dim": int(model.latent_dim),
        "posterior_sigma_mean": float(sigmas.mean()),
        "reconstruction_mse": squared / max(pixels, 1),
        "statistics_images": int(count),
    }


def vae_metrics(model, batches, view=None, iw_samples=64, iw_images=1000) -> dict:
    """The registry's `evaluate` for the VAE family (train.py writes these into metrics.json).

    A cheap importance-weighted NLL (k = 64 on the first 1000 test images) keeps training runs
    short; `genkeras vae-evaluate` computes the k = 5000 figure.
    """
    metrics = {f"test_{k}": v for k, v in posterior_statistics(model, batches).items()}
    metrics.update(
        {f"test_{k}": v for k, v in iwae_nll(model, batches, iw_samples, 64, iw_images).items()}
    )
    metrics["test_mse"] = metrics["test_reconstruction_mse"]
    return metrics


# Exact likelihoods of the autoregressive pixel models.


def log_probs(model, batches, targets=False) -> np.ndarray:
    """Exact log p(x) (nats) of every image in `batches`.

    Args:
        model: a pixel model.
        batches: model inputs (images, or (images, labels)), or `(inputs, targets)` pairs
            when `targets` is True.
    """
    import tensorflow as tf

    # Compiled once per call: eagerly, the recurrent models dispatch every op of every step
    # from Python (the Diagonal BiLSTM's 2N-1 column steps per layer) and run many times slower.
    score = tf.function(lambda images, labels: model.log_prob(images, labels)["log_prob"])
    values = []
    for batch in batches:
        if targets:
            batch = batch[0]
        images, labels = model.split_inputs(batch)
        values.append(np.asarray(score(images, labels)))
    return np.concatenate(values)


def likelihood_metrics(model, batches, view) -> dict:
    """Test negative log-likelihood: nats per image and bits per dimension.

    For Bernoulli models on dynamically binarized data the test images are one binarization
    drawn with the pipeline's seed.
    """
    values = log_probs(model, batches, targets=view.targets)
    dims = math.prod(model.image_shape)
    nll = float(-values.mean())
    return {
        "test_nll_nats": nll,
        "test_bits_per_dim": nll / (dims * math.log(2.0)),
        "test_images": int(len(values)),
    }
