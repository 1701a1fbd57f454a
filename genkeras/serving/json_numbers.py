"""float32 arrays written in TF Serving's number format at numpy speed, nested as JSON lists.

Where the package was built with a C compiler, `_json_numbers.c` writes the same text about
three times as fast (`native`); the numpy code below is the fallback, held to the same text.

`format_float` (one value, in Python) is the reference: `%g` (six significant digits) when
that reads back as the same float32, else `%.9g`; `.0` appended to whole numbers; `NaN`,
`Infinity`, `-Infinity`. Written value by value in Python that costs about 1.5 us a value,
and a batch of 64 MNIST images holds 50,176 of them. Here the digits, the exponent and the
round-trip test are computed for all values at once, and the text is laid out in a byte
matrix with one row per character slot (sign, leading `0.000`, nine digits each followed by
an optional point, exponent, brackets and commas); unused slots hold a zero byte,
dropped at the end.

A value is handed to `format_float` itself whenever floating point cannot settle its digits
for certain: within a hair of a rounding tie, a round-trip test needing a power of ten beyond
1e22 (values under 1e-17 or over 1e27), or not finite. The text is therefore the reference's,
byte for byte; tests/test_serving_json.py compares the two on random bit patterns.
"""

from __future__ import annotations

import math

import numpy as np

try:  # built from _json_numbers.c at install; absent where no C compiler was found
    import genkeras.serving._json_numbers as native
except ImportError:
    native = None

# Rows of the slot matrix of a number: sign; "0", ".", "0", "0", "0" (fixed notation below
# 1); two slots (digit, point) per digit; the "0" of a whole number's ".0"; "e", sign, two
# exponent digits.
_DIGITS = 9
_NUMBER_SLOTS = 1 + 5 + 2 * _DIGITS + 1 + 4
# The scaling in `_significand` is off by a few units in the last place (2**-52) at most; a
# fraction this close to one half may be a tie or on the wrong side of one.
_TIE_MARGIN = 1e-13
ROW_END = "\x01"
# 10**k correctly rounded; float32 values need k up to 53 (1e-45 scaled to nine digits).
_POWERS = np.array([float(10**k) for k in range(64)])
# 10**k for k from -_OFFSET on (the negative ones a little off: `_TIE_MARGIN` allows for it).
_OFFSET = 64
_SIGNED_POWERS = np.array([10.0**k if k >= 0 else 1 / float(10**-k) for k in range(-64, 64)])
_CHAR = {c: np.uint8(ord(c)) for c in "-0.e+[],\x01"}


def format_float(value: float, double: bool = False) -> str:
    """One float as TF Serving writes it: `0.2`, `1.0`, `1e+06`, `0.333333343`, `NaN`.

    Args:
        value: the number.
        double: write it as a float64 (17 digits when `%g` loses it) rather than a float32.

    Returns:
        The JSON text of the number.
    """
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


def _scaled(a: np.ndarray, k: np.ndarray) -> np.ndarray:
    """`a * 10**k` correctly rounded when `|k| <= 22` (powers of ten exact up to 1e22)."""
    power = _POWERS[np.abs(k)]
    return np.where(k >= 0, a * power, a / power)


def _significand(a: np.ndarray, x: np.ndarray, digits: int):
    """`(m, x, sure)`: `a` rounded to `digits` significant digits is `m * 10**(x - digits + 1)`
    (`m` has exactly `digits` digits; `x` starts as a guess one off at most); `sure` is False
    where the rounding may be wrong (the scaling is exact to a few ulps only)."""
    high, low = 10.0**digits, 10.0 ** (digits - 1)
    for _ in range(3):
        s = a * _SIGNED_POWERS[digits - 1 - x + _OFFSET]
        m = np.rint(s)
        up, down = m >= high, m < low
        if not (up.any() or down.any()):
            break
        x = x + up - down
    sure = (np.abs(s - np.floor(s) - 0.5) > s * _TIE_MARGIN) & (m < high) & (m >= low)
    return m.astype(np.int32), x, sure


def _decimals(values: np.ndarray):
    """`(m9, x, digits, slow)` for float32 `values`: the nine-digit significand of the text
    (six-digit ones padded with zeros), its exponent, 6 or 9, and where to call the reference.

    The six-digit significand comes from the nine-digit one: rounding it at its last three
    digits rounds the value itself the same way, except where those digits are exactly 500
    (the value may lie on either side of that tie; the reference decides).
    """
    with np.errstate(invalid="ignore"):  # signalling NaNs
        wide = values.astype(np.float64)
    slow = ~np.isfinite(wide)
    a = np.abs(np.where(slow, 1.0, wide))
    zero = a == 0
    a[zero] = 1.0
    m9, x, sure = _significand(a, np.floor(np.log10(a)).astype(np.int64), 9)
    m6, dropped = np.divmod(m9, np.int32(1000))
    m6 += dropped > 500
    carry = m6 == 1_000_000  # 999999.5 rounds to 1e6: one digit more
    m6[carry] = 100_000
    x6 = x + carry
    k = x6 - 5
    exact = np.abs(k) <= 22  # then m6 * 10**k is the correctly rounded double, as float()
    six = (_scaled(m6.astype(np.float64), k).astype(np.float32) == np.abs(values)) | zero
    slow |= ~zero & ~(sure & exact & (dropped != 500))
    m9 = np.where(six, m6 * np.int32(1000), m9)
    x = np.where(six, x6, x)
    m9[zero], x[zero] = 0, 0
    return m9, x.astype(np.int8), np.where(six, 6, 9).astype(np.int8), slow


def _write_numbers(values: np.ndarray, rows: np.ndarray) -> None:
    """Writes the texts of float32 `values` into the slot matrix `rows` (`[_NUMBER_SLOTS, n]`),
    every slot: a character or a zero byte."""
    m9, x, digits, slow = _decimals(values)
    n = values.size
    fixed = (x >= -4) & (x < digits)
    whole = fixed & (x >= 0)
    scientific = ~fixed
    below_one = fixed & (x < 0)
    rows[0] = np.signbit(values) * _CHAR["-"]
    rows[1] = below_one * _CHAR["0"]
    rows[2] = below_one * _CHAR["."]
    for i in range(3):
        rows[3 + i] = (below_one & (i < -x - 1)) * _CHAR["0"]
    digit_chars = np.empty((_DIGITS, n), np.uint8)
    significant = np.zeros(n, np.int8)  # digits up to the last nonzero one
    rest = m9
    for j in range(_DIGITS - 1, -1, -1):
        rest, digit = np.divmod(rest, 10)
        digit_chars[j] = digit
        significant = np.maximum(significant, (digit != 0) * np.int8(j + 1))
    digit_chars += _CHAR["0"]
    point_at = np.where(whole, x, -1).astype(np.int8)  # the point follows this digit
    shown = np.maximum(significant, point_at + 1)  # digits written
    zero_at = np.where(significant <= point_at + 1, point_at, -1)  # nothing after the point
    for j in range(_DIGITS):
        rows[6 + 2 * j] = (j < shown) * digit_chars[j]
        point = point_at == j
        if j == 0:
            point |= scientific & (significant > 1)
        rows[7 + 2 * j] = point * _CHAR["."]
    rows[6 + 2 * _DIGITS] = (zero_at >= 0) * _CHAR["0"]  # no digit follows the point then
    exponent = np.abs(x).astype(np.uint8)
    rows[-4] = scientific * _CHAR["e"]
    rows[-3] = scientific * np.where(x < 0, _CHAR["-"], _CHAR["+"])
    rows[-2] = scientific * (exponent // 10 + _CHAR["0"])
    rows[-1] = scientific * (exponent % 10 + _CHAR["0"])
    where = np.flatnonzero(slow)
    if where.size:
        texts = [format_float(v).encode().ljust(_NUMBER_SLOTS, b"\0") for v in values[where]]
        rows[:, where] = np.frombuffer(b"".join(texts), np.uint8).reshape(-1, _NUMBER_SLOTS).T


def float32_rows(block: np.ndarray) -> list[str]:
    """The JSON text of each `block[i]` (nested lists of numbers; a number when 1-D).

    Args:
        block: a float32 array of rank >= 1 with no zero-length dimension.

    Returns:
        One text per row, exactly as `json_encode` writes it value by value.
    """
    return _rows_text(block, ROW_END).split(ROW_END)[:-1]


def float32_joined(block: np.ndarray) -> str:
    """The texts of `float32_rows(block)` joined by commas, written at once (no list of rows)."""
    return _rows_text(block, ",")[:-1]


def _rows_text(block: np.ndarray, row_end: str) -> str:
    """The text of every row of `block`, each followed by the character `row_end`."""
    if native is not None:
        values = np.ascontiguousarray(block, np.float32)
        return native.rows_text(values, tuple(values.shape[1:]), row_end)
    rest = block.shape[1:]
    depth, per_row = len(rest), int(np.prod(rest, dtype=np.int64))
    values = np.ascontiguousarray(block, np.float32).reshape(-1)
    position = np.arange(per_row)
    closing = np.zeros(per_row, np.int64)  # lists that end after each value of a row
    stride = 1
    for size in reversed(rest):
        stride *= size
        closing += (position + 1) % stride == 0
    closing = np.tile(closing, block.shape[0])
    first = np.tile(position == 0, block.shape[0])
    last = np.tile(position == per_row - 1, block.shape[0])
    slots = np.empty((3 * depth + _NUMBER_SLOTS + 1, values.size), np.uint8)  # all written
    for i in range(depth):
        slots[i] = first * _CHAR["["]
        slots[depth + _NUMBER_SLOTS + i] = (i < closing) * _CHAR["]"]
        slots[-1 - i] = (~last & (i < closing)) * _CHAR["["]
    _write_numbers(values, slots[depth : depth + _NUMBER_SLOTS])
    slots[2 * depth + _NUMBER_SLOTS] = np.where(last, np.uint8(ord(row_end)), _CHAR[","])
    return slots.T.tobytes().translate(None, b"\0").decode("ascii")
