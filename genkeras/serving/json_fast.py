"""Large all-numeric arrays of a REST body read straight into numpy, without Python objects.

`json.loads` turns every number of `[[[[0.5], ...]]]` into a Python float inside a Python
list: about 120 bytes per value, so a 50 MiB body becomes more than a gigabyte. Here each
array of the body that holds only numbers, commas, brackets and blanks, and is at least
`MIN_SPAN_BYTES` long, is cut out of the text before parsing and replaced by a marker;
`json.loads` reads the rest, and the tensor code asks the `NumericSpan` for an array.

A span becomes an array only when it is exactly what the object path accepts: a nested
array of equal-length lists (checked on the brackets and commas alone), every number JSON's
grammar, values the input's type takes without loss. For anything else
`NumericSpan.to_python` parses the span with `json.loads`, and the exact path gives TF
Serving's error for it.

Numbers are read by `_json_numbers.c` (`native`, built with the package) where each has at
most 19 significant digits and needs one rounding (what `Client` and TF Serving write), else
by orjson (C speed, correctly rounded like `float()`) with the brackets blanked out, a piece
of about `PIECE_BYTES` at a time, as the span is cut; either checks their grammar as well.
Where neither can tell (orjson refuses a piece, the lists are not regular, `-0` which numpy
reads as -0.0), a regular expression checks the grammar and numpy reads the text when a
tensor needs it, so the answer is the same either way. Integer inputs are always read that
way. `native` also finds where an array ends (`_scan`), else numpy does.
"""

from __future__ import annotations

import functools
import json
import math
import re
import secrets

import numpy as np
import orjson

try:  # built from _json_numbers.c at install; absent where no C compiler was found
    import genkeras.serving._json_numbers as native
except ImportError:
    native = None

MIN_SPAN_BYTES = 4 * 1024
MAX_DEPTH = 32
# Spans are checked and read a piece of about this size at a time (between pieces other
# requests' threads get the interpreter).
PIECE_BYTES = 1 << 20
_SCAN_BLOCK = 8 << 20

# The characters an all-numeric array is made of -> 0, any other byte -> 1.
_ARRAY_CHARS = b"-+.0123456789eE,[] \t\r\n"
_OUTSIDE = bytes(0 if c in _ARRAY_CHARS else 1 for c in range(256))
_WS = rb"[ \t\r\n]*+"
_NUMBER = rb"-?+(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?+(?:[eE][+-]?+[0-9]++)?+"
_NOT_STRUCTURE = b"0123456789.eE+- \t\r\n"
_BRACKETS_TO_BLANKS = bytes.maketrans(b"[]", b"  ")
_LONG_DIGITS = re.compile(rb"[0-9]{19}")
# "-0": json.loads reads the integer 0, numpy (the grammar-checked path) -0.0.
_NEGATIVE_ZERO = re.compile(rb"-0(?![.0-9eE])")


@functools.lru_cache(maxsize=MAX_DEPTH)
def _elements_pattern(depth: int) -> re.Pattern:
    """Matches a comma-separated sequence of `depth`-deep arrays of numbers (numbers when
    `depth` is 0), without empty lists, as JSON writes it."""
    element = _NUMBER
    for _ in range(depth):
        element = (
            rb"(?>\["
            + _WS
            + element
            + rb"(?:"
            + _WS
            + rb","
            + _WS
            + element
            + rb")*+"
            + _WS
            + rb"\])"
        )
    return re.compile(_WS + element + rb"(?:" + _WS + rb"," + _WS + element + rb")*+" + _WS)


def _leading_depth(body: bytes, start: int) -> int:
    depth, i = 0, start
    while i < len(body) and depth <= MAX_DEPTH:
        c = body[i]
        if c == 0x5B:
            depth += 1
        elif c not in b" \t\r\n":
            break
        i += 1
    return depth


def _scan(body: bytes, start: int, stop: int) -> tuple[int, list[int], bytes] | None:
    """Where the array opening at `start` closes, and the top-level commas to cut it at.

    Returns:
        `(end, cuts, structure)`: the index after its closing bracket, commas of its top
        level about `PIECE_BYTES` apart, and its brackets and commas in order; None when it
        does not close before `stop`.
    """
    if native is not None:
        return native.scan_array(body, start, stop, PIECE_BYTES)
    depth, cuts, structure = 0, [], []
    for block_start in range(start, stop, _SCAN_BLOCK):
        block = np.frombuffer(body, np.uint8, min(_SCAN_BLOCK, stop - block_start), block_start)
        where = np.flatnonzero((block == 0x5B) | (block == 0x5D) | (block == 0x2C))
        chars = block[where]
        level = np.cumsum((chars == 0x5B).astype(np.int32) - (chars == 0x5D), dtype=np.int32)
        level += depth
        closed = np.flatnonzero(level <= 0)
        limit = closed[0] if closed.size else where.size
        top = (chars[:limit] == 0x2C) & (level[:limit] == 1)
        commas = where[:limit][top] + block_start
        if commas.size:
            _, first = np.unique((commas - start) // PIECE_BYTES, return_index=True)
            cuts.extend(commas[first].tolist())
        if closed.size:
            structure.append(chars[: closed[0] + 1].tobytes())
            return block_start + int(where[closed[0]]) + 1, cuts, b"".join(structure)
        structure.append(chars.tobytes())
        depth = int(level[-1]) if level.size else depth
    return None


def _runs(body: bytes) -> list[tuple[int, int]]:
    """`(start, stop)` of each run of array characters at least `MIN_SPAN_BYTES` long."""
    runs, last = [], -1  # last: where the latest other byte is
    for block_start in range(0, len(body), PIECE_BYTES):
        block = body[block_start : block_start + PIECE_BYTES].translate(_OUTSIDE)
        others = np.flatnonzero(np.frombuffer(block, np.bool_)) + block_start  # bytes 0 or 1
        edges = np.concatenate([[last], others])
        wide = np.flatnonzero(np.diff(edges) > MIN_SPAN_BYTES)
        runs.extend((int(edges[i]) + 1, int(edges[i + 1])) for i in wide)
        if others.size:
            last = int(others[-1])
    if len(body) - last - 1 >= MIN_SPAN_BYTES:
        runs.append((last + 1, len(body)))
    return runs


def _fast_read(text: bytes, depth: int, cuts: list[int], structure: bytes):
    """`(shape, float64 values)` of a regular array of JSON numbers, read by orjson a piece
    at a time with its brackets blanked; None when this cannot tell (then `_valid` decides).

    Brackets blanked, orjson refuses anything but one number between commas. With the lists
    regular (`_regular_shape`) and as many numbers as the shape holds (so no list is empty),
    such text is exactly what `_valid` accepts, and the values are those numpy reads from it.
    """
    shape = _regular_shape(text, depth, structure)
    if shape is None:
        return None
    if native is not None:
        read = native.read_numbers(text)
        if read is not None:
            values = np.frombuffer(read, np.float64)
            return (shape, values) if values.size == math.prod(shape) else None
    if _NEGATIVE_ZERO.search(text):
        return None
    pieces = []
    for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True):
        piece = text[a + 1 : b].translate(_BRACKETS_TO_BLANKS)
        try:
            items = orjson.loads(b"[" + piece + b"]")
            pieces.append(np.fromiter(items, np.float64, len(items)))
        except (orjson.JSONDecodeError, OverflowError, TypeError, ValueError):
            return None
    values = np.concatenate(pieces)
    return (shape, values) if values.ndim == 1 and values.size == math.prod(shape) else None


def _valid(body: bytes, start: int, end: int, depth: int, cuts: list[int]) -> bool:
    """The array `body[start:end]` is `depth`-deep JSON numbers throughout (piece by piece)."""
    pattern = _elements_pattern(depth - 1)
    bounds = [start + 1, *(c + 1 for c in cuts)], [*cuts, end - 1]
    return all(pattern.fullmatch(body, a, b) is not None for a, b in zip(*bounds, strict=True))


def _regular_shape(text: bytes, depth: int, structure: bytes | None = None) -> list[int] | None:
    """The shape of a grammar-checked numeric array when its lists are all equal, else None.

    Compares the text's brackets and commas with those of the regular array of the shape
    its first element at each level implies. `structure`: those of `text`, when known.
    """
    if structure is None:
        structure = text.translate(None, _NOT_STRUCTURE)
    first_close = structure.find(b"]")
    inner = first_close - (depth - 1) + 1  # "[" + commas + "]" of the first innermost list
    if inner < 2:
        return None
    shape = [inner - 1]
    size = inner
    for level in range(depth - 1, 0, -1):
        pos, count = level + size, 1  # after the first child of the first list of this level
        while pos < len(structure) and structure[pos] == 0x2C:
            pos += 1 + size
            count += 1
        shape.insert(0, count)
        size = 2 + count * size + (count - 1)
    if size != len(structure):
        return None
    expected = b"[" + b"," * (shape[-1] - 1) + b"]"
    for count in reversed(shape[:-1]):
        expected = b"[" + b",".join([expected] * count) + b"]"
    return shape if expected == structure else None


class NumericSpan:
    """One all-numeric array of the body, kept as its text until a tensor needs it.

    Args:
        text: the array's JSON text (grammar already checked).
        depth: how deep its lists nest.
        cuts: offsets in `text` of top-level commas, about `PIECE_BYTES` apart.
        parse: the `json.loads` the body uses (its number rules), for `to_python`.
        read: `(shape, float64 values)` from `_fast_read`, or None to read the text later.
    """

    def __init__(self, text: bytes, depth: int, cuts: list[int], parse, read=None):
        self.text, self.depth, self.cuts, self._parse = text, depth, cuts, parse
        self._shape: list[int] | None | bool = False if read is None else read[0]
        self._floats = None if read is None else read[1]

    def shape(self) -> list[int] | None:
        """The array's shape when all its lists are of equal length, else None."""
        if self._shape is False:
            self._shape = _regular_shape(self.text, self.depth)
        return self._shape

    def first_shape(self) -> list[int]:
        """The shape TF Serving infers: the first element's length at each level."""
        shape = self.shape()
        if shape is not None:
            return shape
        return dense_shape(self.to_python())

    def to_python(self):
        """The array as `json.loads` reads it (nested lists of numbers)."""
        return self._parse(self.text)

    def _values(self, numpy_type) -> np.ndarray | None:
        """Every number, in order, read a piece at a time into one flat array."""
        total = math.prod(self.shape())
        out = np.empty(total, numpy_type)
        filled = 0
        for a, b in zip([0, *self.cuts], [*self.cuts, len(self.text)], strict=True):
            piece = self.text[a:b].translate(_BRACKETS_TO_BLANKS)
            values = np.fromstring(
                piece.replace(b",", b" ", 1) if a else piece, numpy_type, sep=","
            )
            if filled + values.size > total:
                return None
            out[filled : filled + values.size] = values
            filled += values.size
        return out if filled == total else None

    def to_array(self, entry) -> np.ndarray | None:
        """The tensor of `dtypes` entry `entry`, or None where the exact path must decide.

        None for an irregular array, a non-numeric type, integers given with a fraction or
        exponent or too many digits, and non-finite values (a number too big for a double:
        the exact path refuses it as rapidjson does).
        """
        shape = self.shape()
        if shape is None or entry.kind not in "fiu":
            return None
        if entry.kind in "iu":
            low, high = entry.json_ints
            if re.search(rb"[.eE]", self.text) or _LONG_DIGITS.search(self.text):
                return None
            values = self._values(np.int64)
            if values is None:
                return None
            if values.size and (values.min() < low or values.max() > high):
                return None
            return values.astype(entry.numpy).reshape(shape)
        values = self._floats if self._floats is not None else self._values(np.float64)
        if values is None:
            return None
        if values.size and not np.isfinite(values).all():
            return None
        # Every number is the nearest double already (integers too, as rapidjson's
        # GetDouble()); float32 rounds once more, beyond its range to inf (`GetFloat()`).
        with np.errstate(over="ignore"):
            return values.astype(entry.numpy, copy=False).reshape(shape)

    def preview(self, limit: int) -> str:
        """The span's first `limit` characters, whitespace dropped (for error messages)."""
        head = self.text[: limit * 4].translate(None, b" \t\r\n")
        return head[:limit].decode("ascii", "replace")


def dense_shape(value) -> list[int]:
    """Shape from the first element at each level, as TF Serving infers it."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def split_spans(body: bytes, parse) -> tuple[bytes, dict[str, NumericSpan]]:
    """Cuts the large all-numeric arrays out of `body`.

    Args:
        body: the request body (UTF-8 JSON).
        parse: `json.loads` with the body's number rules, for spans read the exact way.

    Returns:
        `(rest, spans)`: the body with each array replaced by a JSON string marker, and
        marker -> `NumericSpan`. No spans: `(body, {})`.
    """
    if len(body) < MIN_SPAN_BYTES:
        return body, {}
    nonce = secrets.token_hex(8)
    parts, spans, last = [], {}, 0
    for pos, stop in _runs(body):
        while stop - pos >= MIN_SPAN_BYTES:
            start = body.find(b"[", pos, stop)
            if start < 0 or stop - start < MIN_SPAN_BYTES:
                break
            depth = _leading_depth(body, start)
            scanned = _scan(body, start, stop) if depth <= MAX_DEPTH else None
            if scanned is None:
                break
            end, cuts, structure = scanned
            text = body[start:end] if end - start >= MIN_SPAN_BYTES else b""
            read = _fast_read(text, depth, [c - start for c in cuts], structure) if text else None
            if text and (read is not None or _valid(body, start, end, depth, cuts)):
                marker = f"\x00genkeras-span-{nonce}-{len(spans)}"
                parts.append(body[last:start])
                parts.append(json.dumps(marker).encode())
                cuts = [c - start for c in cuts]
                spans[marker] = NumericSpan(text, depth, cuts, parse, read)
                last = end
            pos = end
    if not spans:
        return body, {}
    parts.append(body[last:])
    return b"".join(parts), spans


def put_back(doc, spans: dict[str, NumericSpan]):
    """`doc` with each marker string replaced by its span; None when a marker is not found
    exactly once as a value (it sat inside a string: the caller parses the whole body)."""
    if isinstance(doc, str):
        return spans[doc] if len(spans) == 1 and doc in spans else None
    found = 0
    stack = [doc]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in list(items):
            if isinstance(value, str):
                if value in spans:
                    node[key] = spans[value]
                    found += 1
            elif isinstance(value, (dict, list)):
                stack.append(value)
            if isinstance(key, str) and key in spans:
                return None
    return doc if found == len(spans) else None


def loads(data: bytes):
    """`json.loads(data)`, with large all-numeric arrays left as `NumericSpan`s (the client
    reads answers so)."""
    rest, spans = split_spans(data, json.loads)
    doc = put_back(json.loads(rest), spans) if spans else None
    return json.loads(data) if doc is None else doc
