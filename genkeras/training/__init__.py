"""Training: one pipeline for every model.

`config.py` (the flags and the resolved run), `inputs.py` (batches), `fit.py` (build, compile,
fit), `finish.py` (metrics, pictures, export), `callbacks.py`, `scale.py` (XLA, precision,
strategies). `train(TrainConfig(model="conv_ae"))` does what `python train.py --model conv_ae`
does.

The names below load their module on first use, so `genkeras.training.config` (what the
command line needs) imports without Keras.
"""

import importlib

_EXPORTS = {
    "ConfigError": "config",
    "Run": "config",
    "TrainConfig": "config",
    "resolve": "config",
    "TrainResult": "finish",
    "TrainingError": "finish",
    "build_model": "fit",
    "train": "fit",
    "batches": "inputs",
    "endless": "inputs",
}


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'genkeras.training' has no attribute {name!r}")
    return getattr(importlib.import_module(f"genkeras.training.{_EXPORTS[name]}"), name)


__all__ = list(_EXPORTS)
