"""Round trips and decoder robustness of the safe data format."""

from __future__ import annotations

import collections
import datetime as dt
import json
import math
import pickle
import random
import struct
import zoneinfo
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from giskard.codec import MAGIC, decode, encode, encode_to_bytes, is_encoded
from giskard.errors import DecodingError, EncodingError

# --- helpers -------------------------------------------------------------------------------------


def roundtrip(value: object) -> object:
    """Decode the encoding from bytes and from a bytearray; both must agree in type."""
    data = encode_to_bytes(value)
    assert data == b"".join(encode(value))
    from_bytes, from_bytearray = decode(data), decode(bytearray(data))
    assert type(from_bytes) is type(from_bytearray)
    return from_bytes


def assert_same(actual: object, expected: object) -> None:
    """Equality that also checks types and treats nan as equal to nan."""
    if isinstance(expected, tuple):
        expected = list(expected)
    assert type(actual) is type(expected), (actual, expected)
    if isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(actual)
    elif isinstance(expected, list):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected, strict=True):
            assert_same(a, e)
    elif isinstance(expected, dict):
        assert list(actual) == list(expected)
        for key in expected:
            assert_same(actual[key], expected[key])
    else:
        assert actual == expected
        if isinstance(expected, float):
            assert math.copysign(1, actual) == math.copysign(1, expected)


def assert_array_same(actual: np.ndarray, expected: np.ndarray) -> None:
    assert isinstance(actual, np.ndarray)
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(actual, expected)


def raw(header: object, body: bytes = b"", *, text: bytes | None = None) -> bytes:
    """Hand-built encoding: a header (JSON-dumped unless ``text`` is given) and a body."""
    if text is None:
        text = json.dumps(header).encode()
    padding = -(12 + len(text)) % 64
    return MAGIC + struct.pack("<I", len(text)) + text + bytes(padding) + body


def header_of(data: bytes) -> dict:
    (length,) = struct.unpack_from("<I", data, 8)
    return json.loads(data[12 : 12 + length])


def with_header(data: bytes, header: dict) -> bytes:
    """``data`` with its header replaced (the body is kept)."""
    (length,) = struct.unpack_from("<I", data, 8)
    body = data[12 + length + -(12 + length) % 64 :]
    return raw(header, body)


def nd_header(dtype: str, shape: list, length: int, **extra: object) -> dict:
    node = {"k": "nd", "dtype": dtype, "shape": shape, "buf": 0, **extra}
    return {"v": 1, "size": length, "buffers": [[0, length]], "root": node}


def iris() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    names = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
    frame = pd.DataFrame(rng.uniform(0.1, 8.0, size=(150, 4)).round(1), columns=names)
    frame["species"] = np.repeat(["setosa", "versicolor", "virginica"], 50)
    frame["target"] = np.repeat(np.arange(3), 50)
    return frame


def breast_cancer() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    names = [f"{stat} {feature}" for stat in ("mean", "error", "worst") for feature in "abcdefghij"]
    frame = pd.DataFrame(rng.normal(10, 3, size=(569, 30)), columns=names)
    frame["target"] = rng.integers(0, 2, size=569)
    return frame


# --- plain values --------------------------------------------------------------------------------

PLAIN = [
    None,
    True,
    False,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    1.5,
    -0.0,
    1e308,
    math.nan,
    math.inf,
    -math.inf,
    "",
    "héllo ✓ 日本",
    "lone \ud800 surrogate",
    [],
    {},
    (1, "a"),
    [1, [2, [3, [None, {"x": math.nan}]]]],
    {"a": 1, "b": [1.0, "2", None], "c": {"d": (True, -math.inf)}, "": {}},
]


@pytest.mark.parametrize("value", PLAIN, ids=repr)
def test_plain_values_round_trip(value: object) -> None:
    assert_same(roundtrip(value), value)


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, [1, 10**30]])
def test_ints_outside_int64_are_rejected(value: object) -> None:
    with pytest.raises(EncodingError, match="int64"):
        encode(value)


@pytest.mark.parametrize(
    "scalar",
    [
        np.float64(1.0),
        np.float32(-2.5),
        np.int64(7),
        np.int8(-3),
        np.uint64(2**64 - 1),
        np.bool_(True),
        np.complex128(1 + 2j),
        np.datetime64("2020-01-02T03:04", "s"),
        np.timedelta64(5, "ms"),
        np.str_("abc"),
        np.bytes_(b"xy"),
    ],
    ids=repr,
)
def test_numpy_scalars_round_trip(scalar: np.generic) -> None:
    out = roundtrip(scalar)
    assert type(out) is type(scalar)
    assert out == scalar


def test_nested_containers_reach_the_depth_limit_cleanly() -> None:
    value: list = []
    for _ in range(31):
        value = [value]
    assert roundtrip(value) == value
    with pytest.raises(EncodingError, match="deeper than 32"):
        encode([value])


def test_self_referencing_list_is_rejected() -> None:
    value: list = []
    value.append(value)
    with pytest.raises(EncodingError, match="deeper"):
        encode(value)


# --- numpy arrays --------------------------------------------------------------------------------

DTYPES = [
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
    "datetime64[ns]",
    "datetime64[D]",
    "datetime64[s]",
    "datetime64",
    "timedelta64[ms]",
    "timedelta64[ns]",
    "<U5",
    "S3",
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (5,), (2, 3), (0, 4), (2, 0, 3)])
def test_arrays_round_trip(dtype: str, shape: tuple) -> None:
    array = np.arange(math.prod(shape)).reshape(shape).astype(dtype)
    assert_array_same(roundtrip(array), array)


def test_array_values_are_exact() -> None:
    floats = np.array([0.1, -0.0, np.nan, np.inf, -np.inf, 1e-310])
    np.testing.assert_array_equal(roundtrip(floats), floats)
    dates = np.array(["2020-01-01T00:00:00.123456789", "NaT"], dtype="datetime64[ns]")
    np.testing.assert_array_equal(roundtrip(dates), dates)
    texts = np.array(["", "é", "日本語", "abcde"])
    assert_array_same(roundtrip(texts), texts)


@pytest.mark.parametrize(
    "array",
    [
        np.arange(20.0)[::3],
        np.arange(12).reshape(3, 4).T,
        np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        np.arange(5, dtype=">i4"),
        np.arange(5, dtype=">f8").reshape(5, 1)[::2],
        np.array(["a", "bc"], dtype=">U2"),
    ],
)
def test_non_contiguous_and_big_endian_arrays(array: np.ndarray) -> None:
    out = roundtrip(array)
    assert out.dtype.byteorder in "<|="
    assert out.dtype == array.dtype.newbyteorder("<")
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize(
    "array",
    [
        np.array(["a", None, "ccc", "", "日本"], dtype=object),
        np.array([["x", None], [np.nan, pd.NA]], dtype=object),
        np.array("lonely", dtype=object),
        np.array([], dtype=object),
    ],
    ids=["1d", "2d-missing", "0d", "empty"],
)
def test_object_arrays_of_strings(array: np.ndarray) -> None:
    out = roundtrip(array)
    assert out.dtype == object
    assert out.shape == array.shape
    for a, e in zip(out.ravel().tolist(), array.ravel().tolist(), strict=True):
        assert type(a) is type(e)
        assert a is e or a == e or (isinstance(e, float) and math.isnan(a))


@pytest.mark.parametrize(
    ("array", "kind"),
    [
        (np.array([1, 2], dtype=object), "int"),
        (np.array(["a", 1.5], dtype=object), "float"),
        (np.array(["a", True], dtype=object), "bool"),
        (np.array([b"x"], dtype=object), "bytes"),
    ],
)
def test_object_arrays_of_other_objects_are_rejected(array: np.ndarray, kind: str) -> None:
    with pytest.raises(EncodingError, match=f"objects of type {kind}"):
        encode(array)


@pytest.mark.parametrize(
    "array",
    [
        np.zeros(2, dtype=np.longdouble),
        np.zeros(2, dtype=[("a", "i4")]),
        np.zeros(2, dtype="V4"),
        np.zeros(2, dtype="datetime64[10ms]"),
        np.ma.masked_array([1, 2], mask=[0, 1]),
    ],
    ids=["longdouble", "structured", "void", "multiple-unit", "masked"],
)
def test_unsupported_arrays_are_rejected(array: np.ndarray) -> None:
    with pytest.raises(EncodingError, match="cannot be sent as data"):
        encode(array)


# --- pandas --------------------------------------------------------------------------------------


def series_cases() -> list[pd.Series]:
    numbers = [1, 0, 3]
    cases = [pd.Series(numbers, dtype=dtype) for dtype in DTYPES[:14] if dtype != "float16"]
    cases += [pd.Series(np.array(numbers, dtype="float16"))]
    cases += [
        pd.Series(
            pd.to_datetime(["2020-01-01", None, "2021-06-30 12:00:00"], format="ISO8601").as_unit(
                unit
            )
        )
        for unit in ("s", "ms", "us", "ns")
    ]
    cases += [
        pd.Series(pd.to_timedelta(["1s", None, "3D"])),
        pd.Series(["a", None, "日本"], dtype=object),
        pd.Series(["a", np.nan, "b"], dtype=object),
        pd.Series(["a", None, "b"]),
        pd.Series(["a", None, "b"], dtype="str"),
        pd.Series(["a", None, "b"], dtype="string"),
        pd.Series(["a", "b", None], dtype="category"),
        pd.Series(pd.Categorical([3, 1, None], categories=[3, 2, 1], ordered=True)),
        pd.Series(pd.Categorical(pd.to_datetime(["2020-01-01", None, "2020-01-01"]))),
        pd.Series(pd.Categorical(["x", "x", "y"], categories=pd.Index(["x", "y"], dtype=object))),
        pd.Series(pd.date_range("2020-03-29", periods=3, freq="h", tz="Europe/Paris")),
        pd.Series(pd.date_range("2020", periods=3, tz="UTC", unit="ns")),
        pd.Series(pd.date_range("2020", periods=3, tz=zoneinfo.ZoneInfo("Asia/Kolkata"))),
        pd.Series(pd.date_range("2020", periods=3, tz=dt.timezone(dt.timedelta(hours=-5)))),
        pd.Series([pd.NaT, pd.Timestamp("2020", tz="UTC"), pd.NaT]),
    ]
    nullable = ["Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64"]
    cases += [pd.Series([1, None, 3], dtype=dtype) for dtype in nullable]
    cases += [pd.Series([1.5, None, np.nan], dtype=dtype) for dtype in ("Float32", "Float64")]
    cases += [pd.Series([True, None, False], dtype="boolean")]
    return cases


@pytest.mark.parametrize("series", series_cases(), ids=lambda s: str(s.dtype))
def test_series_of_every_dtype_round_trip(series: pd.Series) -> None:
    pd.testing.assert_series_equal(roundtrip(series), series)
    named = series.rename("name ✓")
    pd.testing.assert_series_equal(roundtrip(named), named)
    pd.testing.assert_series_equal(roundtrip(series.iloc[:0]), series.iloc[:0])


def test_frame_of_every_dtype_round_trips() -> None:
    frame = pd.concat([s.rename(f"c{i}") for i, s in enumerate(series_cases())], axis=1)
    out = roundtrip(frame)
    pd.testing.assert_frame_equal(out, frame)
    pd.testing.assert_frame_equal(roundtrip(frame.iloc[:0]), frame.iloc[:0])
    pd.testing.assert_frame_equal(roundtrip(frame.iloc[::-2]), frame.iloc[::-2])


@pytest.mark.parametrize("make", [iris, breast_cancer])
def test_dataset_frames_round_trip(make: object) -> None:
    frame = make()
    pd.testing.assert_frame_equal(roundtrip(frame), frame)
    values = frame.select_dtypes("number")
    pd.testing.assert_frame_equal(roundtrip(values), values)
    predictions = pd.Series(frame["target"].to_numpy(), name="prediction")
    pd.testing.assert_series_equal(roundtrip(predictions), predictions)
    result = {"metrics": {"accuracy": 0.93}, "frame": frame.head(), "probas": values.to_numpy()[:5]}
    out = roundtrip(result)
    pd.testing.assert_frame_equal(out["frame"], result["frame"])
    assert out["metrics"] == result["metrics"]


def test_string_labels_from_a_classifier() -> None:
    labels = np.array(["setosa", "virginica", None], dtype=object)
    assert_array_same(roundtrip(labels), labels)


@pytest.mark.parametrize(
    "frame",
    [
        pd.DataFrame(),
        pd.DataFrame(index=pd.RangeIndex(5)),
        pd.DataFrame(index=pd.Index(["a", "b"], name="key")),
        pd.DataFrame(columns=["a", "b"]),
        pd.DataFrame({"a": pd.Series([], dtype="float64"), "b": pd.Series([], dtype="str")}),
        pd.DataFrame({"a": pd.Series([], dtype="Int64"), "b": pd.Series([], dtype="category")}),
    ],
    ids=["empty", "rows-only", "named-index-only", "columns-only", "0-rows", "0-rows-ext"],
)
def test_empty_frames(frame: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(roundtrip(frame), frame)


@pytest.mark.parametrize(
    "columns",
    [
        ["é", "日本語", "🙂", ""],
        [0, 1, 2, 3],
        pd.RangeIndex(10, 18, 2),
        ["a", 1, "b", 2],
        ["a", "a", "b", "a"],
        pd.Index(["x", "y", "z", "w"], name="features"),
        pd.Index(["x", "y", "z", "w"], dtype=object),
        pd.Index(["x", "y", "z", "w"], dtype="string"),
    ],
    ids=["unicode", "int", "range", "mixed", "duplicates", "named", "object", "string"],
)
def test_column_labels(columns: list) -> None:
    frame = pd.DataFrame({"f": [1.0, 2.0], "s": ["u", "v"], "i": [1, 2], "g": [3.0, 4.0]}).set_axis(
        columns, axis=1
    )
    pd.testing.assert_frame_equal(roundtrip(frame), frame)


@pytest.mark.parametrize(
    "index",
    [
        pd.RangeIndex(3),
        pd.RangeIndex(10, -5, -5, name="r"),
        pd.Index([10, 5, 10]),
        pd.Index([0.5, np.nan, 2.0], name=7),
        pd.Index(["a", "b", None]),
        pd.Index(["a", "b", "c"], dtype=object),
        pd.date_range("2020", periods=3, freq="D", name="day"),
        pd.date_range("2020", periods=3, freq="2h", tz="America/New_York"),
        pd.to_datetime(["2020-01-03", "2020-01-01", None]),
        pd.timedelta_range("1s", periods=3, freq="s"),
        pd.CategoricalIndex(["b", "a", "b"]),
        pd.Index([1, None, 3], dtype="Int64"),
        pd.Index([True, False, True]),
    ],
    ids=lambda index: type(index).__name__ + str(index.dtype),
)
def test_index_kinds(index: pd.Index) -> None:
    series = pd.Series([1.0, 2.0, 3.0], index=index, name="s")
    pd.testing.assert_series_equal(roundtrip(series), series)
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}, index=index)
    pd.testing.assert_frame_equal(roundtrip(frame), frame)
    pd.testing.assert_index_equal(roundtrip(index), index, exact=True)


def test_series_names() -> None:
    for name in (None, "n", 3, np.int64(4), ""):
        series = pd.Series([1, 2], name=name)
        pd.testing.assert_series_equal(roundtrip(series), series)


class Foo:
    pass


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (Foo(), "value is of type Foo"),
        ({1, 2}, "value is of type set"),
        ({"a": [1, Foo()]}, r"value\['a'\]\[1\] is of type Foo"),
        ({1: "a"}, "dict key 1 of type int"),
        (pd.DataFrame({"x": [Foo()]}), "column 'x' holds objects of type Foo"),
        (pd.DataFrame({"x": ["a", 1]}), "column 'x' holds objects of type int"),
        ({"df": pd.DataFrame({"x": [Foo()]})}, r"column 'x' of value\['df'\] holds"),
        (pd.Series([1, 2], index=pd.MultiIndex.from_tuples([(1, 2), (3, 4)])), "MultiIndex"),
        (pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([(1, 2), (3, 4)])), "Multi"),
        (pd.DataFrame({"p": pd.period_range("2020", periods=2)}), "'p' has dtype period"),
        (pd.DataFrame({"s": pd.arrays.SparseArray([0, 1])}), "has dtype Sparse"),
        (pd.Series(pd.interval_range(0, 2)), "has dtype interval"),
        (pd.DataFrame({1.5: [1]}), "column labels have dtype float64"),
        (pd.DataFrame({"a": [1]}, index=pd.Index([Foo()])), "index holds objects of type Foo"),
        (pd.Series([1], name=("a", "b")), "name .* of type tuple"),
        (pd.Timestamp("2020"), "of type Timestamp"),
        (dt.date(2020, 1, 1), "of type date"),
        (b"bytes", "of type bytes"),
        (1 + 2j, "of type complex"),
    ],
    ids=lambda value: type(value).__name__,
)
def test_unsupported_values_are_rejected_with_a_clear_message(value: object, message: str) -> None:
    with pytest.raises(EncodingError, match=message) as info:
        encode(value)
    assert "cannot be sent as data" in str(info.value)
    assert "\n" not in str(info.value)


# --- zero copy -----------------------------------------------------------------------------------


def test_encoding_a_large_array_does_not_copy_it() -> None:
    array = np.random.default_rng(0).random(1_000_000)
    frames = encode(array)
    views = [frame for frame in frames if isinstance(frame, memoryview)]
    assert any(np.shares_memory(np.frombuffer(view, np.uint8), array) for view in views)


def test_encoding_a_frame_built_from_a_2d_block_does_not_copy_it() -> None:
    frame = pd.DataFrame(np.random.default_rng(0).random((100_000, 30)))
    block = frame.to_numpy()
    frames = encode(frame)
    assert any(np.shares_memory(np.frombuffer(f, np.uint8), block) for f in frames[1:])


def test_decoding_a_bytearray_gives_writable_views_into_it() -> None:
    array = np.arange(100_000, dtype=np.float64)
    buffer = bytearray(encode_to_bytes(array))
    out = decode(buffer)
    assert out.flags.writeable
    assert np.shares_memory(out, np.frombuffer(buffer, np.uint8))
    out[0] = 42.0
    assert decode(buffer)[0] == 42.0
    buffer = bytearray(encode_to_bytes(pd.DataFrame({"a": array, "b": -array})))
    frame = decode(buffer)
    assert np.shares_memory(frame.to_numpy(), np.frombuffer(buffer, np.uint8))


def test_decoding_bytes_gives_read_only_views() -> None:
    data = encode_to_bytes(np.arange(10.0))
    assert not decode(data).flags.writeable
    assert np.array_equal(decode(memoryview(data)), np.arange(10.0))


def test_buffers_are_aligned_in_the_body() -> None:
    value = {"a": np.arange(3, dtype=np.int8), "b": np.arange(5.0), "c": ["x", np.array(["y"])]}
    data = encode_to_bytes(value)
    header = header_of(data)
    body_start = len(data) - header["size"]
    assert body_start % 64 == 0
    assert all(offset % 64 == 0 for offset, _ in header["buffers"])


def test_is_encoded() -> None:
    assert is_encoded(encode_to_bytes(None))
    assert is_encoded(bytearray(encode_to_bytes([1])))
    assert not is_encoded(b"")
    assert not is_encoded(pickle.dumps([1]))
    assert not is_encoded("not bytes")  # type: ignore[arg-type]


# --- decoder robustness --------------------------------------------------------------------------


class CreatesFile:
    """Unpickling this would create a file: the decoder must never get that far."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple:
        return (open, (self.path, "w"))


def test_pickles_are_refused_without_running_them(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    payload = pickle.dumps(CreatesFile(target))
    for data in (payload, MAGIC + payload, payload + encode_to_bytes(None)):
        with pytest.raises(DecodingError):
            decode(data)
    assert not target.exists()


def small_payload() -> bytes:
    frame = pd.DataFrame(
        {
            "f": [1.5, np.nan],
            "s": ["a", None],
            "c": pd.Categorical(["x", "y"]),
            "n": pd.array([1, None], dtype="Int8"),
            "t": pd.date_range("2020", periods=2, tz="UTC"),
        },
        index=pd.Index(["r1", "r2"], name="row"),
    )
    return encode_to_bytes({"frame": frame, "labels": np.array(["u", None], dtype=object)})


def test_every_truncation_is_refused() -> None:
    data = small_payload()
    decode(data)
    for length in range(len(data)):
        with pytest.raises(DecodingError):
            decode(data[:length])
    with pytest.raises(DecodingError, match="body is"):
        decode(data + b"\0")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (b"GKDATA1", "too short"),
        (b"PK\x03\x04" + bytes(60), "wrong magic"),
        (b"GKDATA9\0" + bytes(60), "version b'9'"),
        (MAGIC + struct.pack("<I", 2**32 - 1), "truncated"),
        (raw(None, text=b"\xff\xfe"), "header is not UTF-8 JSON"),
        (raw(None, text=b"{"), "header is not UTF-8 JSON"),
        (raw(None, text=b'{"v": NaN}'), "header is not UTF-8 JSON: non-JSON constant NaN"),
        (raw(None, text=b"[" * 100_000 + b"]" * 100_000), "header is not UTF-8 JSON"),
        (raw([1, 2]), "not a JSON object"),
        (raw("root"), "not a JSON object"),
        (raw({"v": 2, "size": 0, "buffers": [], "root": None}), "version 2"),
        (raw({"v": True, "size": 0, "buffers": [], "root": None}), "'v'"),
        (raw({"v": 1, "size": 0, "buffers": []}), "no root"),
        (raw({"v": 1, "size": 8, "buffers": [], "root": None}), "body is 0 bytes"),
        (raw({"v": 1, "size": 0, "buffers": {}, "root": None}), "'buffers'"),
        (raw({"v": 1, "size": 0, "buffers": [[0]], "root": None}), "not .offset, length"),
        (raw({"v": 1, "size": 0, "buffers": [[0, 1.5]], "root": None}), "not .offset, length"),
        (raw({"v": 1, "size": 8, "buffers": [[0, 16]], "root": 1}, bytes(8)), "out of range"),
        (raw({"v": 1, "size": 8, "buffers": [[-64, 8]], "root": 1}, bytes(8)), "out of range"),
        (raw({"v": 1, "size": 80, "buffers": [[8, 8]], "root": 1}, bytes(80)), "misaligned"),
        (raw({"v": 1, "size": 0, "buffers": [], "root": 2**70}), "int64"),
        (raw({"v": 1, "size": 0, "buffers": [], "root": [1]}), "expected a node"),
        (raw({"v": 1, "size": 0, "buffers": [], "root": {"k": "pickle"}}), "expected a node"),
        (raw({"v": 1, "size": 0, "buffers": [], "root": {"k": ["list"]}}), "expected a node"),
        (raw({"v": 1, "size": 0, "buffers": [], "root": {"k": "list"}}), "'v'"),
        (raw({"v": 1, "size": 0, "buffers": [], "root": {"k": "float", "v": "1e5"}}), "nan"),
        (raw({"v": 1, "size": 0, "buffers": [], "root": {"k": "masked"}}), "expected a node"),
    ],
)
def test_malformed_envelopes_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(DecodingError, match=message):
        decode(data)


@pytest.mark.parametrize("dtype", ["O", "|O", "object", "<V8", "<f16", "|b2", ">f8", "<M8[10s]"])
def test_dtypes_outside_the_whitelist_are_refused(dtype: str) -> None:
    with pytest.raises(DecodingError, match="not allowed"):
        decode(raw(nd_header(dtype, [1], 8), bytes(8)))


@pytest.mark.parametrize(
    ("shape", "length", "message"),
    [
        ([-1], 8, "non-negative"),
        ([2**40, 2**40], 8, "too large"),
        ([0, 2**62], 0, "too large"),
        ([3], 8, "holds 8 bytes"),
        ([1.0], 8, "non-negative"),
        ([True], 8, "non-negative"),
        ("8", 8, "'shape'"),
        ([1] * 40, 8, "non-negative"),
    ],
)
def test_bad_shapes_are_refused(shape: object, length: int, message: str) -> None:
    with pytest.raises(DecodingError, match=message):
        decode(raw(nd_header("<f8", shape, length), bytes(length)))


def test_buffer_index_out_of_range_is_refused() -> None:
    header = nd_header("<f8", [1], 8)
    header["root"]["buf"] = 1
    with pytest.raises(DecodingError, match="buffer index 1"):
        decode(raw(header, bytes(8)))


def test_scalar_flag_needs_a_0d_shape() -> None:
    with pytest.raises(DecodingError, match="zero-dimensional"):
        decode(raw(nd_header("<f8", [1], 8, scalar=True), bytes(8)))


def test_excessive_nesting_is_refused() -> None:
    root: object = 1
    for _ in range(40):
        root = {"k": "list", "v": [root]}
    with pytest.raises(DecodingError, match="deeper than 32"):
        decode(raw({"v": 1, "size": 0, "buffers": [], "root": root}))


def test_too_many_nodes_are_refused() -> None:
    root = {"k": "list", "v": [{"k": "list", "v": []}] * 1_000_001}
    with pytest.raises(DecodingError, match="more than 1000000 nodes"):
        decode(raw({"v": 1, "size": 0, "buffers": [], "root": root}))


def strs_payload(data: bytes, offsets: list[int], nulls: list[int] | None, count: int) -> bytes:
    buffers, body = [], b""
    for chunk in (data, np.array(offsets, "<i8").tobytes(), bytes(nulls or [])):
        body += bytes(-len(body) % 64)
        buffers.append([len(body), len(chunk)])
        body += chunk
    node = {"k": "strs", "shape": [count], "data": 0, "offsets": 1, "nulls": 2 if nulls else None}
    return raw({"v": 1, "size": len(body), "buffers": buffers, "root": node}, body)


@pytest.mark.parametrize(
    ("data", "offsets", "nulls", "count", "message"),
    [
        (b"abc", [0, 2, 3], None, 2, None),
        (b"abc", [0, 2, 3], [0, 3], 2, None),
        (b"abc", [0, 3, 2], None, 2, "offsets"),
        (b"abc", [1, 2, 3], None, 2, "offsets"),
        (b"abc", [0, 2, 4], None, 2, "holds 3 bytes"),
        (b"abc", [0, 2], None, 2, "holds 16 bytes"),
        (b"\xff\xfe", [0, 2], None, 1, "UnicodeDecodeError"),
        (b"abc", [0, 2, 3], [0, 9], 2, "null code 9"),
        (b"abc", [0, 2, 3], [0], 2, "holds 1 bytes"),
    ],
)
def test_string_buffers_are_checked(
    data: bytes, offsets: list, nulls: list | None, count: int, message: str | None
) -> None:
    payload = strs_payload(data, offsets, nulls, count)
    if message is None:
        assert decode(payload).shape == (count,)
        return
    with pytest.raises(DecodingError, match=message):
        decode(payload)


def mutate_root(value: object, change: dict) -> bytes:
    """The encoding of ``value`` with fields of its root node changed."""
    data = encode_to_bytes(value)
    header = header_of(data)
    header["root"].update(change)
    return with_header(data, header)


def first_group(frame: pd.DataFrame, change: dict) -> bytes:
    data = encode_to_bytes(frame)
    header = header_of(data)
    header["root"]["groups"][0].update(change)
    return with_header(data, header)


CATEGORY = pd.DataFrame({"c": pd.Categorical(["a", "b"])})
MASKED = pd.DataFrame({"m": pd.array([1, None], dtype="Int64")})
TZ = pd.DataFrame({"t": pd.date_range("2020", periods=2, tz="UTC")})
STRING = pd.DataFrame({"s": pd.array(["a", None], dtype="string")})


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (lambda: first_group(CATEGORY, {"categories": {"k": "category"}}), "expected a node"),
        (lambda: first_group(CATEGORY, {"ordered": 1}), "ordered"),
        (lambda: first_group(MASKED, {"dtype": "object"}), "masked dtype"),
        (lambda: first_group(MASKED, {"dtype": "Int32"}), "wrong dtype"),
        (lambda: first_group(TZ, {"tz": "../../etc/passwd"}), "timezone"),
        (lambda: first_group(TZ, {"tz": "/etc/localtime"}), "timezone"),
        (lambda: first_group(TZ, {"tz": "Nowhere/Atlantis"}), "malformed"),
        (lambda: first_group(TZ, {"tz": "UTC+25:00"}), "timezone"),
        (lambda: first_group(STRING, {"storage": "evil"}), "storage"),
        (lambda: first_group(STRING, {"values": {"k": "nd"}}), "expected a node"),
        (lambda: mutate_root(pd.DataFrame({"a": [1]}), {"groups": []}), "0 columns but 1"),
        (lambda: mutate_root(pd.DataFrame({"a": [1]}), {"groups": [{"k": "list"}]}), "node"),
        (lambda: mutate_root(pd.DataFrame({"a": [1]}), {"columns": {"k": "labels"}}), "'dtype'"),
        (lambda: mutate_root(pd.Series([1]), {"name": [1]}), "name"),
        (lambda: mutate_root(pd.Series([1]), {"index": {"k": "range"}}), "range"),
        (lambda: mutate_root(pd.Series([1, 2]), {"index": {"k": "range", "stop": 3}}), "range"),
        (lambda: mutate_root(pd.RangeIndex(2), {"step": 0}), "step"),
        (lambda: mutate_root(pd.Index([1, 2]), {"freq": "D"}), "freq"),
        (lambda: mutate_root(pd.date_range("2020", periods=2), {"freq": "3D"}), "malformed"),
        (lambda: mutate_root(pd.date_range("2020", periods=2), {"freq": 3}), "freq"),
        (lambda: mutate_root(pd.Series([1, 2]), {"values": {"k": "series"}}), "expected a node"),
    ],
)
def test_malformed_pandas_nodes_are_refused(payload: object, message: str) -> None:
    with pytest.raises(DecodingError, match=message):
        decode(payload())


def test_out_of_range_category_codes_are_refused() -> None:
    data = bytearray(encode_to_bytes(pd.Series(pd.Categorical(["a", "b"]))))
    header = header_of(bytes(data))
    offset, _ = header["buffers"][header["root"]["values"]["codes"]["buf"]]
    data[len(data) - header["size"] + offset] = 7
    with pytest.raises(DecodingError, match="codes"):
        decode(bytes(data))


def test_block_wider_than_the_labels_is_refused() -> None:
    frame = pd.DataFrame({"a": np.zeros(0)})
    group = {"k": "nd", "dtype": "<f8", "shape": [10**9, 0], "buf": 0}
    with pytest.raises(DecodingError, match="more columns than its 1 labels"):
        decode(first_group(frame, group))


def test_huge_column_counts_are_refused() -> None:
    frame = pd.DataFrame({"a": np.zeros(0)})
    group = {"k": "nd", "dtype": "<f8", "shape": [10**18, 0], "buf": 0}
    columns = {"k": "range", "start": 0, "stop": 10**18, "step": 1, "name": None}
    data = encode_to_bytes(frame)
    header = header_of(data)
    header["root"].update(columns=columns, groups=[group])
    with pytest.raises(DecodingError, match="more than 1000000 nodes and columns"):
        decode(with_header(data, header))


def test_frame_columns_must_match_the_index_length() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0]})
    with pytest.raises(DecodingError, match="as long as its index"):
        decode(mutate_root(frame, {"index": {"k": "range", "start": 0, "stop": 5, "step": 1}}))


@pytest.mark.parametrize("buffer", ["text", 12, None, memoryview(bytes(64))[::2]])
def test_non_buffers_are_refused(buffer: object) -> None:
    with pytest.raises(DecodingError):
        decode(buffer)  # type: ignore[arg-type]


def outcome(data: bytes) -> str:
    """Only two outcomes are allowed: a value, or DecodingError (any other error propagates)."""
    try:
        decode(data)
    except DecodingError:
        return "refused"
    return "ok"


def test_random_byte_flips_only_ever_give_decoding_errors_or_values() -> None:
    data = small_payload()
    rng = random.Random(1234)
    outcomes = collections.Counter()
    for _ in range(2_000):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        outcomes[outcome(bytes(mutated))] += 1
    assert outcomes["refused"] > 0
    assert outcomes["ok"] > 0  # flips inside buffers still decode: they are just other data


def test_random_header_edits_only_ever_give_decoding_errors_or_values() -> None:
    """Changes aimed at the JSON header, where structure (not just numbers) changes."""
    data = small_payload()
    (length,) = struct.unpack_from("<I", data, 8)
    rng = random.Random(99)
    alphabet = b'{}[]",:0123456789-.eE truefalsnkvdtype<|>'
    outcomes = collections.Counter()
    for _ in range(2_000):
        mutated = bytearray(data)
        mutated[12 + rng.randrange(length)] = rng.choice(alphabet)
        outcomes[outcome(bytes(mutated))] += 1
    assert outcomes["refused"] > 0


@pytest.mark.parametrize("order", ["C", "F"])
def test_memory_order_survives_without_copy(order: str) -> None:
    array = np.asarray(np.arange(12.0).reshape(3, 4), order=order)
    frames = encode(array)
    assert any(np.shares_memory(np.frombuffer(f, np.uint8), array) for f in frames[1:])
    decoded = decode(bytearray(b"".join(frames)))
    np.testing.assert_array_equal(decoded, array)
    assert decoded.flags.f_contiguous == array.flags.f_contiguous
    assert decoded.flags.c_contiguous == array.flags.c_contiguous


@pytest.mark.parametrize("order", ["C", "F"])
def test_a_single_block_frame_keeps_its_layout(order: str) -> None:
    # The layout decides how BLAS sums, so a model's output depends on it in the last bits.
    values = np.asarray(np.random.default_rng(0).normal(size=(50, 7)), order=order)
    frame = pd.DataFrame(values, columns=[f"c{i}" for i in range(7)], copy=False)
    decoded = decode(bytearray(encode_to_bytes(frame)))
    pd.testing.assert_frame_equal(decoded, frame)
    assert np.asarray(decoded).flags.c_contiguous == np.asarray(frame).flags.c_contiguous


def test_an_unknown_array_order_is_refused() -> None:
    data = encode_to_bytes(np.zeros((2, 2)))
    header = header_of(data)
    header["root"]["order"] = "Z"
    with pytest.raises(DecodingError, match="order"):
        decode(with_header(data, header))
