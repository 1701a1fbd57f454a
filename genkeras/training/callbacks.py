"""Training callbacks that every model can use (train.py adds them from its flags).

* `EpochSeconds`: wall time of each epoch into the logs (and so into training_log.csv).
* `TimeBudget`: a fixed wall-clock budget with a cosine learning-rate schedule over it.
* `LearningRateWarmup`: the learning rate ramps up linearly over the first optimizer steps.
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


class LearningRateWarmup(keras.callbacks.Callback):
    """Ramps the learning rate linearly from `rate / steps` to `rate` over the first `steps`
    optimizer steps, then leaves it to the other callbacks (plateau halving, `TimeBudget`).

    Why: Adam's first updates are as large as its learning rate whatever the gradient's size,
    and a VAE pushed that hard at the start spends hundreds of steps recovering
    (docs/benchmarks.md, "Time to quality"). The ramp follows `optimizer.iterations`,
    so a resumed run does not warm up again; with several steps per execution it moves once
    per execution. List it after `TimeBudget`, whose cosine it overrides while it ramps.

    Args:
        steps: optimizer steps to ramp over (> 0).

    Example:
    >>> callback = LearningRateWarmup(steps=300)   # model.fit(..., callbacks=[callback])
    """

    def __init__(self, steps: int):
        super().__init__()
        if steps <= 0:
            raise ValueError(f"LearningRateWarmup needs steps > 0, got {steps}.")
        self.steps = int(steps)

    def on_train_begin(self, logs=None):
        self.rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.ramping = False
        self.finished = False

    def on_train_batch_begin(self, batch, logs=None):
        if self.finished:
            return
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        if step < self.steps:
            self.model.optimizer.learning_rate = self.rate * (step + 1) / self.steps
            self.ramping = True
            return
        if self.ramping:  # only undo our own ramp, not a rate a resumed run restored
            self.model.optimizer.learning_rate = self.rate
        self.finished = True
