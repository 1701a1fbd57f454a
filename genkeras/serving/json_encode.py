"""Writing JSON as TF Serving writes it: `:predict` responses, values quoted in error messages.

Behaviour follows tensorflow/serving `util/json_tensor.cc`. Row format answers
`{"predictions": [...]}` (one element per instance, an object only when there are several
outputs), columnar `{"outputs": ...}` (an object only when there are several outputs). A
float is written as `%g` (six significant digits) when that reads back as the same float,
else with `max_digits10` digits (`%.9g` for float32), with `.0` appended to whole numbers;
non-finite values as `NaN`, `Infinity`, `-Infinity`; `json_numbers` writes float32 arrays
this way at numpy speed. String outputs whose alias ends in `_bytes` are written as
`{"b64": ...}` objects.

Errors raise `ServingError` with a canonical gRPC code (see `errors.py`).
"""

from __future__ import annotations

import json

import numpy as np

from genkeras.serving import json_numbers
from genkeras.serving.errors import ServingError, invalid_argument
from genkeras.serving.json_numbers import format_float  # noqa: F401 - re-exported

# The two request formats; the response takes the format of its request.
ROW, COLUMNAR = "row", "columnar"


PREVIEW_CHARS = 200


def json_value_to_string(value) -> str:
    """A JSON value as TF Serving quotes it in error messages (compact, floats as written).

    At most `PREVIEW_CHARS` characters are written, followed by `...` when cut, however
    large the value: the preview is built piece by piece, never the whole value.
    """
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return format_float(value, double=True)
    text = _bounded_dumps(value, PREVIEW_CHARS + 1)
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "..."


def _scalar_text(value, limit: int) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return json.dumps(value, allow_nan=True)
    if isinstance(value, int):
        digits = len(str(value)) if abs(value) < 10**limit else limit + 1
        return str(value) if digits <= limit else str(value)[:limit]
    if isinstance(value, str):
        return json.dumps(value[:limit])
    preview = getattr(value, "preview", None)  # a json_fast.NumericSpan
    return preview(limit) if preview else json.dumps(str(value)[:limit])


def _bounded_dumps(value, limit: int) -> str:
    """`json.dumps(value, separators=(",", ":"))`, stopped once `limit` characters are out."""
    out: list[str] = []
    size = 0
    stack = [value]
    while stack and size < limit:
        item = stack.pop()
        if isinstance(item, _Token):
            piece = item.text
        elif isinstance(item, list):
            stack.append(_Token("]"))
            for index in range(min(len(item), limit) - 1, -1, -1):
                stack.append(item[index])
                if index:
                    stack.append(_Token(","))
            piece = "["
        elif isinstance(item, dict):
            stack.append(_Token("}"))
            pairs = list(item.items())[:limit]
            for index in range(len(pairs) - 1, -1, -1):
                key, child = pairs[index]
                stack.append(child)
                stack.append(_Token(json.dumps(str(key)[:limit]) + ":"))
                if index:
                    stack.append(_Token(","))
            piece = "{"
        else:
            piece = _scalar_text(item, limit)
        out.append(piece)
        size += len(piece)
    return "".join(out)


class _Token:
    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


def json_type_string(value) -> str:
    """The JSON type of a value as TF Serving names it in error messages (`"Array"`, ...)."""
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


# Leaf values formatted per block: a large answer never holds a Python string per value.
BLOCK_ELEMENTS = 1 << 16


def _row_texts(name: str, array: np.ndarray, joined: bool = False):
    """The JSON text of each `array[i]`, in order, formatted a block of rows at a time
    (`joined`: one text per block, its rows' texts joined by commas)."""
    per_row = int(np.prod(array.shape[1:]))
    if per_row == 0 or 0 in array.shape:
        for row in array:
            yield _nest([], row.shape)
        return
    rows_per_block = max(1, BLOCK_ELEMENTS // per_row)
    b64 = name.endswith("_bytes")
    vectorised = array.dtype.kind == "f" and array.dtype != np.float64
    for start in range(0, array.shape[0], rows_per_block):
        block = array[start : start + rows_per_block]
        if vectorised and joined:
            yield json_numbers.float32_joined(block)
        elif vectorised:
            yield from json_numbers.float32_rows(block)
        else:
            texts = _leaf_texts(block, bytes_as_b64=b64)
            rows = (
                _nest(texts[i * per_row : (i + 1) * per_row], array.shape[1:])
                for i in range(block.shape[0])
            )
            yield from ([",".join(rows)] if joined else rows)


def array_json(array: np.ndarray) -> str:
    """One array as JSON nested lists, numbers written as in answers (the client's inputs)."""
    return _tensor_json("", array)


def _tensor_json(name: str, array: np.ndarray) -> str:
    array = np.asarray(array)
    if array.ndim == 0 or 0 in array.shape:
        return _nest(_leaf_texts(array, bytes_as_b64=name.endswith("_bytes")), array.shape)
    return "[" + ",".join(_row_texts(name, array, joined=True)) + "]"


def make_json(outputs: dict[str, np.ndarray], request_format: str) -> str:
    """The response body for `outputs`, shaped as TF Serving shapes it.

    Args:
        outputs: output alias -> array.
        request_format: `ROW` or `COLUMNAR`, the format of the request.

    Returns:
        The JSON text of the response.
    """
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
    rows = [_row_texts(name, np.asarray(outputs[name])) for name in names]
    if several:
        keys = [json.dumps(n) for n in names]
        items = (
            "{" + ", ".join(f"{key}: {text}" for key, text in zip(keys, texts, strict=True)) + "}"
            for texts in zip(*rows, strict=True)
        )
    else:
        items = rows[0]
    return '{"predictions": [' + ", ".join(items) + "]}"
