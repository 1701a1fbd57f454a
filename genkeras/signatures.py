"""The exported signatures: genkeras's public serving API, one builder per signature name.

Each builder turns a model method into a function with named inputs and a dict of named float32
outputs (TF Serving's REST API cannot write half floats, so mixed-precision outputs are cast),
and refuses in the graph what would make a server allocate without bound. The graphs hold no
`tf.py_function` and no XLA-compiled functions: TF Serving must run them as they are.
`genkeras.export` writes them into SavedModel versions.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import tensorflow as tf

SIGNATURES: dict[str, Callable] = {}


def signature(name: str):
    """Registers `builder(model) -> (fn, input_specs)` as the way to export signature `name`."""

    def register(builder):
        SIGNATURES[name] = builder
        return builder

    return register


def image_spec(model, name="images"):
    return tf.TensorSpec([None, *model.image_shape], tf.float32, name=name)


def latent_spec(model, name="z"):
    return tf.TensorSpec([None, model.latent_dim], tf.float32, name=name)


def float32_outputs(outputs, default_name):
    """A dict of float32 tensors: a bare tensor is named `default_name`."""
    if not isinstance(outputs, dict):
        outputs = {default_name: outputs}
    return {
        key: with_static_shape(tf.cast(value, tf.float32) if value.dtype.is_floating else value)
        for key, value in outputs.items()
    }


def with_static_shape(tensor):
    """`tensor`, or an empty batch of its static shape when it holds no examples.

    TensorFlow's CPU convolution answers an empty batch with the input's channels, not the
    filters' ([0, 28, 28, 16] where [0, 28, 28, 1] is due). (A reshape would not do: the graph
    optimizer drops a reshape to the shape it already infers.)
    """
    static = tensor.shape
    if static.rank is None or static.rank < 2 or not static[1:].is_fully_defined():
        return tensor
    return tf.cond(
        tf.shape(tensor)[0] > 0,
        lambda: tensor,
        lambda: tf.zeros([0, *static[1:].as_list()], tensor.dtype),
    )


def labels_spec(name="labels"):
    return tf.TensorSpec([None], tf.int32, name=name)


def conditional(model) -> bool:
    """Conditional models (cvae) take an int32 `labels` [N] input in every signature."""
    return bool(getattr(model, "num_classes", 0))


def endpoint(model, call, output_name, input_specs):
    """A signature function and its input specs: `call(*inputs)`, plus the int32 `labels` [N]
    input (passed as `labels=`, checked to lie in [0, num_classes)) when the model is
    conditional; outputs are float32, a bare tensor named `output_name`."""
    if conditional(model):

        def with_labels(*inputs):
            labels = checked_labels(inputs[-1], model.num_classes)
            return float32_outputs(call(*inputs[:-1], labels=labels), output_name)

        return with_labels, [*input_specs, labels_spec()]

    def without_labels(*inputs):
        return float32_outputs(call(*inputs), output_name)

    return without_labels, list(input_specs)


# A `sample` or `complete` answer must fit in gRPC's default message size, which TF Serving
# and genkeras serve keep: larger batches are refused inside the graph, so that a 40-byte
# request cannot make any server allocate without bound.
GRPC_DEFAULT_MESSAGE_BYTES = 4 * 1024 * 1024


def max_generated_images(model) -> int:
    """The most images one `sample` or `complete` call may return (float32, 64 KiB spare)."""
    return max(1, (GRPC_DEFAULT_MESSAGE_BYTES - 64 * 1024) // (4 * math.prod(model.image_shape)))


def checked_count(count, limit: int, what: str):
    """`count` (an int32 scalar tensor), once the graph has checked 0 <= count <= limit; out
    of range, the call fails with INVALID_ARGUMENT naming `what` and the limit."""
    checks = [
        tf.debugging.assert_non_negative(count, message=f"{what} must be >= 0"),
        tf.debugging.assert_less_equal(
            count,
            tf.constant(limit, count.dtype),
            message=f"{what} must be at most {limit} (one answer must fit in a 4 MiB gRPC "
            "message); ask in several requests",
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(count)


def checked_labels(labels, num_classes: int):
    """`labels` once the graph has checked each lies in [0, num_classes) (INVALID_ARGUMENT)."""
    checks = [
        tf.debugging.assert_non_negative(labels, message="labels must be >= 0"),
        tf.debugging.assert_less(
            labels,
            tf.constant(num_classes, labels.dtype),
            message=f"labels must be < {num_classes} (the model's number of classes)",
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(labels)


@signature("encode")
def _encode(model):
    """`images` [+ `labels`] -> `z` (autoencoders, PCA) or `z_mean`, `z_log_var`, `z` (VAEs)."""
    return endpoint(model, model.encode, "z", [image_spec(model)])


@signature("decode")
def _decode(model):
    """`z` [+ `labels`] -> `images`."""
    return endpoint(model, model.decode, "images", [latent_spec(model)])


@signature("reconstruct")
def _reconstruct(model):
    """`images` [+ `labels`] -> `images`."""
    return endpoint(model, model.reconstruct, "images", [image_spec(model)])


@signature("denoise")
def _denoise(model):
    """`images` -> `images` (autoencoders)."""
    return endpoint(model, model.denoise, "images", [image_spec(model)])


@signature("log_prob")
def _log_prob(model):
    """`images` [+ `labels`] -> `log_prob` float32 [N], nats per image, via `model.log_prob`.

    VAEs give an importance-weighted estimate with k fixed at export (`log_prob_samples`).
    """
    return endpoint(model, model.log_prob, "log_prob", [image_spec(model)])


@signature("sample")
def _sample(model):
    """`num`, `seed` (int32 scalars) [+ `temperature` float32 scalar for pixel models: 1 = the
    model's own distribution, < 1 sharper] [+ `labels` int32 [num]] -> `images`.

    Same seed, same images: models draw with `StatelessSeed(seed)`. `num` must lie in
    [0, `max_generated_images(model)`].
    """
    scalars = [tf.TensorSpec([], tf.int32, name="num"), tf.TensorSpec([], tf.int32, name="seed")]
    limit = max_generated_images(model)
    if getattr(model, "supports_temperature", False):

        def sample(num, seed, temperature, labels=None):
            num = checked_count(num, limit, "num")
            return model.sample(num, seed, temperature=temperature, labels=labels)

        scalars.append(tf.TensorSpec([], tf.float32, name="temperature"))
    else:

        def sample(num, seed, labels=None):
            return model.sample(checked_count(num, limit, "num"), seed, labels=labels)

    return endpoint(model, sample, "images", scalars)


@signature("complete")
def _complete(model):
    """`images`, `rows` (int32 scalar), `seed` (int32 scalar) [+ `labels`] -> `images`.

    Keeps the first `rows` rows of each image exactly as given and samples the rest pixel by
    pixel (temperature 1); the same seed gives the same completions. At most
    `max_generated_images(model)` images per call. Pixel models only.
    """
    specs = [
        image_spec(model),
        tf.TensorSpec([], tf.int32, name="rows"),
        tf.TensorSpec([], tf.int32, name="seed"),
    ]
    limit = max_generated_images(model)

    def complete(images, rows, seed, labels=None):
        with tf.control_dependencies([checked_count(tf.shape(images)[0], limit, "images")]):
            return model.complete(tf.identity(images), rows, seed, labels=labels)

    return endpoint(model, complete, "images", specs)


@signature("label_posterior")
def _label_posterior(model):
    """`images` -> `probabilities` [N, C] (p(y | x)), `label` int32 [N], `log_prob` [N] (log
    p(x), nats) and `outlier` bool [N]: Bayes' rule on a conditional model
    (`genkeras.models.bayes`), k fixed at export as for `log_prob`."""

    def label_posterior(images):
        return float32_outputs(model.label_posterior(images), "probabilities")

    return label_posterior, [image_spec(model)]


@signature("classify")
def _classify(model):
    """TF Serving's classification signature (method `tensorflow/serving/classify`, so its
    Classify RPC and `:classify` REST call work): `inputs`, serialized `tf.Example`s with a
    float feature `images` of H*W*C pixel values in [0, 1] -> `classes` (string [N, C], the
    class names "0", "1", ...) and `scores` (p(y | x), float32 [N, C])."""
    size = math.prod(model.image_shape)
    features = {"images": tf.io.FixedLenFeature([size], tf.float32)}
    names = tf.constant([str(label) for label in range(model.num_classes)])

    def classify(inputs):
        pixels = tf.io.parse_example(inputs, features)["images"]
        images = tf.reshape(pixels, [-1, *model.image_shape])
        scores = tf.cast(model.label_posterior(images)["probabilities"], tf.float32)
        return {"classes": tf.tile(names[None], [tf.shape(scores)[0], 1]), "scores": scores}

    return classify, [tf.TensorSpec([None], tf.string, name="inputs")]


# TF 2 writes every signature as a predict signature; these get TF Serving's method names.
METHOD_NAMES = {"classify": "tensorflow/serving/classify"}
