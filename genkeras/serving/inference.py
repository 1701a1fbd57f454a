"""TF Serving's Classify, Regress and MultiInference APIs: serialized `tf.Example`s in,
labelled scores or regression values out.

Follows tensorflow/serving `servables/tensorflow/classifier.cc`, `regressor.cc`,
`multi_inference.cc`, `multi_inference_helper.cc` and `util.cc`, message for message:

* The signature is `model_spec.signature_name` (`serving_default` when empty). One the
  version lacks is INVALID_ARGUMENT "No signature was found with the name: NAME" (Predict
  answers FAILED_PRECONDITION for the same thing; Classify and Regress do not).
* TF Serving checks a signature's method name only with `--enable_signature_method_name_check`
  (off by default, so that native TF 2 SavedModels work): with it, a signature whose method
  is not `tensorflow/serving/classify` (`.../regress`) is INVALID_ARGUMENT "Expected
  classification signature method_name to be tensorflow/serving/classify. Was: ...". Without
  it (`check_method_name=False`, the default here as there) the signature's shape decides: one
  input named `inputs`; for classification one or two outputs among `classes` (DT_STRING
  [N, C]) and `scores` (DT_FLOAT [N, C]); for regression one output `outputs` (DT_FLOAT [N] or
  [N, 1]). So a predict signature called through Classify fails with "Expected one or two
  output Tensors, found 4" or "No classification inputs found in SignatureDef: ...".
* The examples are `input.example_list` or `input.example_list_with_context` (each example's
  bytes follow the context's, so an example's feature overrides the context's); none is
  INVALID_ARGUMENT "Input is empty.". They reach the signature as one DT_STRING [N] tensor;
  parsing them is the signature's own work (a missing feature is TensorFlow's
  INVALID_ARGUMENT "Feature: images (data type: float) is required but could not be found.").
* MultiInference runs several classify / regress tasks on the same examples: every task
  names the same model (the first task's model spec picks the version), no signature twice,
  method names only `tensorflow/serving/classify` or `.../regress` (else UNIMPLEMENTED).
* Signatures run through `Servable.predict`: limits, batching and deadlines as for Predict.
"""

from __future__ import annotations

import numpy as np
from google.protobuf import text_format
from tensorflow_serving.apis import classification_pb2, inference_pb2, model_pb2, regression_pb2

from genkeras.serving import dtypes
from genkeras.serving.errors import ServingError, invalid_argument, unimplemented
from genkeras.serving.servable import DEFAULT_SIGNATURE

CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
# tensorflow/cc/saved_model/signature_constants.h
INPUTS, CLASSES, SCORES, OUTPUTS = "inputs", "classes", "scores", "outputs"
_KINDS = {CLASSIFY_METHOD: "classification", REGRESS_METHOD: "regression"}


def model_spec_parts(model_spec) -> tuple[str, int | None, str | None]:
    """`(name, version or None, label or None)` of a `ModelSpec`."""
    choice = model_spec.WhichOneof("version_choice")
    version = model_spec.version.value if choice == "version" else None
    label = model_spec.version_label if choice == "version_label" else None
    return model_spec.name, version, label


def _debug_string(signature) -> str:
    """A SignatureDef as C++ `DebugString()` writes it (text format), for messages."""
    return text_format.MessageToString(signature)


# -- signature checks (PreProcessClassification / PreProcessRegression) -------------------------
def _check_method(signature, method: str, check_method_name: bool) -> None:
    if check_method_name and signature.method_name != method:
        raise ServingError(
            invalid_argument(
                f"Expected {_KINDS[method]} signature method_name to be {method}. "
                f"Was: {signature.method_name}"
            )
        )


def classification_aliases(signature, check_method_name: bool = False) -> tuple[str, list[str]]:
    """The input alias and the output aliases (`classes` then `scores`) of a classification
    signature, after TF Serving's checks.

    Args:
        signature: the `SignatureDef`.
        check_method_name: also require the method name `tensorflow/serving/classify`.

    Returns:
        `(input alias, output aliases)`.

    Raises:
        ServingError: INVALID_ARGUMENT with TF Serving's message for a signature it refuses.
    """
    _check_method(signature, CLASSIFY_METHOD, check_method_name)
    if len(signature.inputs) != 1:
        raise ServingError(invalid_argument("Expected one input Tensor."))
    if len(signature.outputs) not in (1, 2):
        raise ServingError(
            invalid_argument(f"Expected one or two output Tensors, found {len(signature.outputs)}")
        )
    if INPUTS not in signature.inputs:
        raise ServingError(
            invalid_argument(
                f"No classification inputs found in SignatureDef: {_debug_string(signature)}"
            )
        )
    outputs = [alias for alias in (CLASSES, SCORES) if alias in signature.outputs]
    if not outputs:
        raise ServingError(
            invalid_argument(
                'Expected classification signature outputs to contain at least one of "classes" '
                f'or "scores". Signature was: {_debug_string(signature)}'
            )
        )
    return INPUTS, outputs


def regression_aliases(signature, check_method_name: bool = False) -> tuple[str, list[str]]:
    """The input alias and `[outputs]` of a regression signature, after TF Serving's checks.

    Args:
        signature: the `SignatureDef`.
        check_method_name: also require the method name `tensorflow/serving/regress`.

    Returns:
        `(input alias, [output alias])`.

    Raises:
        ServingError: INVALID_ARGUMENT with TF Serving's message for a signature it refuses.
    """
    _check_method(signature, REGRESS_METHOD, check_method_name)
    if len(signature.inputs) != 1:
        raise ServingError(invalid_argument("Expected one input Tensor."))
    if len(signature.outputs) != 1:
        raise ServingError(invalid_argument("Expected one output Tensor."))
    if INPUTS not in signature.inputs:
        raise ServingError(
            invalid_argument(
                f"No regression inputs found in SignatureDef: {_debug_string(signature)}"
            )
        )
    if OUTPUTS not in signature.outputs:
        raise ServingError(
            invalid_argument(
                f"No regression outputs found in SignatureDef: {_debug_string(signature)}"
            )
        )
    return INPUTS, [OUTPUTS]


_ALIASES = {CLASSIFY_METHOD: classification_aliases, REGRESS_METHOD: regression_aliases}


def find_signature(servable, signature_name: str, method: str, check_method_name: bool = False):
    """`(key, SignatureDef, input alias, output aliases)` for a Classify or Regress call
    (GetClassificationSignatureDef / GetRegressionSignatureDef, then the pre-processing).

    Raises:
        ServingError: INVALID_ARGUMENT for an unknown name or a signature of the wrong shape.
    """
    key = signature_name or DEFAULT_SIGNATURE
    if key not in servable.signature_defs:
        raise ServingError(invalid_argument(f"No signature was found with the name: {key}"))
    signature = servable.signature_defs[key]
    alias, outputs = _ALIASES[method](signature, check_method_name)
    return key, signature, alias, outputs


# -- inputs and running -------------------------------------------------------------------------
def serialized_examples(input_proto) -> np.ndarray:
    """The request's examples as the DT_STRING [N] tensor TF Serving feeds the signature.

    With `example_list_with_context` each element is the context's bytes followed by the
    example's: parsed together, the example's features win over the context's.

    Raises:
        ServingError: INVALID_ARGUMENT "Input is empty." when there is no example.
    """
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        examples = [e.SerializeToString() for e in input_proto.example_list.examples]
    elif kind == "example_list_with_context":
        listed = input_proto.example_list_with_context
        context = listed.context.SerializeToString()
        examples = [context + e.SerializeToString() for e in listed.examples]
    else:
        examples = []
    if not examples:
        raise ServingError(invalid_argument("Input is empty."))
    array = np.empty(len(examples), dtype=object)
    array[:] = examples
    return array


def _run(servable, key: str, alias: str, examples: np.ndarray, outputs: list[str], context):
    _, result = servable.predict(key, {alias: examples}, tuple(outputs), context)
    return result


def _shape_string(array: np.ndarray) -> str:
    """As `TensorShape::DebugString()`: `[2,10]`."""
    return "[" + ",".join(str(d) for d in array.shape) + "]"


def _check_class_tensor(name: str, array: np.ndarray, dtype: str, num_examples: int) -> None:
    if array.ndim != 2:
        raise ServingError(
            invalid_argument(
                "Expected Tensor shape: [batch_size num_classes] but got " + _shape_string(array)
            )
        )
    got = dtypes.name_of_array(array)
    if got != dtype:
        raise ServingError(invalid_argument(f"Expected {name} Tensor of {dtype}. Got: {got}"))
    if array.shape[0] != num_examples:
        raise ServingError(
            invalid_argument(
                f"Expected {name} output batch size of {num_examples}. Got: {array.shape[0]}"
            )
        )


def fill_classification_result(outputs: dict, num_examples: int, result) -> None:
    """PostProcessClassificationResult: checks `classes` / `scores` and fills `result`.

    Raises:
        ServingError: INVALID_ARGUMENT with TF Serving's message for outputs of the wrong
            type or shape.
    """
    classes, scores = outputs.get(CLASSES), outputs.get(SCORES)
    if classes is not None:
        _check_class_tensor("classes", classes, "DT_STRING", num_examples)
    if scores is not None:
        _check_class_tensor("scores", scores, "DT_FLOAT", num_examples)
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise ServingError(
            invalid_argument(
                "Tensors class and score should match in dim_size(1). Got "
                f"{classes.shape[1]} vs. {scores.shape[1]}"
            )
        )
    num_classes = (classes if classes is not None else scores).shape[1]
    for i in range(num_examples):
        classifications = result.classifications.add()
        for c in range(num_classes):
            item = classifications.classes.add()
            if classes is not None:
                label = classes[i, c]
                item.label = label.decode("utf-8", "replace") if isinstance(label, bytes) else label
            if scores is not None:
                item.score = float(scores[i, c])


def fill_regression_result(outputs: dict, num_examples: int, result) -> None:
    """PostProcessRegressionResult: checks `outputs` and fills `result`.

    Raises:
        ServingError: INVALID_ARGUMENT with TF Serving's message for an output of the wrong
            type or shape.
    """
    array = outputs[OUTPUTS]
    if not (array.ndim == 1 or (array.ndim == 2 and array.shape[1] == 1)):
        raise ServingError(
            invalid_argument(
                "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] "
                f"but got {_shape_string(array)}"
            )
        )
    if array.shape[0] != num_examples:
        raise ServingError(
            invalid_argument(
                "Input batch size did not match output batch size: "
                f"{num_examples} vs. {array.shape[0]}"
            )
        )
    got = dtypes.name_of_array(array)
    if got != "DT_FLOAT":
        raise ServingError(invalid_argument(f"Expected output Tensor of DT_FLOAT.  Got: {got}"))
    if array.size != num_examples:
        raise ServingError(
            invalid_argument(f"Expected output batch size to be {num_examples}.  Got: {array.size}")
        )
    for value in array.ravel().tolist():
        result.regressions.add(value=value)


def _fill_spec(model_spec, name: str, signature_name: str, version: int) -> None:
    """MakeModelSpec: the answer names the signature (`serving_default` for an empty name)."""
    model_spec.Clear()
    model_spec.name = name
    model_spec.signature_name = signature_name or DEFAULT_SIGNATURE
    model_spec.version.value = version


# -- the three calls ----------------------------------------------------------------------------
def _single(manager, request, method: str, context, check_method_name: bool):
    if not request.HasField("model_spec"):
        raise ServingError(invalid_argument("Missing ModelSpec"))
    servable = manager.get_servable(*model_spec_parts(request.model_spec))
    signature_name = request.model_spec.signature_name
    key, _, alias, outputs = find_signature(servable, signature_name, method, check_method_name)
    examples = serialized_examples(request.input)
    return servable, _run(servable, key, alias, examples, outputs, context), len(examples)


def classify(manager, request, context=None, check_method_name: bool = False):
    """Answers a `ClassificationRequest` as TF Serving's Classify does.

    Args:
        manager: the `ModelManager` that resolves the model spec.
        request: the `ClassificationRequest`.
        context: the request's `RequestContext` (deadline, cancellation), or `None`.
        check_method_name: TF Serving's `--enable_signature_method_name_check`.

    Returns:
        The `ClassificationResponse`.

    Raises:
        ServingError: with TF Serving's code and message.
    """
    servable, outputs, count = _single(
        manager, request, CLASSIFY_METHOD, context, check_method_name
    )
    response = classification_pb2.ClassificationResponse()
    fill_classification_result(outputs, count, response.result)
    spec = request.model_spec
    _fill_spec(response.model_spec, spec.name, spec.signature_name, servable.version)
    return response


def regress(manager, request, context=None, check_method_name: bool = False):
    """Answers a `RegressionRequest` as TF Serving's Regress does (arguments as `classify`).

    Returns:
        The `RegressionResponse`.
    """
    servable, outputs, count = _single(manager, request, REGRESS_METHOD, context, check_method_name)
    response = regression_pb2.RegressionResponse()
    fill_regression_result(outputs, count, response.result)
    spec = request.model_spec
    _fill_spec(response.model_spec, spec.name, spec.signature_name, servable.version)
    return response


def multi_inference(manager, request, context=None, check_method_name: bool = False):
    """Answers a `MultiInferenceRequest` as TF Serving's MultiInference does.

    The first task's model spec picks the servable; every task must name that model, no
    signature may come twice, and each task's method name must be
    `tensorflow/serving/classify` or `tensorflow/serving/regress`. All the tasks' signatures
    are checked before anything runs; then each runs once on the same examples.

    Args:
        manager: the `ModelManager`.
        request: the `MultiInferenceRequest`.
        context: the request's `RequestContext`, or `None`.
        check_method_name: TF Serving's `--enable_signature_method_name_check`.

    Returns:
        The `MultiInferenceResponse`, one result per task in order.

    Raises:
        ServingError: with TF Serving's code and message.
    """
    first = request.tasks[0].model_spec if request.tasks else model_pb2.ModelSpec()
    servable = manager.get_servable(*model_spec_parts(first))
    model_name, seen, plans = "", set(), []
    for task in request.tasks:
        name = task.model_spec.name
        if not name:
            raise ServingError(invalid_argument("Found ModelSpec with an empty model name."))
        if not model_name:
            model_name = name
        elif name != model_name:
            raise ServingError(
                invalid_argument(
                    "All ModelSpecs in a MultiInferenceRequest must access the same model name."
                )
            )
        key = task.model_spec.signature_name or DEFAULT_SIGNATURE
        if key in seen:
            raise ServingError(invalid_argument(f"Duplicate evaluation of signature: {key}"))
        seen.add(key)
        if key not in servable.signature_defs:
            raise ServingError(
                invalid_argument(f"Requested signature not found in model graph: {key}")
            )
        if task.method_name not in _ALIASES:
            raise ServingError(
                unimplemented(f"Unsupported signature method_name: {task.method_name}")
            )
        aliases = _ALIASES[task.method_name](servable.signature_defs[key], check_method_name)
        plans.append((task, key, *aliases))
    examples = serialized_examples(request.input)
    runs = [
        _run(servable, key, alias, examples, outputs, context) for _, key, alias, outputs in plans
    ]
    response = inference_pb2.MultiInferenceResponse()
    for (task, *_), values in zip(plans, runs, strict=True):
        result = response.results.add()
        if task.method_name == CLASSIFY_METHOD:
            fill_classification_result(values, len(examples), result.classification_result)
        else:
            fill_regression_result(values, len(examples), result.regression_result)
        spec = task.model_spec
        _fill_spec(result.model_spec, spec.name, spec.signature_name, servable.version)
    return response
