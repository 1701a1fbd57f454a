"""The tensor types the server and the client handle, in one table.

Each entry ties together what the different parts of serving need to know about one
`DataType` enum (tensorflow/core/framework/types.proto): its name and number, the numpy
dtype that holds it, the `TensorProto` field its values go in, the name TF Serving's
messages use for it (`DataTypeString()`), and which JSON integers a REST request may give
for it. The JSON codec, the gRPC service, the client and the servables all read this table,
so a type is described once.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# rapidjson's IsInt() range: TF Serving checks it for every integer type up to 32 bits.
_INT32_RANGE = (-(2**31), 2**31 - 1)


@dataclasses.dataclass(frozen=True)
class DType:
    """One `DataType` enum and how serving represents it.

    Attributes:
        name: the enum name, e.g. `"DT_FLOAT"`.
        number: the enum number, e.g. `1`.
        numpy: the numpy type holding its values (`np.object_` for strings, held as bytes).
        field: the repeated `TensorProto` field that holds its values, e.g. `"float_val"`.
        type_string: the name TF Serving's error messages use, e.g. `"float"`.
        json_ints: the inclusive `(low, high)` range of JSON integers an integer type takes
            (rapidjson's IsInt, IsInt64, IsUint, IsUint64); beyond it the value is refused as
            the wrong type. `None` for the other types: float types take any JSON number,
            integers too, rounded to the nearest double and then to the type (TF Serving's
            `util/json_tensor.cc`: `GetFloat()`, `GetDouble()`), strings and bools none.
        kind: numpy's kind character of `numpy`: `f` float, `i` / `u` integer, `b` bool,
            `O` string (derived, not passed).
    """

    name: str
    number: int
    numpy: type
    field: str
    type_string: str
    json_ints: tuple[int, int] | None
    kind: str = dataclasses.field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "kind", np.dtype(self.numpy).kind)


TABLE = (
    DType("DT_FLOAT", 1, np.float32, "float_val", "float", None),
    DType("DT_DOUBLE", 2, np.float64, "double_val", "double", None),
    DType("DT_INT32", 3, np.int32, "int_val", "int32", _INT32_RANGE),
    DType("DT_UINT8", 4, np.uint8, "int_val", "uint8", _INT32_RANGE),
    DType("DT_INT16", 5, np.int16, "int_val", "int16", _INT32_RANGE),
    DType("DT_INT8", 6, np.int8, "int_val", "int8", _INT32_RANGE),
    DType("DT_STRING", 7, np.object_, "string_val", "string", None),
    DType("DT_INT64", 9, np.int64, "int64_val", "int64", (-(2**63), 2**63 - 1)),
    DType("DT_BOOL", 10, np.bool_, "bool_val", "bool", None),
    DType("DT_UINT32", 22, np.uint32, "uint32_val", "uint32", (0, 2**32 - 1)),
    DType("DT_UINT64", 23, np.uint64, "uint64_val", "uint64", (0, 2**64 - 1)),
)

BY_NAME = {entry.name: entry for entry in TABLE}
BY_NUMBER = {entry.number: entry for entry in TABLE}


def enum_name(number: int) -> str:
    """The `DataType` enum name of `number`, for every type TensorFlow knows.

    Signatures may declare types outside `TABLE`; their names still appear in messages. A
    reference type (a TF 1 variable's `DT_FLOAT_REF`) is named by the type of the values it
    holds, which are what a request feeds.

    Args:
        number: a `DataType` enum number.

    Returns:
        The enum name, e.g. `"DT_HALF"` for 19, `"DT_FLOAT"` for 101 (`DT_FLOAT_REF`).
    """
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(number - 100 if number > 100 else number)


def type_string(name: str) -> str:
    """The name TF Serving's messages give the enum `name`: `"DT_FLOAT"` -> `"float"`.

    Args:
        name: a `DataType` enum name, in `TABLE` or not.

    Returns:
        The table's `type_string`, else the name without `DT_`, lower-cased.
    """
    entry = BY_NAME.get(name)
    return entry.type_string if entry else name.removeprefix("DT_").lower()


def name_of_array(array: np.ndarray) -> str:
    """The `DataType` enum name for a numpy array's dtype (any text array is `DT_STRING`).

    Args:
        array: the array.

    Returns:
        The enum name, e.g. `"DT_FLOAT"`; for a dtype outside `TABLE`, `DT_` and the numpy
        name upper-cased (`"DT_FLOAT16"`).
    """
    for entry in TABLE:
        if array.dtype == entry.numpy:
            return entry.name
    if array.dtype.kind in "SU":
        return "DT_STRING"
    return f"DT_{array.dtype.name.upper()}"
