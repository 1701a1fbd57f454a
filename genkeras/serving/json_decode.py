"""Reading REST `:predict` requests as TF Serving reads them (its `util/json_tensor.cc`).

* A request is a JSON object with an optional string `signature_name` and exactly one of
  `instances` (row format: a non-empty list; every element one instance; a list of objects
  when there are several inputs, each object holding exactly the signature's input names) or
  `inputs` (columnar format: a plain value/list when the signature has one input, else an
  object that must hold every input name; extra keys are ignored).
* Values: `NaN`, `Infinity`, `-Infinity` accepted; int32 inputs take JSON integers only
  (`1.0` is refused); float inputs take any number that fits without loss (integers beyond
  2^24 - 1 are refused for float32). Strings may come as `{"b64": ...}` objects.

Errors raise `ServingError` with TF Serving's canonical code and message (see `errors.py`).
"""

from __future__ import annotations

import json
import math

import numpy as np

from genkeras.serving import dtypes
from genkeras.serving.errors import ServingError, invalid_argument, unimplemented
from genkeras.serving.json_encode import (
    COLUMNAR,
    ROW,
    json_type_string,
    json_value_to_string,
)


def _type_error(value, dtype: str) -> ServingError:
    return ServingError(
        invalid_argument(
            f"JSON Value: {json_value_to_string(value)} Type: {json_type_string(value)} "
            f"is not of expected type: {dtypes.type_string(dtype)}"
        )
    )


def _lossy_error(value, target: str) -> ServingError:
    return ServingError(
        invalid_argument(
            f"Cannot convert JSON value: {json_value_to_string(value)} to {target} without loss of precision."  # noqa: E501
        )
    )


def parse_json(body: bytes | str) -> dict:
    """The UTF-8 request body parsed (NaN / Infinity allowed); it must be a JSON object."""
    if isinstance(body, (bytes, bytearray)):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ServingError(
                invalid_argument(
                    f"JSON Parse error: Invalid encoding in string. at offset: {error.start}"
                )
            ) from None
    if not body.strip():
        raise ServingError(invalid_argument("JSON Parse error: The document is empty"))
    try:
        doc = json.loads(body)
    except json.JSONDecodeError as error:
        raise ServingError(
            invalid_argument(
                f"JSON Parse error: Invalid value. ({error.msg}) at offset: {error.pos}"
            )
        ) from None
    except RecursionError:
        raise ServingError(invalid_argument("JSON Parse error: nesting too deep")) from None
    if not isinstance(doc, dict):
        raise ServingError(
            invalid_argument(f"JSON Value: {json_value_to_string(doc)} Is not object")
        )
    return doc


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


def _dense_shape(value) -> list[int]:
    """Shape from the first element at each level, as TF Serving infers it."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _check_leaf(value, dtype: str):
    """Returns the value to store, or raises TF Serving's error for it."""
    if isinstance(value, dict):
        if dtype == "DT_STRING" and set(value) == {"b64"} and isinstance(value["b64"], str):
            import base64
            import binascii

            try:
                return base64.b64decode(value["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise ServingError(invalid_argument("Unable to base64 decode")) from None
        raise _type_error(value, dtype)
    entry = dtypes.BY_NAME.get(dtype)
    kind = entry.kind if entry else ""
    if kind == "f":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(value, dtype)
        if isinstance(value, int):
            low, high = entry.json_ints
            if not low <= value <= high:
                raise _lossy_error(value, entry.type_string)
            return float(value)
        if (
            dtype == "DT_FLOAT"
            and math.isfinite(value)
            and abs(value) > float(np.finfo(np.float32).max)
        ):
            raise _lossy_error(value, "float")
        return value
    if kind in ("i", "u"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(value, dtype)
        low, high = entry.json_ints
        if not low <= value <= high:
            raise _type_error(value, dtype)
        return value
    if kind == "b":
        if not isinstance(value, bool):
            raise _type_error(value, dtype)
        return value
    if kind == "O":
        if not isinstance(value, str):
            raise _type_error(value, dtype)
        return value.encode()
    raise ServingError(
        unimplemented(f"Conversion of JSON Value: {json_value_to_string(value)} to type: {dtype}")
    )


def _fill(value, level: int, shape: list[int], dtype: str, out: list):
    """Walks `value` in TF Serving's order, checking levels and sizes, collecting leaves."""
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise ServingError(
                invalid_argument(
                    f"JSON Value: {json_value_to_string(value)} found at incorrect level: {level + 1} "  # noqa: E501
                    f"in the JSON DOM. Expected at level: {rank}"
                )
            )
        out.append(_check_leaf(value, dtype))
        return
    if level >= rank:
        raise ServingError(
            invalid_argument(f"Encountered list at unexpected level: {level} expected < {rank}")
        )
    if len(value) != shape[level]:
        raise ServingError(
            invalid_argument(
                f"Encountered list at unexpected size: {len(value)} at level: {level} "
                f"expected size: {shape[level]}"
            )
        )
    for item in value:
        _fill(item, level + 1, shape, dtype, out)


def _fast_array(value, shape: list[int], dtype: str, allow_fast: bool):
    """numpy's C parser for the common case (regular numeric lists); None when unsure."""
    if (
        not allow_fast
        or dtype not in ("DT_FLOAT", "DT_DOUBLE", "DT_INT32", "DT_INT64")
        or not shape
    ):
        return None
    try:
        array = np.array(value)
    except (ValueError, TypeError, OverflowError):
        return None
    if list(array.shape) != shape or array.dtype.kind not in "fi":
        return None
    entry = dtypes.BY_NAME[dtype]
    low, high = entry.json_ints
    if entry.kind == "i":
        if array.dtype.kind != "i":
            return None
        if array.size and (array.min() < low or array.max() > high):
            return None
        return array.astype(entry.numpy)
    if array.size:
        finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
        if finite.size and np.abs(finite).max() > high:
            return None  # big values: the exact walk tells integers from decimals
    return array.astype(entry.numpy)


def json_to_array(value, dtype: str, allow_fast: bool = True) -> np.ndarray:
    """One tensor from a JSON value, shape inferred from the first element at each level.

    Args:
        value: the parsed JSON value (nested lists for a tensor of rank > 0).
        dtype: the DataType enum name of the signature's input, e.g. `"DT_FLOAT"`.
        allow_fast: try numpy's C parser first for regular numeric lists; the exact walk
            runs when it is off or unsure. Turn it off for a body holding `true` or
            `false`: numpy would read them as numbers where TF Serving refuses them.

    Returns:
        The tensor, of the numpy type `dtypes` gives `dtype`.
    """
    if dtype not in dtypes.BY_NAME:
        raise ServingError(
            unimplemented(
                f"Conversion of JSON Value: {json_value_to_string(value)} to type: {dtype}"
            )
        )
    shape = _dense_shape(value)
    fast = _fast_array(value, shape, dtype, allow_fast)
    if fast is not None:
        return fast
    leaves: list = []
    _fill(value, 0, shape, dtype, leaves)
    if dtype == "DT_STRING":
        array = np.empty(len(leaves), dtype=object)
        array[:] = leaves
        return array.reshape(shape)
    return np.array(leaves, dtype=dtypes.BY_NAME[dtype].numpy).reshape(shape)


def _is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _is_element_object(value) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


def _shape_string(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def fill_predict_inputs(doc: dict, input_dtypes: dict[str, str], allow_fast: bool = True):
    """The request's tensors, from its `instances` (row format) or `inputs` (columnar).

    Args:
        doc: the parsed body (`parse_json`).
        input_dtypes: the signature's input names -> DataType enum names.
        allow_fast: see `json_to_array`.

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
        return _from_instances(instances, input_dtypes, allow_fast), ROW
    if has_inputs:
        return _from_inputs(doc["inputs"], input_dtypes, allow_fast), COLUMNAR
    raise ServingError(invalid_argument("Missing 'inputs' or 'instances' key"))


def _from_instances(instances: list, input_dtypes: dict[str, str], allow_fast: bool):
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
            raise ServingError(invalid_argument(f"JSON object: does not have named input: {name}"))
        array = json_to_array(value, input_dtypes[name], allow_fast)
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
                        f"Expecting shape {_shape_string(shapes[name])} but got: {_shape_string(array.shape)}"  # noqa: E501
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
                            f"Failed to process element: {index} key: {name} of 'instances' list. "
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


def _from_inputs(value, input_dtypes: dict[str, str], allow_fast: bool):
    if not isinstance(value, dict) or _is_b64(value):
        if len(input_dtypes) > 1:
            raise ServingError(
                invalid_argument(
                    "inputs is a plain value/list, but expecting an object as multiple "
                    "input tensors required as per tensorinfo_map"
                )
            )
        name = next(iter(input_dtypes))
        return {name: json_to_array(value, input_dtypes[name], allow_fast)}
    tensors = {}
    for name in sorted(input_dtypes):
        if name not in value:
            raise ServingError(invalid_argument(f"Missing named input: {name} in 'inputs' object."))
        tensors[name] = json_to_array(value[name], input_dtypes[name], allow_fast)
    return tensors
