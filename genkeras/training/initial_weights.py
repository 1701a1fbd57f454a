"""`--initial-weights`: start a run from the weights of a saved model instead of random ones.

To train a shipped model further (say `genkeras/pretrained/pixelcnn.keras` with a new cosine
`--time-budget`), a run builds its model exactly as a fresh run does and then takes every
weight from the file. The file must hold the same model trained with the same options: the
same class, the same weights in the same order and shapes. Anything else is refused before
training, naming the first difference and how to fix it.

A model that can grow (`grow_from`: a PixelCNN with more gated blocks, see
`genkeras.models.pixel.deepen`) also starts from a file of the same model with fewer layers.
"""

from __future__ import annotations

import numpy as np

from genkeras.training.config import ConfigError, Run
from genkeras.training.inputs import built_model

SAME_OPTIONS = (
    "train with the options the file was trained with (its run's metrics.json, 'hyperparameters')."
)


def load_initial_weights(run: Run) -> list[np.ndarray]:
    """The weights of `run.config.initial_weights`, checked against the model the run builds.

    Builds a throwaway copy of the run's model to compare with, so call it before seeding.

    Args:
        run: a resolved run whose `config.initial_weights` names a `.keras` file.

    Returns:
        The file's weights, in the order of `model.get_weights()` (those of the grown model
        where the run's model has more layers and can grow).

    Raises:
        ConfigError: the file does not load, or holds another model or other shapes.

    Example:
    >>> weights = load_initial_weights(run)      # before keras.utils.set_random_seed
    >>> model.set_weights(weights)               # a freshly built model of the same run
    """
    import keras

    import genkeras  # noqa: F401 - registers the model classes with Keras serialization

    path = run.config.initial_weights
    flag = f"--initial-weights {path}"
    try:
        source = keras.saving.load_model(path, compile=False)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same advice
        raise ConfigError(
            f"{flag}: cannot load it as a Keras model ({type(error).__name__}: {error}); "
            "pass a .keras file saved by train.py (runs/NAME/NAME.keras) or a shipped one "
            "(genkeras/pretrained/NAME.keras)."
        ) from None
    keras.utils.set_random_seed(run.config.seed)  # the layers a grown model adds start alike
    model = built_model(run)
    if type(source).__name__ != type(model).__name__:
        raise ConfigError(
            f"{flag} holds a {type(source).__name__}, but --model {run.spec.name} builds a "
            f"{type(model).__name__}: pass a file of the same model."
        )
    theirs, ours = source.weights, model.weights
    if len(theirs) != len(ours):
        if hasattr(model, "grow_from"):
            try:
                model.grow_from(source)
            except ValueError as error:
                raise ConfigError(f"{flag}: {error}.") from None
            return model.get_weights()
        raise ConfigError(
            f"{flag} has {len(theirs)} weights, this run's model {len(ours)}: {SAME_OPTIONS}"
        )
    for their, our in zip(theirs, ours, strict=True):
        if tuple(their.shape) != tuple(our.shape):
            raise ConfigError(
                f"{flag}: its weight {their.path} has shape {tuple(their.shape)}, this run's "
                f"{our.path} {tuple(our.shape)}: {SAME_OPTIONS}"
            )
    return source.get_weights()
