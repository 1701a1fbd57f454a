"""What an epoch boundary costs: conv_vae epochs with a new data iterator per epoch vs one.

    GENKERAS_MANUAL_DIR=../shared/data python benchmarks/epoch_boundaries.py --epochs 6

Trains train.py's conv_vae for `--epochs` epochs twice: on the plain training dataset (Keras
starts a new iterator every epoch) and on the repeated one with `steps_per_epoch` (what
train.py does, `training.endless`). Prints, per epoch, the seconds from `on_epoch_begin` to the
first batch (where a new iterator is made) and the epoch's training seconds. Every 96 steps it
evaluates the negative ELBO of 2,000 validation digits, as the time-to-quality benchmark does;
evaluation time is left out of the epoch's seconds.
"""

from __future__ import annotations

import argparse
import json
import time

import keras
from training_speed import negative_elbo, validation_digits

from genkeras import training


class EpochClock(keras.callbacks.Callback):
    def __init__(self, evaluate, every=96):
        super().__init__()
        self.evaluate, self.every, self.epochs = evaluate, every, []

    def on_epoch_begin(self, epoch, logs=None):
        self.begin, self.evaluating = time.perf_counter(), 0.0

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.to_first_batch = time.perf_counter() - self.begin

    def on_train_batch_end(self, batch, logs=None):
        if batch % self.every == self.every - 1:
            started = time.perf_counter()
            self.evaluate()
            self.evaluating += time.perf_counter() - started

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.begin - self.evaluating
        self.epochs.append((round(self.to_first_batch, 2), round(seconds, 1)))


def run(repeated: bool, epochs: int):
    config = training.TrainConfig(model="conv_vae")
    resolved = training.resolve(config)
    keras.utils.set_random_seed(0)
    model = training.build_model(resolved)
    digits = validation_digits()
    clock = EpochClock(lambda: negative_elbo(model.encoder, model.decoder, digits))
    batches = training.batches(config, resolved.view, "train", shuffle=True)
    steps = None
    if repeated:
        batches, steps = training.endless(batches)
    model.fit(batches, steps_per_epoch=steps, epochs=epochs, callbacks=[clock], verbose=0)
    return clock.epochs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    for name, repeated in (("new iterator per epoch", False), ("one iterator (train.py)", True)):
        epochs = run(repeated, args.epochs)
        print(json.dumps({name: {"(seconds to first batch, epoch seconds)": epochs}}), flush=True)


if __name__ == "__main__":
    main()
