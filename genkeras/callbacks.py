"""Training callbacks that every model can use (train.py adds them from its flags).

* `EpochSeconds`: wall time of each epoch into the logs (and so into training_log.csv).
* `TimeBudget`: a fixed wall-clock budget with a cosine learning-rate schedule over it.
"""

from __future__ import annotations

import math
import time

import keras


class EpochSeconds(keras.callbacks.Callback):
    """Adds `epoch_seconds` to each epoch's logs, so the CSV log keeps the wall time of every
    epoch, including those a killed run finished before it was resumed."""

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs["epoch_seconds"] = time.perf_counter() - self.started


class TimeBudget(keras.callbacks.Callback):
    """Stops `fit` after `minutes` (checked after every batch) and anneals the learning rate
    from its initial value to `floor` times it along a cosine over that time.

    A fixed wall-clock budget suits busy CPU machines where an epoch's duration is unknown in
    advance; the run then evaluates and exports as usual. A resumed run starts a new budget.

    Args:
        minutes: the budget (> 0).
        floor: the final learning rate as a fraction of the initial one.

    Example:
    >>> callback = TimeBudget(minutes=30)   # model.fit(..., callbacks=[callback])
    """

    def __init__(self, minutes: float, floor: float = 0.05):
        super().__init__()
        if minutes <= 0:
            raise ValueError(f"TimeBudget needs minutes > 0, got {minutes}.")
        self.seconds = minutes * 60.0
        self.floor = floor
        self.started = None
        self.base = None

    def on_train_begin(self, logs=None):
        self.started = time.monotonic()
        self.base = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_train_batch_begin(self, batch, logs=None):
        fraction = min((time.monotonic() - self.started) / self.seconds, 1.0)
        scale = self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * fraction))
        self.model.optimizer.learning_rate = self.base * scale

    def on_train_batch_end(self, batch, logs=None):
        if time.monotonic() - self.started > self.seconds:
            self.model.stop_training = True
