"""Callbacks train.py adds: the learning-rate warm-up, the wall-clock budget, the weight average."""

from __future__ import annotations

import csv

import keras
import numpy as np
import pytest

from genkeras import data
from genkeras.training import TrainConfig, train
from genkeras.training.callbacks import LearningRateWarmup, TimeBudget


class RecordRate(keras.callbacks.Callback):
    """The learning rate each training step runs with (listed after the callbacks that set it)."""

    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_begin(self, batch, logs=None):
        self.rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


def tiny_model(rate=0.01):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(rate), loss="mse")
    return model


def tiny_data(batches):
    rng = np.random.default_rng(0)
    return rng.normal(size=(batches * 4, 3)), rng.normal(size=(batches * 4, 1))


def test_warmup_ramps_linearly_then_holds_the_rate():
    model, record = tiny_model(0.01), RecordRate()
    x, y = tiny_data(batches=6)
    model.fit(x, y, batch_size=4, epochs=2, callbacks=[LearningRateWarmup(4), record], verbose=0)
    expected = [0.0025, 0.005, 0.0075, 0.01] + [0.01] * 8
    np.testing.assert_allclose(record.rates, expected, rtol=1e-6)


def test_warmup_does_not_restart_when_training_continues():
    model = tiny_model(0.01)
    x, y = tiny_data(batches=4)
    model.fit(x, y, batch_size=4, epochs=1, callbacks=[LearningRateWarmup(4)], verbose=0)
    model.optimizer.learning_rate = 0.005  # as a plateau callback would have left it
    record = RecordRate()
    model.fit(x, y, batch_size=4, epochs=1, callbacks=[LearningRateWarmup(4), record], verbose=0)
    np.testing.assert_allclose(record.rates, [0.005] * 4, rtol=1e-6)


def test_time_budget_stops_training_and_anneals_the_rate():
    model = tiny_model(0.01)
    x, y = tiny_data(batches=8)
    history = model.fit(
        x, y, batch_size=4, epochs=100_000, callbacks=[TimeBudget(minutes=0.02)], verbose=0
    )
    assert len(history.epoch) < 100_000
    final = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    assert final < 0.01 * 0.2


@pytest.mark.parametrize("callback", [LearningRateWarmup, TimeBudget])
def test_callbacks_refuse_an_empty_schedule(callback):
    with pytest.raises(ValueError, match="> 0"):
        callback(0)


def test_train_py_validates_and_keeps_the_averaged_weights(tmp_path):
    """With --ema-momentum, validation and early stopping see the moving average of the
    weights, and the trained model ends with the best averaged weights, not the raw ones."""
    config = TrainConfig(
        model="dense_ae",
        limit=256,
        epochs=3,
        batch_size=64,
        latent_dim=4,
        ema_momentum=0.9,
        steps_per_execution=1,
        output_dir=str(tmp_path),
        export_dir=None,
        verbose=0,
    )
    result = train(config)
    model, optimizer = result.model, result.model.optimizer
    averages = optimizer._model_variables_moving_average  # Keras keeps them per variable
    for weight, average in zip(model.trainable_variables, averages, strict=True):
        np.testing.assert_array_equal(weight.numpy(), average.numpy())
    with open(tmp_path / "dense_ae" / "training_log.csv") as log:
        best = min(float(row["val_loss"]) for row in csv.DictReader(log))
    validation = data.pipeline(
        data.load_split("mnist", "validation", limit=256), data.View(), batch_size=64, shuffle=False
    )
    np.testing.assert_allclose(model.evaluate(validation, verbose=0), best, rtol=1e-5)
    assert result.metrics and (tmp_path / "dense_ae" / "metrics.json").exists()
