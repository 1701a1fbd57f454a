"""KL warm-up: the weight of the KL term ramps up over the first epochs."""

import keras


class KLWarmup(keras.callbacks.Callback):
    """Linear KL warm-up: kl_weight = beta * min(1, (epoch + 1) / epochs) during training.

    Epoch 0 trains with beta / epochs, epoch `epochs - 1` and later with beta. The weight is set
    back to beta when training ends. Validation losses always use beta (see `VAE`).

    Args:
        epochs: length of the ramp; 0 or less disables it.
    """

    def __init__(self, epochs):
        super().__init__()
        self.epochs = int(epochs)

    def on_epoch_begin(self, epoch, logs=None):
        factor = min(1.0, (epoch + 1) / self.epochs) if self.epochs > 0 else 1.0
        self.model.kl_weight.assign(self.model.beta * factor)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["kl_weight"] = float(keras.ops.convert_to_numpy(self.model.kl_weight))

    def on_train_end(self, logs=None):
        self.model.kl_weight.assign(self.model.beta)


def kl_warmup_callbacks(options: dict) -> list:
    """The registry's `extra_callbacks` hook: a `KLWarmup` when `kl_warmup_epochs` > 0."""
    epochs = int(options.get("kl_warmup_epochs", 0) or 0)
    return [KLWarmup(epochs)] if epochs > 0 else []
