"""Reading REST `:predict` requests as TF Serving reads them (its `util/json_tensor.cc`).

* A request is a JSON object with an optional string `signature_name` and exactly one of
  `instances` (row format: a non-empty list; every element one instance; a list of objects
  when there are several inputs, each object holding exactly the signature's input names) or
  `inputs` (columnar format: a plain value/list when the signature has one input, else an
  object that must hold every input name; extra keys are ignored).
* Values: `NaN`, `Infinity`, `-Infinity` accepted; each tensor is read by `json_tensor`
  (types, shapes, the element limit); large all-numeric arrays by `json_fast`.

Errors raise `ServingError` with TF Serving's canonical code and message (see `errors.py`).
"""

from __future__ import annotations

import numpy as np

from genkeras.serving import dtypes
from genkeras.serving.errors import ServingError, clip, invalid_argument
from genkeras.serving.json_encode import COLUMNAR, ROW, json_value_to_string
from genkeras.serving.json_fast import NumericSpan, dense_shape
from genkeras.serving.json_parse import parse_json  # noqa: F401 - re-exported
from genkeras.serving.json_tensor import (  # noqa: F401 - json_to_array re-exported
    check_elements,
    json_to_array,
    shape_string,
)


def signature_name_of(doc: dict) -> str:
    """The request's `signature_name` (`""` when absent: the default signature)."""
    if "signature_name" in doc:
        name = doc["signature_name"]
        if not isinstance(name, str):
            raise ServingError(
                invalid_argument(
                    f"JSON Value: {json_value_to_string(doc)} not formatted correctly. "
                    "'signature_name' key must be a string value."
                )
            )
        return name
    return ""


def _is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _is_element_object(value) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


def fill_predict_inputs(
    doc: dict,
    input_dtypes: dict[str, str],
    allow_fast: bool = True,
    max_elements: int | None = None,
):
    """The request's tensors, from its `instances` (row format) or `inputs` (columnar).

    Args:
        doc: the parsed body (`parse_json`).
        input_dtypes: the signature's input names -> DataType enum names.
        allow_fast: see `json_to_array`.
        max_elements: the most values one input tensor may hold (`--max_tensor_elements`);
            checked on the JSON's shape before the tensor is built.

    Returns:
        `(inputs, format)`: input name -> array, and `ROW` or `COLUMNAR` (the response
        takes the same format).
    """
    if not input_dtypes:
        raise ServingError(invalid_argument("Failed to get input map for signature"))
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances and has_inputs:
        raise ServingError(
            invalid_argument(
                f"JSON Value: {json_value_to_string(doc)} Not formatted correctly expecting only "
                "one of 'inputs' or 'instances' keys to exist "
            )
        )
    if has_instances:
        instances = doc["instances"]
        if isinstance(instances, NumericSpan):
            fast = _span_instances(instances, input_dtypes, max_elements)
            if fast is not None:
                return fast, ROW
            instances = instances.to_python()
        if not isinstance(instances, list):
            raise ServingError(
                invalid_argument(
                    f"JSON Value: {json_value_to_string(doc)} Excepting 'instances' to be an list/array"  # noqa: E501
                )
            )
        if not instances:
            raise ServingError(
                invalid_argument(
                    f"JSON Value: {json_value_to_string(doc)} No values in 'instances' array"
                )
            )
        return _from_instances(instances, input_dtypes, allow_fast, max_elements), ROW
    if has_inputs:
        return _from_inputs(doc["inputs"], input_dtypes, allow_fast, max_elements), COLUMNAR
    raise ServingError(invalid_argument("Missing 'inputs' or 'instances' key"))


def _span_instances(span: NumericSpan, input_dtypes: dict[str, str], max_elements):
    """Row format from one all-numeric array: the tensor is the array (None: exact path)."""
    if len(input_dtypes) != 1 or span.shape() is None:
        return None
    (name,) = input_dtypes
    check_elements(name, span.shape(), max_elements)
    array = span.to_array(dtypes.BY_NAME[input_dtypes[name]])
    return None if array is None else {name: array}


def _from_instances(instances: list, input_dtypes: dict[str, str], allow_fast: bool, max_elements):
    if not isinstance(instances[0], dict) and len(input_dtypes) > 1:
        raise ServingError(
            invalid_argument(
                "instances is a plain list, but expecting list of objects as multiple "
                "input tensors required as per tensorinfo_map"
            )
        )
    objects = _is_element_object(instances[0])
    names = sorted(input_dtypes)
    per_name: dict[str, list[np.ndarray]] = {}
    shapes: dict[str, tuple] = {}

    def add(value, name, index):
        if name not in input_dtypes:
            raise ServingError(
                invalid_argument(f"JSON object: does not have named input: {clip(name)}")
            )
        if index == 0 and max_elements is not None:  # all instances share the first's shape
            first = value.first_shape() if isinstance(value, NumericSpan) else dense_shape(value)
            check_elements(name, [len(instances), *first], max_elements)
        array = json_to_array(value, input_dtypes[name], allow_fast, max_elements, name)
        if name in shapes:
            if int(np.prod(shapes[name])) != array.size:
                raise ServingError(
                    invalid_argument(
                        f"Expecting tensor size: {int(np.prod(shapes[name]))} but got: {array.size}"
                    )
                )
            if tuple(shapes[name]) != array.shape:
                raise ServingError(
                    invalid_argument(
                        f"Expecting shape {shape_string(shapes[name])} but got: {shape_string(array.shape)}"  # noqa: E501
                    )
                )
        else:
            shapes[name] = array.shape
        per_name.setdefault(name, []).append(array)

    for index, element in enumerate(instances):
        if objects:
            if not _is_element_object(element):
                raise ServingError(
                    invalid_argument(f"Expecting object but got list at item {index} of input list")
                )
            for name, value in element.items():
                try:
                    add(value, name, index)
                except ServingError as error:
                    raise ServingError(
                        invalid_argument(
                            f"Failed to process element: {index} key: {clip(name)} of "
                            "'instances' list. "
                            f"Error: {error.status_string()}"
                        )
                    ) from None
            if set(element) != set(input_dtypes):
                raise ServingError(
                    invalid_argument(
                        f"Failed to process element: {index} of 'instances' list. JSON object: "
                        f"{json_value_to_string(element)} must only have keys: {','.join(names)}"
                    )
                )
        else:
            if _is_element_object(element):
                raise ServingError(
                    invalid_argument(
                        f"Expecting value/list but got object at item {index} of input list"
                    )
                )
            try:
                add(element, names[0], index)
            except ServingError as error:
                raise ServingError(
                    invalid_argument(
                        f"Failed to process element: {index} of 'instances' list. "
                        f"Error: {error.status_string()}"
                    )
                ) from None
    return {name: np.stack(arrays) for name, arrays in per_name.items()}


def _from_inputs(value, input_dtypes: dict[str, str], allow_fast: bool, max_elements):
    if not isinstance(value, dict) or _is_b64(value):
        if len(input_dtypes) > 1:
            raise ServingError(
                invalid_argument(
                    "inputs is a plain value/list, but expecting an object as multiple "
                    "input tensors required as per tensorinfo_map"
                )
            )
        name = next(iter(input_dtypes))
        return {name: json_to_array(value, input_dtypes[name], allow_fast, max_elements, name)}
    tensors = {}
    for name in sorted(input_dtypes):
        if name not in value:
            raise ServingError(invalid_argument(f"Missing named input: {name} in 'inputs' object."))
        tensors[name] = json_to_array(
            value[name], input_dtypes[name], allow_fast, max_elements, name
        )
    return tensors
