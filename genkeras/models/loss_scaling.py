"""Loss scaling for models that compute their own loss (`compute_loss` overrides)."""

import keras


def per_replica(loss):
    """Divides a batch-mean loss by the number of replicas under a `tf.distribute` strategy.

    Each replica averages over its share of the global batch and the strategy sums the
    replicas' gradients, so the sum is the global-batch mean only after this division. Keras's
    built-in losses do the same (and `fit` undoes it for the logged `loss`); elsewhere (one
    device, JAX) it returns `loss` unchanged.
    """
    if keras.backend.backend() != "tensorflow":
        return loss
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss / replicas if replicas > 1 else loss
