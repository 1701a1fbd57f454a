"""TF Serving's JSON tensor codec and the server-side batcher, without a server."""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest

from genkeras.serving import json_decode, json_encode
from genkeras.serving.errors import ServingError


def error_of(fn, *args, **kwargs) -> ServingError:
    with pytest.raises(ServingError) as info:
        fn(*args, **kwargs)
    return info.value


# -- writing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, text",
    [
        (0.2, "0.2"),  # not 0.20000000298023224
        (1.0, "1.0"),
        (0.0, "0.0"),
        (-3.0, "-3.0"),
        (1e6, "1e+06"),  # %g style, as absl::StrCat writes it
        (3e-5, "3e-05"),
        (1 / 3, "0.333333343"),  # six digits don't round-trip: max_digits10
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
    ],
)
def test_float32_written_as_tf_serving_writes_it(value, text):
    assert json_encode.format_float(np.float32(value)) == text
    assert json_encode._format_floats(np.array([value], np.float32)) == [text]


def test_every_written_float_reads_back_as_the_same_float32():
    values = (
        np.random.default_rng(0).normal(size=2000).astype(np.float32)
        * 10.0 ** np.arange(-10, 10, 0.01)[:2000]
    )
    values = values.astype(np.float32)
    texts = json_encode._format_floats(values)
    assert np.array_equal(np.array([float(t) for t in texts], np.float32), values)


def test_single_output_is_unwrapped_and_several_are_named():
    one = {"y": np.array([[0.2, 1.0], [3.0, 4.5]], np.float32)}
    assert json_encode.make_json(one, json_encode.ROW) == '{"predictions": [[0.2,1.0], [3.0,4.5]]}'
    assert json.loads(json_encode.make_json(one, json_encode.COLUMNAR)) == {
        "outputs": [[0.2, 1.0], [3.0, 4.5]]
    }
    two = {"z": np.array([[1.0], [2.0]], np.float32), "images": np.array([0.5, 0.25], np.float32)}
    assert json.loads(json_encode.make_json(two, json_encode.ROW)) == {
        "predictions": [{"images": 0.5, "z": [1.0]}, {"images": 0.25, "z": [2.0]}]
    }
    assert json.loads(json_encode.make_json(two, json_encode.COLUMNAR)) == {
        "outputs": {"images": [0.5, 0.25], "z": [[1.0], [2.0]]}
    }


def test_nan_and_infinity_tokens_in_responses():
    text = json_encode.make_json(
        {"y": np.array([np.nan, np.inf, -np.inf], np.float32)}, json_encode.COLUMNAR
    )
    assert text == '{"outputs": [NaN,Infinity,-Infinity]}'


def test_row_format_refuses_scalar_and_inconsistent_batches():
    assert (
        "no shape information"
        in error_of(json_encode.make_json, {"y": np.float32(1)}, json_encode.ROW).message
    )
    outputs = {"a": np.zeros([2], np.float32), "b": np.zeros([3], np.float32)}
    assert (
        "inconsistent batch size"
        in error_of(json_encode.make_json, outputs, json_encode.ROW).message
    )
    assert json_encode.make_json({"y": np.float32(2)}, json_encode.COLUMNAR) == '{"outputs": 2.0}'


# -- reading ------------------------------------------------------------------------------------

ONE = {"x": "DT_FLOAT"}
TWO = {"images": "DT_FLOAT", "labels": "DT_INT32"}


def fill(body, dtypes, fast=True):
    return json_decode.fill_predict_inputs(json_decode.parse_json(body), dtypes, allow_fast=fast)


@pytest.mark.parametrize("fast", [True, False])
def test_row_and_columnar_give_the_same_tensor(fast):
    row, row_format = fill('{"instances": [[1.0, 2.0], [3.0, 4.0]]}', ONE, fast)
    col, col_format = fill('{"inputs": [[1.0, 2.0], [3.0, 4.0]]}', ONE, fast)
    assert (row_format, col_format) == (json_decode.ROW, json_decode.COLUMNAR)
    assert row["x"].dtype == np.float32 and row["x"].shape == (2, 2)
    assert np.array_equal(row["x"], col["x"])


def test_nan_and_infinity_tokens_accepted_in_requests():
    inputs, _ = fill('{"inputs": [NaN, Infinity, -Infinity, 1]}', ONE)
    assert np.isnan(inputs["x"][0]) and inputs["x"][1] == np.inf and inputs["x"][2] == -np.inf


@pytest.mark.parametrize("fast", [True, False])
def test_int32_refuses_decimals_and_floats_take_any_number(fast):
    """TF Serving's util/json_tensor.cc: int32 wants IsInt(); float and double inputs take
    any number as GetFloat() / GetDouble(): the nearest double, then float32 for float
    (api_rest.md: 1435774380 becomes 1435774336; 1435774380.0 reads the same)."""
    ints = {"n": "DT_INT32"}
    assert fill('{"inputs": [1, 2]}', ints, fast)[0]["n"].dtype == np.int32
    message = error_of(fill, '{"inputs": [1.0, 2]}', ints, fast).message
    assert "JSON Value: 1.0 Type: Number is not of expected type: int32" in message
    assert (
        "is not of expected type: int32"
        in error_of(fill, '{"inputs": 3000000000}', ints, fast).message
    )
    x = fill('{"inputs": [1435774380, 1435774380.0, 16777217, 16777216.5]}', ONE, fast)[0]["x"]
    assert x.dtype == np.float32 and x.tolist() == [1435774336, 1435774336, 16777216, 16777216]
    # int64 -> double -> float32, rounded twice as C++ does: 2**60 + 2**36 + 1 is first the
    # double 2**60 + 2**36, a float32 tie that rounds to even, 2**60 (not 2**60 + 2**37)
    assert fill(f'{{"inputs": [{2**60 + 2**36 + 1}]}}', ONE, fast)[0]["x"].tolist() == [2**60]
    huge = fill(f'{{"inputs": [{10**300}, 1e39, -1e39]}}', ONE, fast)[0]["x"]
    assert huge.tolist() == [np.inf, np.inf, -np.inf]  # static_cast<float> of a double
    double = {"x": "DT_DOUBLE"}
    assert fill(f'{{"inputs": [{2**53 + 1}, {10**300}]}}', double, fast)[0]["x"].tolist() == [
        2.0**53,
        1e300,
    ]
    too_big = error_of(fill, '{"inputs": [' + "9" * 309 + "]}", ONE, fast).message
    assert "Number too big to be stored in double" in too_big  # as rapidjson refuses it


def test_large_arrays_of_integers_for_float_inputs_read_alike_in_c_and_fallback(number_loops):
    """The arrays json_fast reads (over MIN_SPAN_BYTES) give what the exact walk gives."""
    from genkeras.serving import json_fast

    values = [1435774380, 16777217, 2**60 + 2**36 + 1, 3, -7, 0.5, 10**25, -1e39] * 300
    body = json.dumps({"inputs": values})
    assert isinstance(json_decode.parse_json(body)["inputs"], json_fast.NumericSpan)
    exact = json_decode.json_to_array(values, "DT_FLOAT", allow_fast=False)  # value by value
    assert np.array_equal(fill(body, ONE)[0]["x"], exact)
    assert exact[:8].tolist() == [
        1435774336,
        16777216,
        2**60,
        3,
        -7,
        0.5,
        np.float32(1e25),
        -np.inf,
    ]
    double = fill(body, {"x": "DT_DOUBLE"})[0]["x"]
    assert double[:8].tolist() == [1435774380, 16777217, 2**60 + 2**36, 3, -7, 0.5, 1e25, -1e39]


def test_bools_and_strings_are_not_floats():
    assert (
        "not of expected type: float"
        in error_of(fill, '{"inputs": [true, 1.0]}', ONE, False).message
    )
    assert "not of expected type: float" in error_of(fill, '{"instances": ["x", "y"]}', ONE).message


def test_row_format_needs_exactly_the_input_names():
    good = '{"instances": [{"images": [0.5], "labels": 1}, {"images": [0.25], "labels": 2}]}'
    inputs, _ = fill(good, TWO)
    assert inputs["images"].shape == (2, 1) and inputs["labels"].tolist() == [1, 2]
    extra = '{"instances": [{"images": [0.5], "labels": 1, "extra": 3}]}'
    assert "does not have named input: extra" in error_of(fill, extra, TWO).message
    missing = '{"instances": [{"images": [0.5]}]}'
    assert "must only have keys: images,labels" in error_of(fill, missing, TWO).message
    plain = '{"instances": [[0.5]]}'
    assert "expecting list of objects" in error_of(fill, plain, TWO).message


def test_columnar_format_ignores_extra_names_but_needs_every_input():
    inputs, _ = fill('{"inputs": {"images": [[0.5]], "labels": [1], "extra": "ignored"}}', TWO)
    assert set(inputs) == {"images", "labels"}
    assert (
        "Missing named input: labels"
        in error_of(fill, '{"inputs": {"images": [[0.5]]}}', TWO).message
    )
    assert "expecting an object" in error_of(fill, '{"inputs": [[0.5]]}', TWO).message


def test_row_format_instances_must_agree_in_shape():
    message = error_of(fill, '{"instances": [[1.0, 2.0], [3.0]]}', ONE).message
    assert "Expecting tensor size: 2 but got: 1" in message
    message = error_of(fill, '{"instances": [[[1.0, 2.0]], [[3.0], [4.0]]]}', ONE).message
    assert "Expecting shape [1,2] but got: [2,1]" in message


def test_ragged_lists_are_refused():
    message = error_of(fill, '{"inputs": [[1.0, 2.0], [3.0]]}', ONE).message
    assert "Encountered list at unexpected size" in message
    message = error_of(fill, '{"inputs": [[1.0], 2.0]}', ONE).message
    assert "found at incorrect level" in message


@pytest.mark.parametrize(
    "body, text",
    [
        ("", "JSON Parse error: The document is empty"),
        ("instances = [1, 2]", "JSON Parse error: Invalid value"),
        ("[1, 2]", "Is not object"),
        ('{"signature_name": 100}', "'signature_name' key must be a string value."),
        ('{"instances": [1], "inputs": [1]}', "expecting only one of 'inputs' or 'instances'"),
        ('{"instances": 1}', "Excepting 'instances' to be an list/array"),
        ('{"instances": []}', "No values in 'instances' array"),
        ('{"foo": []}', "Missing 'inputs' or 'instances' key"),
    ],
)
def test_malformed_requests(body, text):
    def run():
        doc = json_decode.parse_json(body)
        json_decode.signature_name_of(doc)
        json_decode.fill_predict_inputs(doc, ONE)

    error = error_of(run)
    assert error.code == "INVALID_ARGUMENT" and error.http_status == 400
    assert text in error.message


# -- batching -----------------------------------------------------------------------------------


def test_batcher_merges_concurrent_requests_and_splits_answers():
    from genkeras.serving.batching import Batcher
    from genkeras.serving.protos import BatchingParameters

    params = BatchingParameters()
    params.max_batch_size.value = 8
    params.batch_timeout_micros.value = 50_000
    params.allowed_batch_sizes.extend([4, 8])
    calls = []

    def fn(inputs):
        calls.append(len(inputs["x"]))
        return {"y": inputs["x"] * 2.0}

    batcher = Batcher(params)
    results, errors = {}, []

    def request(i):
        try:
            x = np.full([1 + i % 2, 3], float(i), np.float32)
            results[i] = (x, batcher.run("key", fn, {"x": x})["y"])
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=request, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors
    for x, y in results.values():
        assert np.array_equal(y, x * 2.0)
    assert len(calls) < 10 and all(size in (4, 8) for size in calls)
    too_big = error_of(batcher.run, "key", fn, {"x": np.zeros([9, 3], np.float32)})
    assert too_big.code == "INVALID_ARGUMENT"


# -- large numeric arrays (json_fast) -----------------------------------------------------------


def exact(monkeypatch, fn, *args):
    """`fn(*args)` with the numpy reader of large arrays turned off (the exact path only)."""
    from genkeras.serving import json_fast

    with monkeypatch.context() as patch:
        patch.setattr(json_fast, "MIN_SPAN_BYTES", 1 << 40)
        return fn(*args)


@pytest.mark.parametrize(
    "array, dtype, indent",
    [
        (np.random.default_rng(1).random((40, 28, 28, 1)).astype(np.float32), "DT_FLOAT", None),
        (np.random.default_rng(2).normal(size=(30000,)) * 1e-30, "DT_DOUBLE", None),
        (np.random.default_rng(3).random((50, 700)).astype(np.float32), "DT_FLOAT", 1),
        (np.random.default_rng(4).integers(-(2**31), 2**31, (200, 100)), "DT_INT32", None),
        (np.random.default_rng(5).integers(-(2**40), 2**40, (9000,)), "DT_INT64", None),
    ],
)
def test_large_arrays_read_by_numpy_equal_the_exact_path(monkeypatch, array, dtype, indent):
    values = array.tolist()
    for doc in (
        {"inputs": values},
        {"instances": values},
        {"instances": [{"x": row} for row in values]},  # an array per instance
        {"inputs": {"x": values, "extra": "ignored"}},
    ):
        body = json.dumps({"signature_name": "s", **doc}, indent=indent)
        assert len(body) > 40_000
        fast, _ = fill(body, {"x": dtype})
        slow, _ = exact(monkeypatch, fill, body, {"x": dtype})
        assert fast["x"].dtype == slow["x"].dtype and np.array_equal(fast["x"], slow["x"])


def big_rows(n=2000, width=8):
    return [[0.25] * width for _ in range(n)]


@pytest.mark.parametrize(
    "edit",
    [
        lambda rows: rows.__setitem__(7, rows[7][:-1]),  # one row too short
        lambda rows: rows.__setitem__(1999, [[0.5]] * 8),  # one row too deep
        lambda rows: rows[3].__setitem__(2, 10**309),  # an integer beyond a double
        lambda rows: rows[5].__setitem__(0, True),  # a bool among floats
        lambda rows: rows[9].__setitem__(0, "1"),  # a string among floats
    ],
)
def test_large_odd_arrays_give_the_exact_paths_answer(monkeypatch, edit):
    rows = big_rows()
    edit(rows)
    for key in ("inputs", "instances"):
        body = json.dumps({key: rows})
        fast = error_of(fill, body, ONE, False)
        slow = exact(monkeypatch, error_of, fill, body, ONE, False)
        assert (fast.code, fast.message) == (slow.code, slow.message)


@pytest.mark.parametrize(
    "text, message",
    [
        ("01", "JSON Parse error"),  # a leading zero
        ("1.", "JSON Parse error"),
        ("1e400", "Number too big to be stored in double"),
        ("-1e400", "Number too big to be stored in double"),
    ],
)
def test_large_arrays_with_a_bad_number_are_refused_like_small_ones(text, message):
    body = '{"inputs": [' + "0.5," * 20000 + text + "]}"
    error = error_of(fill, body, ONE)
    assert error.code == "INVALID_ARGUMENT" and message in error.message


def test_an_array_inside_a_string_stays_a_string():
    text = "[" + "1," * 30000 + "1]"
    doc = json_decode.parse_json(json.dumps({"signature_name": text, "inputs": [1.0]}))
    assert doc["signature_name"] == text


@pytest.mark.parametrize(
    "body, message",
    [
        ('{"inputs": [' + "9" * 5000 + "]}", "Number too big to be stored in double"),
        ('{"inputs": [' + "9" * 400 + "]}", "Number too big to be stored in double"),
        ('{"inputs": [1e400]}', "Number too big to be stored in double"),
        ('{"signature_name": "\\ud800", "inputs": [1]}', "surrogate"),
        ('{"inputs": ' + "[" * 900 + "1" + "]" * 900 + "}", "at most 32 dimensions"),
        ('{"inputs": ' + "[" * 50000 + "]" * 50000 + "}", "nested too deeply"),
    ],
)
def test_what_rapidjson_refuses_is_refused_with_a_clear_reason(body, message):
    error = error_of(fill, body, ONE)
    assert error.code == "INVALID_ARGUMENT" and message in error.message


def test_a_tensor_over_the_element_limit_is_refused_before_it_is_built():
    body = json.dumps({"inputs": big_rows(5000)})  # 40,000 values, read by numpy
    message = error_of(
        json_decode.fill_predict_inputs, json_decode.parse_json(body), ONE, True, 39_999
    ).message
    assert "has 40000 elements, more than the limit of 39999 (--max_tensor_elements)" in message
    body = json.dumps({"instances": [{"x": [0.5] * 10}] * 10})  # the exact path, row format
    message = error_of(
        json_decode.fill_predict_inputs, json_decode.parse_json(body), ONE, True, 99
    ).message
    assert "has 100 elements" in message


def test_error_previews_stay_short_for_huge_values():
    body = json.dumps({"instances": 5, "pad": [[0.5] * 100] * 2000})
    message = error_of(fill, body, ONE).message
    assert "Excepting 'instances' to be an list/array" in message and len(message) < 400


# -- whole arrays at numpy speed (json_numbers, orjson in json_fast, the client) ----------------


def native_or_skip():
    """The C number loops, or a skip where the install found no C compiler."""
    from genkeras.serving import json_fast

    if json_fast.native is None:
        pytest.skip("genkeras.serving._json_numbers was not built (no C compiler)")
    return json_fast.native


@pytest.fixture(params=["C", "fallback"])
def number_loops(request, monkeypatch):
    """Each way of writing and reading numbers in turn: the C loops (when built), then their
    fallback (numpy writes answers, orjson reads arrays)."""
    from genkeras.serving import json_fast, json_numbers

    if request.param == "fallback":
        monkeypatch.setattr(json_numbers, "native", None)
        monkeypatch.setattr(json_fast, "native", None)
    else:
        native_or_skip()
    return request.param


def test_number_loopss_match_the_reference_value_by_value(number_loops):
    from genkeras.serving import json_numbers

    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    with np.errstate(all="ignore"):
        spread = (rng.random(50_000) * 10.0 ** rng.integers(-46, 39, 50_000)).astype(np.float32)
    short = np.round(rng.random(20_000) * 1000, 2).astype(np.float32)
    whole = rng.integers(-(2**25), 2**25, 20_000).astype(np.float32)
    special = np.array(
        [0.0, -0.0, np.inf, -np.inf, np.nan, 1e6, 999999.5, 9999995, 1234565, 123456792]
        + [16777216, 3.4028235e38, -3.4028235e38, 1e-45, 1.1754944e-38, 0.1, 0.5, 100, 1e-4]
        + [1e-5, 12345.65, 0.0001234565, 9.9999997e-5, 1e17, 1e-17, 1e28, 1e-18],
        np.float32,
    )
    for values in (bits, spread, -spread, short, whole, special):
        reference = [json_encode.format_float(v) for v in values.tolist()]
        assert json_numbers.float32_rows(values) == reference


def test_the_c_writer_is_built_where_a_compiler_is():
    from genkeras.serving import json_numbers

    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler here: the numpy writer serves")
    assert json_numbers.native is not None, "pip install -e . did not build _json_numbers.c"


def test_the_c_writer_refuses_what_it_cannot_write():
    rows_text = native_or_skip().rows_text
    assert rows_text(np.array([[0.5, 2.0]], np.float32), (2,), ";") == "[0.5,2.0];"
    with pytest.raises(TypeError, match="float32 buffer"):
        rows_text(np.zeros(4), (2,), ";")
    with pytest.raises(ValueError, match="whole rows"):
        rows_text(np.zeros(5, np.float32), (2,), ";")
    with pytest.raises(ValueError, match="positive sizes"):
        rows_text(np.zeros(4, np.float32), (2, 0), ";")
    with pytest.raises(ValueError, match="32 dimensions"):
        rows_text(np.zeros(1, np.float32), (1,) * 33, ";")
    with pytest.raises(ValueError, match="ASCII"):
        rows_text(np.zeros(1, np.float32), (), "é")


@pytest.mark.parametrize("shape", [(3,), (2, 5), (4, 3, 2, 1), (1, 1, 1), (3000, 28)])
def test_number_loopss_nest_rows_as_the_reference(shape, number_loops):
    values = np.random.default_rng(8).normal(size=shape).astype(np.float32)
    values.flat[::7] = 0.0
    expected = [
        json_encode._nest([json_encode.format_float(v) for v in row.ravel().tolist()], row.shape)
        for row in values
    ]
    assert list(json_encode._row_texts("y", values)) == expected
    columnar = json_encode.make_json({"y": values}, json_encode.COLUMNAR)
    assert columnar == '{"outputs": [' + ",".join(expected) + "]}"
    half = json_encode.make_json({"y": values.astype(np.float16)}, json_encode.COLUMNAR)
    assert half == json_encode.make_json(
        {"y": values.astype(np.float16).astype(np.float32)}, json_encode.COLUMNAR
    )


def test_the_c_reader_reads_numbers_as_float_does():
    read_numbers = native_or_skip().read_numbers
    rng = np.random.default_rng(11)
    values = rng.random(20_000) * 10.0 ** rng.integers(-30, 30, 20_000)
    values[::3] *= -1
    values = values.tolist()
    for form in ("{:.9g}", "{:g}", "{!r}", "{:.3e}", "{:.12f}", "{:.0f}", "{:.19g}"):
        texts = [form.format(v) for v in values]
        read = read_numbers(("[" + ",".join(texts) + "]").encode())
        expected = np.array([float(t) for t in texts])
        if read is None:  # some number needed the slow path: one at a time, each must agree
            one_by_one = [read_numbers(f"[{t}]".encode()) for t in texts]
            read = b"".join(value for value in one_by_one if value is not None)
            expected = expected[[value is not None for value in one_by_one]]
        assert bytes(read) == expected.tobytes(), form


def test_the_c_scan_finds_what_the_numpy_scan_finds(monkeypatch):
    from genkeras.serving import json_fast

    native_or_skip()
    rng = np.random.default_rng(12)
    monkeypatch.setattr(json_fast, "PIECE_BYTES", 16)
    for _ in range(300):
        chars = rng.choice(list(b"[],0 "), rng.integers(1, 200), p=[0.3, 0.25, 0.2, 0.2, 0.05])
        body = b"[" + bytes(chars)
        stop = int(rng.integers(1, len(body) + 1))
        fast = json_fast._scan(body, 0, stop)
        with monkeypatch.context() as patch:
            patch.setattr(json_fast, "native", None)
            assert fast == json_fast._scan(body, 0, stop), body
    with pytest.raises(ValueError, match="out of range"):
        json_fast.native.scan_array(b"[1]", 0, 4, 16)


def grammar_path(monkeypatch, fn, *args):
    """`fn(*args)` with large arrays checked by the grammar and read by `np.fromstring` (no
    orjson): what `json_fast` accepted and read before orjson read its arrays."""
    from genkeras.serving import json_fast

    with monkeypatch.context() as patch:
        patch.setattr(json_fast, "_fast_read", lambda *args: None)
        return fn(*args)


def outcome(*args):
    """The tensor as bytes (so -0.0 differs from 0.0), or the error's code and message."""
    try:
        tensors, _ = fill(*args)
    except ServingError as error:
        return error.code, error.message
    return tensors["x"].dtype, tensors["x"].shape, tensors["x"].tobytes()


@pytest.mark.parametrize(
    "number",
    ["-0", "-0.0", "-0e0", "1E5", "1e+05", "1e0001", "0.5e-3", "16777215", "16777217"]
    + ["9007199254740993", "123456789012345678901234567890", "1e-400", "4.9e-324", "1e400"]
    + ["2.2250738585072011e-308", "0.30000000000000004", "01", "1.", ".5", "+1", "1e", "-"]
    + ["0.123456789", "1.23456789e-05", "9007199254740992", "1e22", "1e23", "0e999", "-0e5"]
    + ["1.0000000000000000000001", "12345678901234567890", "0.000", "1e-22", "3.0e-23"],
)
def test_numbers_read_fast_equal_the_grammar_paths(monkeypatch, number, number_loops):
    body = '{"inputs": [' + "0.5," * 3000 + number + "]}"
    for dtype in ("DT_FLOAT", "DT_DOUBLE", "DT_INT64"):
        fast = outcome(body, {"x": dtype})
        assert fast == grammar_path(monkeypatch, outcome, body, {"x": dtype})


@pytest.mark.parametrize(
    "odd",
    ["[]", "[[]]", "[0.5 0.5]", "[0.5,0.5]0.5", "[[0.5,0.5]]", "[0.5,]", "[,0.5]", "[0.5]"]
    + ["[0.5,0.5][0.5,0.5]", "[0.5,0.5]]", "[[0.5,0.5]", "0.5", "[0.5,[0.5]]", "[0.5,0.5,0.5]"]
    + ["[ 0.5 , 0.5 ]", "[\t0.5,\n0.5\r]", "[0.5,0.5] ", "[0.5,-0.5e-5]", "[1,2]", "[]0.5"],
)
def test_arrays_read_fast_equal_the_grammar_paths(monkeypatch, odd, number_loops):
    for rows in ("[0.5,0.5]," * 3000 + odd, odd + ",[0.5,0.5]" * 3000):
        for key in ("inputs", "instances"):
            body = f'{{"{key}": [{rows}]}}'
            for dtype in ("DT_FLOAT", "DT_INT32"):
                fast = outcome(body, {"x": dtype})
                assert fast == grammar_path(monkeypatch, outcome, body, {"x": dtype})


def test_the_client_sends_floats_that_read_back_as_the_same_float32():
    from genkeras.serving import client

    rng = np.random.default_rng(9)
    values = rng.integers(0, 2**32, 6000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    values = values[np.isfinite(values)][:5000].reshape(-1, 2)
    text = client._json_value(values)
    assert np.asarray(json.loads(text), np.float32).tobytes() == values.tobytes()
    wide = rng.normal(size=(40, 3))
    assert client._json_value(wide) == client._json_value(wide.astype(np.float32))
    assert client._json_value(np.arange(6).reshape(2, 3)) == "[[0, 1, 2], [3, 4, 5]]"


@pytest.mark.parametrize("dtype", ["DT_FLOAT", "DT_DOUBLE", "DT_INT64", "DT_HALF", None])
def test_the_client_reads_answers_as_json_loads_does(dtype, number_loops):
    from genkeras.serving import client, json_fast

    rng = np.random.default_rng(10)
    arrays = [rng.normal(size=(64, 28, 28, 1)).astype(np.float32)]
    arrays.append(np.where(arrays[0] > 2, np.nan, arrays[0]))  # NaN: json.loads reads it
    arrays.append(rng.integers(-1000, 1000, (64, 300)))
    for array in arrays[2:] if dtype == "DT_INT64" else arrays:
        body = json_encode.make_json({"y": array}, json_encode.COLUMNAR).encode()
        reference = np.asarray(
            json.loads(body)["outputs"], client._REST_READ.get(dtype, np.float32)
        )
        read = client._output_array(json_fast.loads(body)["outputs"], dtype)
        assert read.dtype == reference.dtype and read.tobytes() == reference.tobytes()
