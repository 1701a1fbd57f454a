"""One JSON value to one tensor, as TF Serving's `util/json_tensor.cc` converts it.

The shape is the first element's length at each level; every list must match it; leaves must
be of the input's type: int32 inputs take JSON integers only (`1.0` is refused), float inputs
take any number, integers too, rounded to the nearest double and then to the input's type
(`1435774380` becomes the float32 1435774336, as TF Serving's `GetFloat()` does; its
api_rest.md, "Floating Point Precision"), strings may come as `{"b64": ...}` objects. A
tensor deeper than `MAX_RANK` or with more values than the `--max_tensor_elements` limit is
refused from its shape, before it is built.

Errors raise `ServingError` with TF Serving's canonical code and message (see `errors.py`).
"""

from __future__ import annotations

import math

import numpy as np

from genkeras.serving import dtypes
from genkeras.serving.errors import ServingError, clip, invalid_argument, unimplemented
from genkeras.serving.json_encode import json_type_string, json_value_to_string
from genkeras.serving.json_fast import NumericSpan, dense_shape
from genkeras.serving.json_parse import MAX_RANK


def shape_string(shape) -> str:
    """`[2,28,28,1]`, as TF Serving's messages write a shape."""
    return "[" + ",".join(str(d) for d in shape) + "]"


def _type_error(value, dtype: str) -> ServingError:
    return ServingError(
        invalid_argument(
            f"JSON Value: {json_value_to_string(value)} Type: {json_type_string(value)} "
            f"is not of expected type: {dtypes.type_string(dtype)}"
        )
    )


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
        try:
            return float(value)  # an integer: the nearest double, as rapidjson's GetDouble()
        except OverflowError:  # json_parse refuses these first; a caller may not have
            raise ServingError(
                invalid_argument(f"Number too big to be stored in double: {clip(value)}")
            ) from None
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
    if entry.kind == "i":
        low, high = entry.json_ints
        if array.dtype.kind != "i":
            return None
        if array.size and (array.min() < low or array.max() > high):
            return None
        return array.astype(entry.numpy)
    return to_float_type(array, entry.numpy)


def to_float_type(values: np.ndarray, numpy_type) -> np.ndarray:
    """`values` as `numpy_type` the way TF Serving converts JSON numbers: each to the nearest
    double first (integers included: int64 -> float64 -> float32 rounds twice, as C++'s
    `static_cast<float>(GetDouble())` does), then to the type; beyond float32's range: inf."""
    with np.errstate(over="ignore"):
        return values.astype(np.float64, copy=False).astype(numpy_type, copy=False)


def check_elements(name: str, shape, max_elements: int | None) -> None:
    """Refuses a tensor of `shape` holding more than `max_elements` values, before it exists.

    Args:
        name: the input's name, for the message.
        shape: the tensor's shape.
        max_elements: the limit (`--max_tensor_elements`), or `None` for none.

    Raises:
        ServingError: INVALID_ARGUMENT naming the limit and its flag.
    """
    if len(shape) > MAX_RANK:
        raise ServingError(
            invalid_argument(
                f"Input tensor {clip(name)} is nested {len(shape)} lists deep; a tensor has at "
                f"most {MAX_RANK} dimensions here"
            )
        )
    if max_elements is None:
        return
    count = math.prod(int(d) for d in shape)
    if count > max_elements:
        raise ServingError(
            invalid_argument(
                f"Input tensor {clip(name)} of shape {shape_string(shape)} has {count} "
                f"elements, more than the limit of {max_elements} (--max_tensor_elements); "
                "send fewer rows per request"
            )
        )


def json_to_array(
    value, dtype: str, allow_fast: bool = True, max_elements: int | None = None, name: str = ""
) -> np.ndarray:
    """One tensor from a JSON value, shape inferred from the first element at each level.

    Args:
        value: the parsed JSON value (nested lists for a tensor of rank > 0, or a
            `NumericSpan` for a large all-numeric array).
        dtype: the DataType enum name of the signature's input, e.g. `"DT_FLOAT"`.
        allow_fast: try numpy's C parser first for regular numeric lists; the exact walk
            runs when it is off or unsure. Turn it off for a body holding `true` or
            `false`: numpy would read them as numbers where TF Serving refuses them.
        max_elements: refuse a tensor with more values than this (before building it).
        name: the input's name, for messages.

    Returns:
        The tensor, of the numpy type `dtypes` gives `dtype`.
    """
    if dtype not in dtypes.BY_NAME:
        raise ServingError(
            unimplemented(
                f"Conversion of JSON Value: {json_value_to_string(value)} to type: {dtype}"
            )
        )
    if isinstance(value, NumericSpan):
        check_elements(name, value.first_shape(), max_elements)
        array = value.to_array(dtypes.BY_NAME[dtype])
        if array is not None:
            return array
        value = value.to_python()
    shape = dense_shape(value)
    check_elements(name, shape, max_elements)
    fast = _fast_array(value, shape, dtype, allow_fast)
    if fast is not None:
        return fast
    leaves: list = []
    _fill(value, 0, shape, dtype, leaves)
    if dtype == "DT_STRING":
        array = np.empty(len(leaves), dtype=object)
        array[:] = leaves
        return array.reshape(shape)
    entry = dtypes.BY_NAME[dtype]
    if entry.kind == "f":  # leaves are doubles already
        return to_float_type(np.array(leaves, np.float64), entry.numpy).reshape(shape)
    return np.array(leaves, dtype=entry.numpy).reshape(shape)
