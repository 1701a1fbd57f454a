"""How a training run uses its hardware: XLA, mixed precision, steps per execution, devices.

train.py's speed and scale flags end up here:

* `--jit-compile auto|on|off`: XLA for the training step only (exported graphs never use it).
  `auto` is Keras's rule: on where a GPU is visible, off on CPU-only machines, where XLA makes
  these training steps slower (docs/benchmarks.md). The JAX backend always compiles with XLA.
* `--mixed-precision`: the `mixed_float16` policy (GPUs; `mixed_bfloat16` where no GPU is
  visible). Models keep their output layers and losses in float32.
* `--steps-per-execution N` (default 8): N training steps per call into the compiled
  function, so Python and the callbacks run once per N steps.
* `--strategy mirrored|multi-worker`: `tf.distribute.MirroredStrategy` over every local GPU
  (or, without GPUs, every logical CPU device), or `MultiWorkerMirroredStrategy` configured by
  the `TF_CONFIG` environment variable. `--batch-size` is the global batch.
"""

from __future__ import annotations

import contextlib
import json
import os

import keras

from genkeras.training.config import JIT_COMPILE, STRATEGIES


class ScaleError(ValueError):
    """A speed or scale setting that cannot work here; the message says what to change."""


def jit_compile(setting: str):
    """`--jit-compile` value -> the `jit_compile` argument of `Model.compile`."""
    if setting not in JIT_COMPILE:
        raise ScaleError(f"--jit-compile must be one of {', '.join(JIT_COMPILE)}, got {setting!r}.")
    return JIT_COMPILE[setting]


def mixed_precision_policy() -> str:
    """float16 compute where a GPU is visible, bfloat16 on CPUs (float16 is emulated there)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        has_gpu = bool(tf.config.list_physical_devices("GPU"))
    elif keras.backend.backend() == "jax":
        import jax

        has_gpu = jax.default_backend() == "gpu"
    else:
        has_gpu = False
    return "mixed_float16" if has_gpu else "mixed_bfloat16"


def logical_cpus(count: int) -> None:
    """Splits the CPU into `count` logical devices (to run a multi-device strategy without GPUs).

    Must run before TensorFlow initializes its devices, i.e. before any other TF work.
    """
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    )


def make_strategy(name: str):
    """`--strategy` value -> a `tf.distribute.Strategy`, or None for the default (one device)."""
    if name not in STRATEGIES:
        raise ScaleError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {name!r}.")
    if name == "none":
        return None
    if keras.backend.backend() != "tensorflow":
        raise ScaleError(
            f"--strategy {name} uses tf.distribute and needs KERAS_BACKEND=tensorflow "
            f"(this run uses {keras.backend.backend()})."
        )
    import tensorflow as tf

    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if "TF_CONFIG" not in os.environ:
        raise ScaleError(
            "--strategy multi-worker reads the cluster from TF_CONFIG, which is not set. "
            'Set it on every worker, e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", '
            '"host2:12345"]}, "task": {"type": "worker", "index": 0}}\' (see the README).'
        )
    return tf.distribute.MultiWorkerMirroredStrategy()


def steps_per_execution(requested: int, strategy) -> int:
    """`--steps-per-execution` as compiled: 1 under a tf.distribute strategy, where Keras 3.15's
    multi-step loop fails ("You must feed a value for placeholder tensor ..." from
    `multi_step_on_iterator`)."""
    if strategy is not None and requested > 1:
        print(f"--strategy: 1 step per execution (not {requested}); see training/scale.py")
        return 1
    return requested


def worker_index() -> int:
    """This process's index in TF_CONFIG's cluster (0, the chief, when there is no cluster)."""
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = tf_config.get("task", {})
    if task.get("type") == "chief":
        return 0
    return int(task.get("index", 0)) + (1 if "chief" in tf_config.get("cluster", {}) else 0)


def scope(strategy):
    """`strategy.scope()`, or a no-op context without a strategy."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def shard_by_data(ds):
    """Multi-worker input: every worker reads the same pipeline and keeps its share of each
    global batch (sharding by file would need at least one file per worker)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def work_around_multi_worker_fit(model, example_batch) -> None:
    """Makes Keras 3's `fit` run under MultiWorkerMirroredStrategy (upstream bug
    tensorflow/tensorflow#72388, where the advice is to go back to Keras 2). Two steps fail:

    * before training, `fit` all-reduces one distributed batch only to learn its shapes
      (`_maybe_symbolic_build` in keras/src/backend/tensorflow/trainer.py), and the
      multi-worker strategy cannot reduce a nested `(inputs, targets)` batch: build from an
      undistributed batch of the same pipeline instead;
    * after every step, `fit` averages each logged metric across workers with
      `strategy.reduce("MEAN", value, axis=0)`, which needs a batch axis that scalar metrics
      lack: average them across workers as they are (`axis=None`), as Keras 2 did.

    Weights, gradients and their all-reduce are Keras's and TensorFlow's own, untouched; only
    the logged numbers and the shape probe go another way.
    """
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as tensorflow_trainer

    def build(iterator=None, data_batch=None):
        with model.distribute_strategy.scope():
            model._symbolic_build(data_batch=example_batch)

    keras_reduce = tensorflow_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and isinstance(
            strategy, tf.distribute.MultiWorkerMirroredStrategy
        ):
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return keras_reduce(values, strategy, reduction)

    model._maybe_symbolic_build = build
    if not getattr(keras_reduce, "genkeras", False):  # once per process
        reduce_per_replica.genkeras = True
        tensorflow_trainer.reduce_per_replica = reduce_per_replica
