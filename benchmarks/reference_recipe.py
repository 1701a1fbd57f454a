"""The reference that benchmarks/training_speed.py measures genkeras against.

It trains the way keras.io's VAE example (keras-team/keras-io, examples/generative/vae.py)
does: numpy arrays handed to `fit`, a `tf.GradientTape` `train_step`, a sigmoid decoder with
`binary_crossentropy` summed over pixels, Adam at its default settings, batch 128. The layers
are genkeras's own (same model size), so only the training recipe differs.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers, ops


class ReferenceVAE(keras.Model):
    """keras.io's VAE training step around a genkeras ConvVAE's encoder and decoder."""

    def __init__(self, encoder, decoder_logits, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        # keras.io's decoder ends in a sigmoid and its loss takes probabilities.
        self.decoder = keras.Sequential([decoder_logits, layers.Activation("sigmoid")])
        self.total_loss_tracker = keras.metrics.Mean(name="total_loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")
        self.seed_generator = keras.random.SeedGenerator(1337)

    @property
    def metrics(self):
        return [self.total_loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker]

    def train_step(self, data):
        with tf.GradientTape() as tape:
            z_mean, z_log_var = self.encoder(data)
            epsilon = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
            z = z_mean + ops.exp(0.5 * z_log_var) * epsilon
            reconstruction = self.decoder(z)
            reconstruction_loss = ops.mean(
                ops.sum(keras.losses.binary_crossentropy(data, reconstruction), axis=(1, 2))
            )
            kl_loss = -0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
            kl_loss = ops.mean(ops.sum(kl_loss, axis=1))
            total_loss = reconstruction_loss + kl_loss
        grads = tape.gradient(total_loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights, strict=True))
        self.total_loss_tracker.update_state(total_loss)
        self.reconstruction_loss_tracker.update_state(reconstruction_loss)
        self.kl_loss_tracker.update_state(kl_loss)
        return {metric.name: metric.result() for metric in self.metrics}


def reference_vae(architecture):
    """A `ReferenceVAE` over fresh copies of `architecture`'s encoder and decoder."""
    fresh = type(architecture).from_config(architecture.get_config())
    model = ReferenceVAE(fresh.encoder, fresh.decoder)
    model.compile(optimizer=keras.optimizers.Adam())
    return model


def reference_autoencoder(architecture):
    """keras.io's autoencoder recipe: compile with Adam and the model's loss, fit on arrays."""
    model = type(architecture).from_config(architecture.get_config())
    model.compile(optimizer=keras.optimizers.Adam(), loss="mse")
    return model
