"""REST's `:classify` and `:regress` bodies: JSON examples in, JSON results out.

Behaviour follows tensorflow/serving `util/json_tensor.cc` (FillClassificationRequestFromJson,
FillRegressionRequestFromJson, MakeJsonFromClassificationResult, MakeJsonFromRegressionResult)
and `model_servers/http_rest_api_handler.cc`:

* The body is an object: optional string `signature_name`, optional object `context` (the
  features every example shares), and `examples`, a non-empty list of objects, one
  `tf.Example` each, `{"feature": value or [values]}`.
* A value's JSON type picks the feature's list: a number with a fraction or an exponent (or
  `NaN`, `Infinity`, or an integer beyond 64 bits) goes to `float_list` (as float32), an
  integer to `int64_list`, `true`/`false` to `int64_list` as 1/0, a string or `{"b64": ...}`
  to `bytes_list`. One feature holds one kind: `[0, 0.5]` is refused ("Unexpected element type
  in feature: images expecting type: int64"); send `0.0`. `null`, nested lists and other
  objects are refused.
* Answers: classify `{"results": [[[label, score], ...], ...]}` (one list per example),
  regress `{"results": [value, ...]}`. TF Serving's api_rest.md says `"result"`, but its code
  (json_tensor.cc `kClassifyRegressResponseKey`) and so every TF Serving server writes
  `"results"`; this server writes what TF Serving writes.

Errors raise `ServingError` with TF Serving's messages (INVALID_ARGUMENT).
"""

from __future__ import annotations

import base64
import binascii
import json

import numpy as np
from tensorflow.core.example import example_pb2, feature_pb2

from genkeras.serving import inference
from genkeras.serving.errors import ServingError, invalid_argument
from genkeras.serving.json_decode import signature_name_of
from genkeras.serving.json_encode import format_float, json_type_string, json_value_to_string
from genkeras.serving.json_fast import NumericSpan
from genkeras.serving.json_parse import parse_json

INT64_RANGE = (-(2**63), 2**63 - 1)
UINT64_MAX = 2**64 - 1


def _plain(value):
    """A value with large numeric arrays (json_fast's spans) read back as Python lists."""
    return value.to_python() if isinstance(value, NumericSpan) else value


def _unexpected(name: str, value) -> ServingError:
    return ServingError(
        invalid_argument(
            f"Feature: {name} has element with unexpected JSON type: {json_type_string(value)}"
        )
    )


def _is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _kind_and_value(name: str, value):
    """`(kind, value)` of one JSON element of a feature: kind `bytes`, `float` or `int64`."""
    if isinstance(value, bool):
        return "int64", int(value)
    if isinstance(value, float):
        return "float", value
    if isinstance(value, int):
        if INT64_RANGE[0] <= value <= INT64_RANGE[1]:
            return "int64", value
        if INT64_RANGE[1] < value <= UINT64_MAX:
            raise ServingError(
                invalid_argument(
                    f"Feature: {name} has uint64_t element. Only int64_t is supported."
                )
            )
        return "float", float(value)  # rapidjson reads integers beyond 64 bits as doubles
    if isinstance(value, str):
        return "bytes", value.encode("utf-8")
    if _is_b64(value):
        try:
            return "bytes", base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise ServingError(invalid_argument("Unable to base64 decode")) from None
    raise _unexpected(name, _plain(value))


def feature_from_json(name: str, content) -> feature_pb2.Feature:
    """One feature from its JSON value (a value, or a list of values of one kind).

    Raises:
        ServingError: INVALID_ARGUMENT for a value of no kind or of a second kind.
    """
    content = _plain(content)
    items = content if isinstance(content, list) else [content]
    kind, values = None, []
    for item in items:
        if isinstance(item, (list, NumericSpan)):
            raise _unexpected(name, [])
        item_kind, value = _kind_and_value(name, item)
        if kind is not None and item_kind != kind:
            raise ServingError(
                invalid_argument(
                    f"Unexpected element type in feature: {name} expecting type: {kind}"
                )
            )
        kind = item_kind
        values.append(value)
    feature = feature_pb2.Feature()
    if kind == "float":
        with np.errstate(over="ignore"):
            feature.float_list.value.extend(np.asarray(values, np.float32).tolist())
    elif kind == "int64":
        feature.int64_list.value.extend(values)
    elif kind == "bytes":
        feature.bytes_list.value.extend(values)
    return feature  # an empty list: a feature of no kind, as TF Serving stores it


def example_from_json(value, example: example_pb2.Example) -> None:
    """Fills `example` from one JSON object of features.

    Raises:
        ServingError: INVALID_ARGUMENT "Example must be JSON object but got JSON ..." for
            anything but an object, or a feature's error.
    """
    value = _plain(value)
    if not isinstance(value, dict):
        raise ServingError(
            invalid_argument(f"Example must be JSON object but got JSON {json_type_string(value)}")
        )
    for name, content in value.items():
        example.features.feature[name].CopyFrom(feature_from_json(name, content))


def fill_request_from_json(body: bytes, request) -> None:
    """Fills a `ClassificationRequest` or `RegressionRequest` (its signature name and input)
    from a REST body, as FillClassificationRequestFromJson does (its model name, version and
    label come from the URL and are set by the caller).

    Raises:
        ServingError: INVALID_ARGUMENT with TF Serving's message for a body it refuses.
    """
    doc = parse_json(body)
    request.model_spec.signature_name = signature_name_of(doc)
    has_context = "context" in doc
    if has_context:
        listed = request.input.example_list_with_context
        example_from_json(doc["context"], listed.context)
    examples = doc.get("examples")
    if "examples" not in doc:
        raise ServingError(
            invalid_argument(
                f"JSON Value: {json_value_to_string(doc)} When method is classify, key "
                "'examples' is expected and was not found"
            )
        )
    examples = _plain(examples)
    if not isinstance(examples, list):
        raise ServingError(
            invalid_argument(
                f"JSON Value: {json_value_to_string(doc)} Expecting 'examples' value to be an "
                "list/array"
            )
        )
    if not examples:
        raise ServingError(
            invalid_argument(
                f"JSON Value: {json_value_to_string(doc)} 'examples' value is an empty array"
            )
        )
    target = request.input.example_list_with_context if has_context else request.input.example_list
    for value in examples:
        example_from_json(value, target.examples.add())


def classification_json(result) -> str:
    """`{"results": [[[label, score], ...], ...]}` from a `ClassificationResult`.

    Raises:
        ServingError: INVALID_ARGUMENT when the result is empty (as TF Serving).
    """
    if not result.classifications:
        raise ServingError(invalid_argument("Cannot convert empty ClassificationResults to JSON"))
    rows = []
    for classifications in result.classifications:
        pairs = (
            f"[{json.dumps(c.label, ensure_ascii=False)}, {format_float(c.score)}]"
            for c in classifications.classes
        )
        rows.append("[" + ", ".join(pairs) + "]")
    return '{"results": [' + ", ".join(rows) + "]}"


def regression_json(result) -> str:
    """`{"results": [value, ...]}` from a `RegressionResult`.

    Raises:
        ServingError: INVALID_ARGUMENT when the result is empty (as TF Serving).
    """
    if not result.regressions:
        raise ServingError(invalid_argument("Cannot convert empty RegressionResults to JSON"))
    return '{"results": [' + ", ".join(format_float(r.value) for r in result.regressions) + "]}"


def handle_rest(
    manager,
    verb: str,
    name: str,
    version: int | None,
    label: str | None,
    body: bytes,
    context=None,
    check_method_name: bool = False,
) -> str:
    """Answers `POST /v1/models/NAME[/versions/N | /labels/L]:classify` or `:regress`.

    Args:
        manager: the `ModelManager`.
        verb: `"classify"` or `"regress"`.
        name: the model name from the URL.
        version: the version from the URL, or `None`.
        label: the version label from the URL, or `None`.
        body: the request body.
        context: the request's `RequestContext`, or `None`.
        check_method_name: TF Serving's `--enable_signature_method_name_check`.

    Returns:
        The JSON answer.

    Raises:
        ServingError: with TF Serving's code and message.
    """
    from tensorflow_serving.apis import classification_pb2, regression_pb2

    if verb == "classify":
        request = classification_pb2.ClassificationRequest()
    else:
        request = regression_pb2.RegressionRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    elif label is not None:
        request.model_spec.version_label = label
    fill_request_from_json(body, request)
    if context is not None:
        context.check()
    if verb == "classify":
        response = inference.classify(manager, request, context, check_method_name)
        return classification_json(response.result)
    response = inference.regress(manager, request, context, check_method_name)
    return regression_json(response.result)
