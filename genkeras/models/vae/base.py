"""The VAE base class: Gaussian encoder, decoder, the ELBO, sampling and importance weights.

A VAE is an autoencoder with probability tricks (the lecture's words). The encoder maps an
image to the mean and log-variance of a Gaussian q(z | x); a code is drawn from it with the
reparameterization z = mean + exp(log_var / 2) * eps, eps ~ N(0, I); the decoder maps z back to
the parameters of p(x | z). Training minimizes

    loss = reconstruction_loss + beta * kl_loss
         = -E_q[log p(x | z)] + beta * KL(q(z | x) || N(0, I))

which, with beta = 1, is the negative evidence lower bound (ELBO) in nats per image. Without
the KL term (beta = 0) the lecture's warning applies: nothing stops the encoder from shrinking
sigma towards 0, the VAE becomes a plain autoencoder, and codes drawn from N(0, I) fall into the
voids between the training codes.

All the maths is in `keras.ops` and training goes through Keras's own train step (see
`VAE.compute_loss`), so the same model trains under TensorFlow (also distributed) and JAX.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

from genkeras.models.loss_scaling import per_replica
from genkeras.models.seeds import StatelessSeed
from genkeras.models.vae.densities import (
    bernoulli_log_likelihood,
    diagonal_normal_log_density,
    gaussian_kl,
    gaussian_log_likelihood,
    standard_normal_log_density,
)

LIKELIHOODS = ("bernoulli", "gaussian")


class VAE(keras.Model):
    """Base class: Gaussian encoder q(z | x[, y]), decoder p(x | z[, y]), own train/test steps.

    Subclasses implement `encoder_body(images)` (images -> features, functional API) and
    `decoder_body(vector)` (vector -> logits image). The base class wires the heads, the
    optional label conditioning, the losses and the sampling.

    Metrics tracked by name in `fit` / `evaluate`: `loss`, `reconstruction_loss`, `kl_loss`
    (nats per image; Keras adds `val_` for validation). `call(training=True)` returns the
    ELBO terms and `compute_loss` combines them, so Keras's standard train step trains it.

    `loss` in training is `reconstruction_loss + kl_weight * kl_loss`, where `kl_weight` is
    `beta` unless a `KLWarmup` callback ramps it up. The validation / test loss always uses
    `beta` itself, so EarlyStopping compares epochs on the same objective; with `beta = 1` it is
    the negative ELBO.

    Args:
        image_shape: (height, width, channels).
        latent_dim: size of z.
        beta: weight of the KL term (1 = the ELBO; 0 = no KL, the lecture's sigma collapse).
        likelihood: "bernoulli" (binary pixels, decoder outputs logits) or "gaussian"
            (pixels in [0, 1], decoder means through a sigmoid, one learned sigma).
        kl_warmup_epochs: epochs of linear KL warm-up; only read by `KLWarmup` (train.py adds
            it through the registry), kept here so the run's config records it.
        num_classes: > 0 makes the model conditional: encoder and decoder also see the label.
        log_prob_samples: importance samples k used by `log_prob` (and the exported signature).
        seed: seeds the training draws of eps.
    """

    def __init__(
        self,
        image_shape,
        latent_dim,
        beta=1.0,
        likelihood="bernoulli",
        kl_warmup_epochs=0,
        num_classes=0,
        log_prob_samples=128,
        seed=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if likelihood not in LIKELIHOODS:
            raise ValueError(
                f"Unknown likelihood '{likelihood}'. Use one of: {', '.join(LIKELIHOODS)}."
            )
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}.")
        self.image_shape = tuple(image_shape)
        self.latent_dim = int(latent_dim)
        self.beta = float(beta)
        self.likelihood = likelihood
        self.kl_warmup_epochs = int(kl_warmup_epochs)
        self.num_classes = int(num_classes)
        self.log_prob_samples = int(log_prob_samples)
        self.seed = int(seed)
        self.encoder = self._build_encoder()
        self.decoder = self._build_decoder()
        self.kl_weight = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(self.beta),
            trainable=False,
            name="kl_weight",
        )
        if likelihood == "gaussian":
            # sigma of p(x | z) is learned (one scalar): its optimum is the reconstruction RMSE.
            self.log_sigma = self.add_weight(
                shape=(), initializer=keras.initializers.Constant(-2.0), name="log_sigma"
            )
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_tracker = keras.metrics.Mean(name="kl_loss")
        self.built = True  # encoder and decoder are functional models, built above

    # -- networks ---------------------------------------------------------------------------

    def encoder_body(self, images):
        raise NotImplementedError

    def decoder_body(self, vector):
        raise NotImplementedError

    def _build_encoder(self):
        images = keras.Input(self.image_shape, name="images")
        inputs, features = [images], self.encoder_body(images)
        if self.num_classes:
            onehot = keras.Input((self.num_classes,), name="labels_onehot")
            inputs.append(onehot)
            features = layers.Concatenate()([features, onehot])
        z_mean = layers.Dense(self.latent_dim, name="z_mean", dtype="float32")(features)
        z_log_var = layers.Dense(self.latent_dim, name="z_log_var", dtype="float32")(features)
        return keras.Model(inputs, [z_mean, z_log_var], name="encoder")

    def _build_decoder(self):
        z = keras.Input((self.latent_dim,), name="z")
        inputs, vector = [z], z
        if self.num_classes:
            onehot = keras.Input((self.num_classes,), name="labels_onehot")
            inputs.append(onehot)
            vector = layers.Concatenate()([z, onehot])
        return keras.Model(inputs, self.decoder_body(vector), name="decoder")

    def _onehot(self, labels):
        return ops.one_hot(ops.cast(labels, "int32"), self.num_classes)

    def _check_labels(self, labels):
        if self.num_classes and labels is None:
            raise ValueError(f"{type(self).__name__} is conditional: pass `labels` (int [N]).")

    def posterior(self, images, labels=None, training=False):
        """q(z | x[, y]): `(z_mean, z_log_var)`, each [N, latent_dim]."""
        self._check_labels(labels)
        images = ops.convert_to_tensor(images, "float32")
        inputs = [images, self._onehot(labels)] if self.num_classes else [images]
        z_mean, z_log_var = self.encoder(inputs, training=training)
        return z_mean, z_log_var

    def decoder_logits(self, z, labels=None, training=False):
        """Decoder output before the sigmoid: [N, H, W, C]."""
        self._check_labels(labels)
        z = ops.convert_to_tensor(z, "float32")
        inputs = [z, self._onehot(labels)] if self.num_classes else [z]
        return self.decoder(inputs, training=training)

    @staticmethod
    def reparameterize(z_mean, z_log_var, eps):
        """z = mean + sigma * eps, sigma = exp(log_var / 2)."""
        return z_mean + ops.exp(0.5 * z_log_var) * eps

    def log_likelihood(self, images, logits):
        """log p(x | z) per image [N] from the decoder's logits."""
        images = ops.cast(images, "float32")  # mixed precision hands layers half floats
        if self.likelihood == "bernoulli":
            return bernoulli_log_likelihood(images, logits)
        return gaussian_log_likelihood(images, ops.sigmoid(logits), self.log_sigma)

    # -- the public API (also what the SavedModel signatures call) -----------------------------

    def call(self, inputs, training=False):
        """The reconstruction of the posterior mean, images in [0, 1].

        Under `fit` (`training=True`) it returns what the loss needs instead: the one-sample
        ELBO terms per image, `{"reconstruction_loss": [N], "kl_loss": [N]}`, so the training
        step runs the networks once and every backend differentiates the same code.
        """
        images, labels = self._unpack(inputs)
        if training:
            reconstruction, kl, _, _ = self.elbo_terms(images, labels, training=True)
            return {"reconstruction_loss": reconstruction, "kl_loss": kl}
        z_mean, _ = self.posterior(images, labels)
        return ops.sigmoid(self.decoder_logits(z_mean, labels))

    def encode(self, images, labels=None, seed=0):
        """Images -> dict of `z_mean`, `z_log_var` and `z`, one posterior draw keyed by `seed`."""
        z_mean, z_log_var = self.posterior(images, labels)
        eps = keras.random.normal(ops.shape(z_mean), seed=StatelessSeed(seed))
        return {
            "z_mean": z_mean,
            "z_log_var": z_log_var,
            "z": self.reparameterize(z_mean, z_log_var, eps),
        }

    def decode(self, z, labels=None):
        """Codes [N, latent_dim] -> images [N, H, W, C]: Bernoulli / Gaussian means in [0, 1]."""
        return ops.sigmoid(self.decoder_logits(z, labels))

    def reconstruct(self, images, labels=None):
        """Decodes the posterior mean (deterministic)."""
        z_mean, _ = self.posterior(images, labels)
        return self.decode(z_mean, labels)

    def sample(self, num, seed=0, labels=None):
        """`num` images decoded from z ~ N(0, I) drawn statelessly from `seed`.

        The same seed gives the same images; `labels` (int [num]) is required by a conditional
        model.

        Example:
        >>> model = DenseVAE((28, 28, 1), latent_dim=2)
        >>> model.sample(4, seed=1).shape
        TensorShape([4, 28, 28, 1])
        """
        z = keras.random.normal(ops.stack([num, self.latent_dim]), seed=StatelessSeed(seed))
        return self.decode(z, labels)

    def elbo_terms(self, images, labels=None, eps=None, training=False):
        """One-sample `(reconstruction_loss, kl_loss, z_mean, z_log_var)`; losses per image [N]."""
        z_mean, z_log_var = self.posterior(images, labels, training=training)
        if eps is None:
            eps = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        z = self.reparameterize(z_mean, z_log_var, eps)
        reconstruction = -self.log_likelihood(
            images, self.decoder_logits(z, labels, training=training)
        )
        kl = ops.sum(gaussian_kl(z_mean, z_log_var), axis=-1)
        return reconstruction, kl, z_mean, z_log_var

    def importance_log_weights(self, images, labels=None, num_samples=64, seed=0):
        """log w_i = log p(x, z_i) - log q(z_i | x), z_i ~ q, i = 1..k: [k, N].

        logsumexp over the k rows minus log k is the importance-weighted bound of Burda et
        al. (IWAE); k = 1 is the ELBO and the bound tightens towards log p(x) as k grows.
        """
        images = ops.convert_to_tensor(images, "float32")
        z_mean, z_log_var = self.posterior(images, labels)
        n = ops.shape(z_mean)[0]
        eps = keras.random.normal(
            ops.stack([num_samples, n, self.latent_dim]), seed=StatelessSeed(seed)
        )
        z = self.reparameterize(z_mean[None], z_log_var[None], eps)  # [k, N, D]
        flat_z = ops.reshape(z, (-1, self.latent_dim))
        flat_labels = (
            ops.reshape(ops.repeat(labels[None], num_samples, axis=0), (-1,))
            if self.num_classes
            else None
        )
        logits = self.decoder_logits(flat_z, flat_labels)
        logits = ops.reshape(logits, (num_samples, n, *self.image_shape))
        log_px = self.log_likelihood(images[None], logits)  # [k, N]: images broadcast
        return (
            log_px
            + standard_normal_log_density(z)
            - diagonal_normal_log_density(z, z_mean[None], z_log_var[None])
        )

    def log_prob(self, images, labels=None, num_samples=None, seed=0, chunk=32):
        """Importance-weighted estimate of log p(x) (log p(x | y) if conditional) in nats: [N].

        Uses k = `num_samples` (default `log_prob_samples`) posterior draws, `chunk` at a time,
        keyed statelessly by `seed`. With the Gaussian likelihood it is a log density.
        """
        k = int(num_samples or self.log_prob_samples)
        parts = []
        for index, start in enumerate(range(0, k, chunk)):
            size = min(chunk, k - start)
            parts.append(
                self.importance_log_weights(images, labels, size, seed=seed * 100_003 + index)
            )
        log_w = ops.concatenate(parts, axis=0)
        return ops.logsumexp(log_w, axis=0) - math.log(k)

    # -- training -----------------------------------------------------------------------------

    def initialize_output_bias(self, inputs):
        """Starts the decoder at the data's mean image instead of uniform grey.

        Sets the bias of the decoder's `logits` layer to logit(mean pixel): one value per pixel
        where the layer has one per pixel (DenseVAE), one per channel otherwise (ConvVAE). The
        first steps then learn strokes rather than the background, which saves conv_vae about
        a fifth of its steps to 100 nats. train.py calls it on new runs.

        Args:
            inputs: model inputs (images in [0, 1], or `(images, labels)`), e.g. the first
                few thousand training images, before binarization.
        """
        images, _ = self._unpack(inputs)
        mean = ops.mean(ops.cast(images, "float32"), axis=0)
        bias = self.decoder.get_layer("logits").bias
        if bias.shape[0] != int(np.prod(self.image_shape)):
            mean = ops.mean(ops.reshape(mean, (-1, self.image_shape[-1])), axis=0)
        mean = ops.clip(ops.reshape(mean, bias.shape), 1e-3, 1.0 - 1e-3)
        bias.assign(ops.cast(ops.log(mean) - ops.log1p(-mean), bias.dtype))

    def _unpack(self, data):
        """Batches are `images`, or `(images, labels)` for a conditional model."""
        if isinstance(data, dict):
            return data["images"], data.get("labels")
        if isinstance(data, (tuple, list)):
            if self.num_classes:
                return data[0], data[1]
            return data[0], None
        return data, None

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """`reconstruction_loss + weight * kl_loss`, batch means, tracked by name.

        Keras's own `train_step` / `test_step` call this on every backend (TensorFlow, JAX),
        under distribution strategies and mixed precision. Training uses `kl_weight` (the
        warm-up's ramp) and the terms `call` returned; evaluation uses `beta` and a fresh
        one-sample ELBO, so validation losses compare across epochs.
        """
        if training:
            reconstruction, kl = y_pred["reconstruction_loss"], y_pred["kl_loss"]
            weight = self.kl_weight
        else:
            images, labels = self._unpack(x)
            reconstruction, kl, _, _ = self.elbo_terms(images, labels)
            weight = self.beta
        reconstruction = ops.mean(ops.cast(reconstruction, "float32"))
        kl = ops.mean(ops.cast(kl, "float32"))
        self.reconstruction_tracker.update_state(reconstruction)
        self.kl_tracker.update_state(kl)
        return per_replica(reconstruction + ops.cast(weight, "float32") * kl)

    def get_config(self):
        return {
            **super().get_config(),
            "image_shape": self.image_shape,
            "latent_dim": self.latent_dim,
            "beta": self.beta,
            "likelihood": self.likelihood,
            "kl_warmup_epochs": self.kl_warmup_epochs,
            "num_classes": self.num_classes,
            "log_prob_samples": self.log_prob_samples,
            "seed": self.seed,
        }
