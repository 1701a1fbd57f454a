"""TF Serving's JSON tensor codec (REST `:predict`), re-implemented from its documented behaviour.

Behaviour follows tensorflow/serving `util/json_tensor.cc` and its tests:

* Request: a JSON object with an optional string `signature_name` and exactly one of
  `instances` (row format: a non-empty list; every element one instance; a list of objects
  when there are several inputs, each object holding exactly the signature's input names) or
  `inputs` (columnar format: a plain value/list when the signature has one input, else an
  object that must hold every input name; extra keys are ignored).
* Values: `NaN`, `Infinity`, `-Infinity` accepted; int32 inputs take JSON integers only
  (`1.0` is refused); float inputs take any number that fits without loss (integers beyond
  2^24 - 1 are refused for float32).
* Response: row format answers `{"predictions": [...]}` (one element per instance, an object
  only when there are several outputs), columnar `{"outputs": ...}` (an object only when
  there are several outputs). A float is written as `%g` (six significant digits) when that
  reads back as the same float, else with `max_digits10` digits (`%.9g` for float32), with
  `.0` appended to whole numbers; non-finite values as `NaN`, `Infinity`, `-Infinity`.

Errors raise `ServingError` with a canonical gRPC code (see `errors.py`).
"""

from __future__ import annotations

import json
import math

import numpy as np

from genkeras.serving.errors import ServingError, invalid_argument, unimplemented

ROW, COLUMNAR = "row", "columnar"

FLOAT32_MAX_INT = (1 << 24) - 1
FLOAT64_MAX_INT = (1 << 53) - 1

# DataType enum names (tensorflow/core/framework/types.proto) -> numpy dtypes.
NUMPY_DTYPES = {
    "DT_FLOAT": np.float32,
    "DT_DOUBLE": np.float64,
    "DT_INT32": np.int32,
    "DT_INT16": np.int16,
    "DT_INT8": np.int8,
    "DT_UINT8": np.uint8,
    "DT_INT64": np.int64,
    "DT_BOOL": np.bool_,
    "DT_UINT32": np.uint32,
    "DT_UINT64": np.uint64,
    "DT_STRING": np.object_,
}
INT_RANGES = {
    "DT_INT32": (-(2**31), 2**31 - 1),
    "DT_INT16": (-(2**31), 2**31 - 1),  # rapidjson IsInt(): TF Serving checks int range only
    "DT_INT8": (-(2**31), 2**31 - 1),
    "DT_UINT8": (-(2**31), 2**31 - 1),
    "DT_INT64": (-(2**63), 2**63 - 1),
    "DT_UINT32": (0, 2**32 - 1),
    "DT_UINT64": (0, 2**64 - 1),
}
TYPE_NAMES = {  # DataTypeString(): what TF Serving's messages call the types
    "DT_FLOAT": "float",
    "DT_DOUBLE": "double",
    "DT_INT32": "int32",
    "DT_INT16": "int16",
    "DT_INT8": "int8",
    "DT_UINT8": "uint8",
    "DT_INT64": "int64",
    "DT_BOOL": "bool",
    "DT_UINT32": "uint32",
    "DT_UINT64": "uint64",
    "DT_STRING": "string",
}


# ---------------------------------------------------------------------------------------------
# Writing numbers


def format_float(value: float, double: bool = False) -> str:
    """One float as TF Serving writes it: `0.2`, `1.0`, `1e+06`, `0.333333343`, `NaN`."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    text = f"{value:g}"
    if double:
        if float(text) != value:
            text = f"{value:.17g}"
    elif np.float32(float(text)) != np.float32(value):
        text = f"{value:.9g}"
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def _format_floats(array: np.ndarray) -> list[str]:
    """`format_float` over a whole array, vectorised where it can be."""
    flat = array.ravel()
    double = flat.dtype == np.float64
    wide = flat.astype(np.float64).tolist()
    texts = [f"{v:g}" for v in wide]
    finite = np.isfinite(flat)
    with np.errstate(all="ignore"):
        back = np.array([float(t) for t in texts], dtype=np.float64)
        if double:
            lossy = (back != flat) & finite
        else:
            lossy = (back.astype(np.float32) != flat) & finite
    if lossy.any():
        digits = ".17g" if double else ".9g"
        for i in np.flatnonzero(lossy).tolist():
            texts[i] = format(wide[i], digits)
    if not finite.all():
        for i in np.flatnonzero(~finite).tolist():
            texts[i] = format_float(wide[i])
    return [t if ("." in t or "e" in t or t[-1] in "yN") else t + ".0" for t in texts]


def _leaf_texts(array: np.ndarray, bytes_as_b64: bool = False) -> list[str]:
    kind = array.dtype.kind
    if kind == "f":
        if array.dtype not in (np.float32, np.float64):
            array = array.astype(np.float32)
        return _format_floats(array)
    if kind in "iu":
        return [str(v) for v in array.ravel().tolist()]
    if kind == "b":
        return ["true" if v else "false" for v in array.ravel().tolist()]
    if kind in "OSU":
        out = []
        for v in array.ravel().tolist():
            if isinstance(v, str):
                v = v.encode()
            if bytes_as_b64:
                import base64

                out.append(json.dumps({"b64": base64.b64encode(v).decode()}))
            else:
                out.append(json.dumps(v.decode("utf-8", "replace")))
        return out
    raise ServingError(
        invalid_argument(f"Failed to write JSON value for tensor type: {array.dtype}")
    )


def _nest(texts: list[str], shape: tuple[int, ...]) -> str:
    """Joins flat leaf texts into nested JSON lists of `shape` (a scalar when shape is ())."""
    if not shape:
        return texts[0]
    if 0 in shape:
        return json.dumps(np.zeros(shape).tolist())
    for size in reversed(shape):
        texts = ["[" + ",".join(texts[i : i + size]) + "]" for i in range(0, len(texts), size)]
    return texts[0]


def _tensor_json(name: str, array: np.ndarray) -> str:
    array = np.asarray(array)
    texts = _leaf_texts(array, bytes_as_b64=name.endswith("_bytes"))
    return _nest(texts, array.shape)


def make_json(outputs: dict[str, np.ndarray], request_format: str) -> str:
    """The response body for `outputs` (alias -> array), shaped as TF Serving shapes it."""
    if not outputs:
        raise ServingError(invalid_argument("Cannot convert empty tensor map to JSON"))
    names = sorted(outputs)  # protobuf Map order is unspecified; sorted keeps answers stable
    several = len(names) > 1
    if request_format == COLUMNAR:
        if several:
            body = ", ".join(f"{json.dumps(n)}: {_tensor_json(n, outputs[n])}" for n in names)
            return '{"outputs": {' + body + "}}"
        return '{"outputs": ' + _tensor_json(names[0], outputs[names[0]]) + "}"
    if request_format != ROW:
        raise ServingError(invalid_argument("Invalid request format"))
    batch = 0
    for name in names:
        array = np.asarray(outputs[name])
        if array.ndim == 0:
            raise ServingError(invalid_argument(f"Tensor name: {name} has no shape information "))
        size = array.shape[0]
        if size < 1:
            raise ServingError(
                invalid_argument(f"Tensor name: {name} has invalid batch size: {size}")
            )
        if batch and batch != size:
            raise ServingError(
                invalid_argument(
                    f"Tensor name: {name} has inconsistent batch size: {size} expecting: {batch}"
                )
            )
        batch = size
    rows = {}
    for name in names:
        array = np.asarray(outputs[name])
        texts = _leaf_texts(array, bytes_as_b64=name.endswith("_bytes"))
        per_item = len(texts) // batch if batch else 0
        rows[name] = [
            _nest(texts[i * per_item : (i + 1) * per_item], array.shape[1:]) for i in range(batch)
        ]
    if several:
        items = [
            "{" + ", ".join(f"{json.dumps(n)}: {rows[n][i]}" for n in names) + "}"
            for i in range(batch)
        ]
    else:
        items = rows[names[0]]
    return '{"predictions": [' + ", ".join(items) + "]}"


# ---------------------------------------------------------------------------------------------
# Reading requests


def json_value_to_string(value) -> str:
    """A JSON value as TF Serving quotes it in error messages (compact, floats as written)."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return format_float(value, double=True)
    if isinstance(value, (list, dict)):
        text = json.dumps(value, separators=(",", ":"), allow_nan=True)
        return text if len(text) <= 200 else text[:200] + "..."
    return json.dumps(value)


def json_type_string(value) -> str:
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def _type_error(value, dtype: str) -> ServingError:
    return ServingError(
        invalid_argument(
            f"JSON Value: {json_value_to_string(value)} Type: {json_type_string(value)} "
            f"is not of expected type: {TYPE_NAMES.get(dtype, dtype)}"
        )
    )


def _lossy_error(value, target: str) -> ServingError:
    return ServingError(
        invalid_argument(
            f"Cannot convert JSON value: {json_value_to_string(value)} to {target} without loss of precision."  # noqa: E501
        )
    )


def _reject_constant(token):
    raise ValueError(f"Invalid value: {token}")


def parse_json(body: bytes | str):
    """Parses a request body (NaN / Infinity allowed); the top level must be an object."""
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
    if dtype in ("DT_FLOAT", "DT_DOUBLE"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(value, dtype)
        if isinstance(value, int):
            limit = FLOAT32_MAX_INT if dtype == "DT_FLOAT" else FLOAT64_MAX_INT
            if abs(value) > limit:
                raise _lossy_error(value, TYPE_NAMES[dtype])
            return float(value)
        if (
            dtype == "DT_FLOAT"
            and math.isfinite(value)
            and abs(value) > float(np.finfo(np.float32).max)
        ):
            raise _lossy_error(value, "float")
        return value
    if dtype in INT_RANGES:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(value, dtype)
        low, high = INT_RANGES[dtype]
        if not low <= value <= high:
            raise _type_error(value, dtype)
        return value
    if dtype == "DT_BOOL":
        if not isinstance(value, bool):
            raise _type_error(value, dtype)
        return value
    if dtype == "DT_STRING":
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
    if dtype in ("DT_INT32", "DT_INT64"):
        if array.dtype.kind != "i":
            return None
        low, high = INT_RANGES[dtype]
        if array.size and (array.min() < low or array.max() > high):
            return None
        return array.astype(NUMPY_DTYPES[dtype])
    limit = FLOAT32_MAX_INT if dtype == "DT_FLOAT" else FLOAT64_MAX_INT
    if array.size:
        finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
        if finite.size and np.abs(finite).max() > limit:
            return None  # big values: the exact walk tells integers from decimals
    return array.astype(NUMPY_DTYPES[dtype])


def json_to_array(value, dtype: str, allow_fast: bool = True) -> np.ndarray:
    """One tensor from a JSON value, shape inferred from the first element at each level."""
    if dtype not in NUMPY_DTYPES:
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
    return np.array(leaves, dtype=NUMPY_DTYPES[dtype]).reshape(shape)


def _is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _is_element_object(value) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


def _shape_string(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def fill_predict_inputs(doc: dict, input_dtypes: dict[str, str], allow_fast: bool = True):
    """Request tensors from a parsed body. Returns `(inputs, format)`.

    `input_dtypes` maps the signature's input names to DataType enum names.
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
