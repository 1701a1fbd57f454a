"""Parsing a REST body as TF Serving's rapidjson does: what it refuses is refused here too.

Refused with INVALID_ARGUMENT (HTTP 400), before any tensor is built: bytes that are not
UTF-8, an empty document, bad syntax (with its offset), numbers beyond a double (`1e400`,
a 5000-digit integer: "Number too big to be stored in double"), a lone UTF-16 surrogate
escape (`"\\ud800"`), lists nested deeper than Python's parser goes, and a document that is
not an object. `NaN`, `Infinity` and `-Infinity` are accepted, as TF Serving accepts them.

Large all-numeric arrays are read by `json_fast` (no Python float per value); the values
in the returned document are then `json_fast.NumericSpan`s where those arrays were.
"""

from __future__ import annotations

import json
import math
import re

from genkeras.serving import json_fast
from genkeras.serving.errors import ServingError, invalid_argument
from genkeras.serving.json_encode import json_value_to_string

# Digits -> "1", e/E -> "e", "+" kept, anything else a blank: a literal that may overflow a
# double (an exponent of three digits or more, a run of 300 digits) then shows as one of
# `_HUGE_SIGNS`. Only text holding one pays for the checked number parser.
_CLASSES = bytes.maketrans(
    bytes(range(256)),
    bytes(
        0x31 if 0x30 <= c <= 0x39 else 0x65 if c in b"eE" else 0x2B if c == 0x2B else 0x20
        for c in range(256)
    ),
)
_HUGE_SIGNS = (b"e111", b"e+111", b"1" * 300)
# An escaped UTF-16 surrogate (high or low half); such bodies get their strings checked.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _too_big(text: str, body: bytes) -> ServingError:
    offset = body.find(text.encode())
    return ServingError(
        invalid_argument(
            f"JSON Parse error: Number too big to be stored in double at offset: {max(offset, 0)}"
        )
    )


def _loads(text: bytes, checked: bool, body: bytes):
    """`json.loads` with rapidjson's number rules; every refusal as a `ServingError`."""
    hooks = {}
    if checked:

        def parse_float(literal: str) -> float:
            value = float(literal)
            if math.isinf(value):
                raise _too_big(literal, body)
            return value

        def parse_int(literal: str):
            digits = len(literal.lstrip("-"))
            if digits > 309:  # beyond 1.8e308, the largest double
                raise _too_big(literal, body)
            value = int(literal)
            if digits == 309:  # fits a double only up to 1.797e308
                try:
                    float(value)
                except OverflowError:
                    raise _too_big(literal, body) from None
            return value

        hooks = {"parse_float": parse_float, "parse_int": parse_int}
    try:
        return json.loads(text, **hooks)
    except json.JSONDecodeError as error:
        raise ServingError(
            invalid_argument(
                f"JSON Parse error: Invalid value. ({error.msg}) at offset: {error.pos}"
            )
        ) from None
    except RecursionError:
        raise ServingError(
            invalid_argument(
                "JSON Parse error: lists or objects nested too deeply; a tensor has at most "
                f"{MAX_RANK} dimensions"
            )
        ) from None
    except ValueError:  # Python's limit on integer digits
        raise ServingError(
            invalid_argument(
                "JSON Parse error: Number too big to be stored in double (an integer literal "
                "of thousands of digits)"
            )
        ) from None


MAX_RANK = 32


def _lone_surrogate(doc) -> str | None:
    """The first string (or key) of `doc` holding an unpaired UTF-16 surrogate, else None."""
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return node
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None


def parse_json(body: bytes | str) -> dict:
    """The request body parsed as TF Serving parses it; it must be a JSON object.

    Args:
        body: the raw body (UTF-8 bytes) or its text.

    Returns:
        The document; large numeric arrays in it are `json_fast.NumericSpan`s.

    Raises:
        ServingError: INVALID_ARGUMENT with rapidjson's message for a body it refuses.
    """
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    body = bytes(body)
    if not body.isascii():
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ServingError(
                invalid_argument(
                    f"JSON Parse error: Invalid encoding in string. at offset: {error.start}"
                )
            ) from None
    if not body.strip():
        raise ServingError(invalid_argument("JSON Parse error: The document is empty"))

    def parse(text: bytes):
        # The number hooks only differ from json.loads' own on a literal too big for a
        # double, so only text that may hold one pays for them.
        classes = text.translate(_CLASSES)
        checked = any(sign in classes for sign in _HUGE_SIGNS)
        del classes
        return _loads(text, checked, body)

    rest, spans = json_fast.split_spans(body, parse)
    doc = None
    if spans:
        try:
            doc = json_fast.put_back(parse(rest), spans)
        except ServingError:
            doc = None  # offsets in the cut text mean nothing: parse the whole body below
    if doc is None:
        doc = parse(body)
    if b"\\" in body and _SURROGATE_ESCAPE.search(body) and _lone_surrogate(doc) is not None:
        raise ServingError(
            invalid_argument(
                "JSON Parse error: The surrogate pair in string is invalid. (a lone \\uD800-"
                "\\uDFFF escape; send text as UTF-8 or as a valid surrogate pair)"
            )
        )
    if not isinstance(doc, dict):
        raise ServingError(
            invalid_argument(f"JSON Value: {json_value_to_string(doc)} Is not object")
        )
    return doc
