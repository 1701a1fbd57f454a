"""Deepening a trained PixelCNN: more gated blocks, the same function to start with.

A PixelCNN of 7 gated blocks sees only the 11 rows above a pixel. Training a deeper one from
scratch takes hours; instead a deeper model can start from the trained one. Every layer the
trained model has is copied by name (the blocks, the first layer, the head), and each block it
lacks adds nothing at first: its horizontal output projection `h_out_i` starts at zero, so the
residual horizontal stack passes through it unchanged and the deeper model computes exactly the
trained model's logits. The new blocks' vertical layers keep their random start: they feed the
horizontal stack only through the zeroed projections. The first gradient step reaches the zeroed
projections, and through them the new blocks learn what the wider context adds.
"""

KEPT = ("name", "trainable", "dtype", "num_layers")  # the options a deepened model may change


def deepen(model, source):
    """Copy `source`'s weights into `model`, a model of the same class and options with more
    gated blocks, and start the blocks `source` lacks as identities.

    Args:
        model: a built PixelCNN with `num_layers` >= `source.num_layers`.
        source: a built, trained PixelCNN of the same options but `num_layers`.

    Raises:
        ValueError: another class, another option than `num_layers`, or a deeper `source`,
            naming the difference.

    Example:
    >>> deeper = PixelCNN((28, 28, 1), filters=32, num_layers=14, hidden=64)
    >>> deeper(images)                  # builds the weights
    >>> deepen(deeper, trained)         # the 7-block model: the same logits as `trained`
    """
    if type(source) is not type(model):
        raise ValueError(f"it holds a {type(source).__name__}, not a {type(model).__name__}")
    ours, theirs = model.get_config(), source.get_config()
    for key in sorted(set(ours) | set(theirs)):
        if key not in KEPT and ours.get(key) != theirs.get(key):
            raise ValueError(
                f"its {key} is {theirs.get(key)}, this run's {ours.get(key)}; a deeper model "
                f"may change only the number of blocks: pass the file's {key}"
            )
    if source.num_layers > model.num_layers:
        raise ValueError(
            f"it has {source.num_layers} gated blocks, more than this run's {model.num_layers}: "
            f"pass --num-layers {source.num_layers} or more"
        )
    layers = {layer.name: layer for layer in model.layers}
    for layer in source.layers:
        layers[layer.name].set_weights(layer.get_weights())
    for index in range(source.num_layers, model.num_layers):
        projection = layers[f"h_out_{index}"]
        projection.set_weights([0.0 * weight for weight in projection.get_weights()])
