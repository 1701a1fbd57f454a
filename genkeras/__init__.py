"""genkeras: classic generative models in Keras 3, exported for TensorFlow Serving.

Importing the package registers every model class with Keras serialization, so
`keras.saving.load_model("conv_ae.keras")` works after `import genkeras`. It does so without
importing Keras itself: the classes are registered when Keras is imported (at once when it
already is), so `genkeras --help` and `genkeras models` start in a fraction of a second.

The package, a folder per stage of the data path (docs/architecture.md):
`data` -> `models` -> `training` -> `evaluation`, `pictures` -> `export` -> `serving`;
`registry` names each model's parts, `commands` holds every command line.
"""

import contextlib
import importlib.abc
import importlib.util
import os
import sys

# TensorFlow's C++ start-up notices (oneDNN, CUDA probing) drown the progress bar;
# errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"


@contextlib.contextmanager
def _stderr_silenced():
    """Points file descriptor 2 at /dev/null (C++ code writes there directly), then back."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _ImportHooks(importlib.abc.MetaPathFinder):
    """Runs once for `keras` and once for `tensorflow`, the first time each is imported.

    * After `keras` loads, imports `genkeras.models`, which registers the model classes. When
      Keras loads inside TensorFlow's own import (TensorFlow imports it, and swallows import
      errors there), that waits until TensorFlow has finished loading.
    * While `tensorflow` loads and looks for GPUs, silences standard error: TensorFlow's C++
      start-up notices are written before its logging settings apply, and a machine without
      a GPU driver logs a CUDA error. `TF_CPP_MIN_LOG_LEVEL=0` keeps them.
    """

    def __init__(self):
        self.pending = {"keras", "tensorflow"}
        self.loading = set()  # of "keras" and "tensorflow": each imports the other

    def register_models(self):
        """Imports `genkeras.models` once neither Keras nor TensorFlow is half-loaded."""
        if not self.loading and "keras" in sys.modules:
            importlib.import_module("genkeras.models")

    def find_spec(self, name, path=None, target=None):
        if name not in self.pending:
            return None
        self.pending.discard(name)
        if not self.pending:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)  # the real one, from the other finders
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module
        if name == "keras":

            def exec_module(module):
                self.loading.add(name)
                try:
                    load(module)
                finally:
                    self.loading.discard(name)
                self.register_models()

        else:
            quiet = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") >= "2"

            def exec_module(module):
                self.loading.add(name)
                try:
                    with _stderr_silenced() if quiet else contextlib.nullcontext():
                        load(module)
                        if quiet:
                            module.config.list_physical_devices()  # probes CUDA, which logs too
                finally:
                    self.loading.discard(name)
                self.register_models()

        spec.loader.exec_module = exec_module
        return spec


if "keras" in sys.modules:
    from genkeras import models  # noqa: F401  (registers the Keras classes)
elif not any(isinstance(finder, _ImportHooks) for finder in sys.meta_path):
    hooks = _ImportHooks()
    hooks.pending -= set(sys.modules)
    sys.meta_path.insert(0, hooks)
