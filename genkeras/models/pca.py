"""PCA, the linear baseline: x~ = V V^T (x - mean) + mean, fit in closed form."""

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="genkeras")
class PCA(keras.Model):
    """Principal component analysis as a Keras model with `encode` and `decode`.

    The weights are not learned by gradient descent: `fit_closed_form` streams the training
    set once, accumulating the mean and the scatter matrix in float64, and keeps the top
    `latent_dim` eigenvectors of the covariance. Memory is O(d^2), never O(n d).

    Args:
        image_shape: (height, width, channels) of the images.
        latent_dim: number of principal components k.

    Example:
    >>> pca = PCA((28, 28, 1), latent_dim=16)
    >>> pca.fit_closed_form(train_batches)          # batches of images, or (images, targets)
    >>> z = pca.encode(images)                      # [N, 16]
    >>> images_again = pca.decode(z)                # [N, 28, 28, 1]
    """

    def __init__(self, image_shape, latent_dim, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        dim = int(np.prod(self.image_shape))
        self.mean = self.add_weight(shape=(dim,), initializer="zeros", trainable=False, name="mean")
        self.components = self.add_weight(
            shape=(dim, latent_dim), initializer="zeros", trainable=False, name="components"
        )
        self.explained_variance = self.add_weight(
            shape=(latent_dim,), initializer="zeros", trainable=False, name="explained_variance"
        )
        self.built = True  # every weight exists already; no input is needed to build

    def fit_closed_form(self, batches, progress=True):
        """Fits mean and components from an iterable of image batches (or (inputs, targets)).

        Returns:
            A dict with the number of examples seen and the fraction of variance kept.
        """
        dim = self.mean.shape[0]
        count, total, scatter = 0, np.zeros(dim), np.zeros((dim, dim))
        bar = (
            keras.utils.Progbar(None, unit_name="batch", stateful_metrics=["examples"])
            if progress
            else None
        )
        for step, batch in enumerate(batches, 1):
            images = batch[1] if isinstance(batch, tuple) else batch  # clean targets when given
            x = np.asarray(images, dtype=np.float64).reshape(-1, dim)
            count += len(x)
            total += x.sum(axis=0)
            scatter += x.T @ x
            if bar:
                bar.update(step, [("examples", count)])
        if bar:
            bar.update(step, finalize=True)
        mean = total / count
        covariance = scatter / count - np.outer(mean, mean)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending
        order = np.argsort(eigenvalues)[::-1][: self.latent_dim]
        components = eigenvectors[:, order]
        # eigh's signs are arbitrary; make the largest entry of each component positive.
        signs = np.sign(components[np.abs(components).argmax(axis=0), range(self.latent_dim)])
        self.mean.assign(mean.astype("float32"))
        self.components.assign((components * signs).astype("float32"))
        self.explained_variance.assign(eigenvalues[order].astype("float32"))
        kept = float(eigenvalues[order].sum() / max(eigenvalues.clip(min=0).sum(), 1e-12))
        return {"examples": count, "variance_kept": kept}

    def encode(self, images):
        x = ops.reshape(images, (ops.shape(images)[0], -1))
        return ops.matmul(x - self.mean, self.components)

    def decode(self, z):
        x = ops.matmul(z, ops.transpose(self.components)) + self.mean
        return ops.reshape(x, (-1, *self.image_shape))

    def call(self, images):
        return self.decode(self.encode(images))

    def reconstruct(self, images):
        return self(images)

    denoise = reconstruct

    def get_config(self):
        return {
            **super().get_config(),
            "image_shape": self.image_shape,
            "latent_dim": self.latent_dim,
        }
