"""TensorFlow's process-wide settings from TF Serving's flags, set before any model loads.

* Thread pools, picked as TF Serving's `server.cc` picks the session's: giving
  `--tensorflow_session_parallelism`, `--tensorflow_intra_op_parallelism` and
  `--tensorflow_inter_op_parallelism` all at once is an error; else when intra or inter is
  given, both come from those two; else both from the session's. 0 lets TensorFlow pick.
* `--per_process_gpu_memory_fraction`: the share of each GPU's memory TensorFlow takes
  (`GPUOptions.per_process_gpu_memory_fraction` of the process's config, as TF Serving's
  session config carries it; 0 lets TensorFlow pick, 1 takes it all at start).

TensorFlow takes these only before its runtime starts (the first operation or device use),
so `configure` runs before the servers are built and the models load.
"""

from __future__ import annotations

import logging

log = logging.getLogger("genkeras.serving")


def thread_counts(session: int, intra: int, inter: int) -> tuple[int, int]:
    """`(intra_op, inter_op)` threads as TF Serving's server.cc sets them (0: TensorFlow picks).

    Raises:
        ValueError: when all three are given (TF Serving's INVALID_ARGUMENT), as one line.
    """
    if session > 0 and intra > 0 and inter > 0:
        raise ValueError(
            "give --tensorflow_session_parallelism or --tensorflow_intra_op_parallelism and "
            "--tensorflow_inter_op_parallelism, not all three (as TF Serving)"
        )
    if intra > 0 or inter > 0:
        return intra, inter
    return session, session


def configure(session: int, intra: int, inter: int, gpu_memory_fraction: float) -> None:
    """Sets the thread pools and the GPU memory share before TensorFlow's runtime starts.

    Raises:
        ValueError: the thread flags conflict, or TensorFlow has already started (one line).
    """
    intra, inter = thread_counts(session, intra, inter)
    if not (intra or inter or gpu_memory_fraction):
        return
    import tensorflow as tf

    try:
        if intra:
            tf.config.threading.set_intra_op_parallelism_threads(intra)
        if inter:
            tf.config.threading.set_inter_op_parallelism_threads(inter)
        if gpu_memory_fraction:
            _set_gpu_memory_fraction(gpu_memory_fraction)
    except RuntimeError as error:  # TensorFlow's runtime already started
        raise ValueError(f"cannot set TensorFlow's threads or GPU memory now: {error}") from None
    log.info(
        "TensorFlow threads: intra-op %d, inter-op %d (0: TensorFlow picks); "
        "GPU memory fraction %g (0: TensorFlow picks)",
        tf.config.threading.get_intra_op_parallelism_threads(),
        tf.config.threading.get_inter_op_parallelism_threads(),
        gpu_memory_fraction,
    )


def _set_gpu_memory_fraction(fraction: float) -> None:
    """Puts `fraction` in the eager context's ConfigProto, which its GPU devices are built from.

    tf.config has no setter for it (only absolute limits in MB per logical device), so the
    context's config is set as `tf.compat.v1.ConfigProto(gpu_options=...)` would set it.
    """
    from tensorflow.core.protobuf import config_pb2
    from tensorflow.python.eager import context

    ctx = context.context()
    if ctx._context_handle is not None:  # noqa: SLF001
        raise RuntimeError("the TensorFlow runtime is already initialized")
    config = config_pb2.ConfigProto()
    if ctx._config is not None:  # noqa: SLF001
        config.CopyFrom(ctx._config)  # noqa: SLF001
    config.gpu_options.per_process_gpu_memory_fraction = fraction
    ctx._config = config  # noqa: SLF001
