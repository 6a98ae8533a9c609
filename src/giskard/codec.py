"""A data format that cannot run code when decoded.

Data travels between the ML worker (user controlled, untrusted) and the platform. Pickle runs
code on load, so values travel in this small self-describing format instead: a JSON header that
describes the value tree, followed by raw aligned buffers holding array data. The decoder only
ever builds the types listed below, from a whitelist of dtypes, after checking every offset,
length and shape; anything malformed raises ``DecodingError``.

Layout (integers little-endian)::

    magic       8 bytes, b"GKDATA1\\0" (the digit is the format version)
    header_len  uint32
    header      header_len bytes of UTF-8 JSON (no NaN/Infinity literals)
    padding     zero bytes up to a multiple of 64 from the start: the body starts there
    body        the buffers, each starting at a multiple of 64 from the body start

The header is ``{"v": 1, "size": body_len, "buffers": [[offset, length], ...], "root": node}``
with offsets relative to the body; the encoding is exactly ``body_start + size`` bytes long.
A node is a JSON null, bool, int (int64 range), finite float or string standing for itself, or
an object whose ``"k"`` names its kind (at most 32 levels, 1,000,000 value nodes and columns):

    float    {"v": "nan" | "inf" | "-inf"}
    list     {"v": [node, ...]}                 (tuples decode as lists)
    dict     {"v": {str: node, ...}}
    nd       {"dtype": "<f8", "shape": [...], "buf": i, "scalar"?: true, "order"?: "F"}
             numpy array, C order unless "order" says F (Fortran)
    strs     {"shape", "data": i, "offsets": i, "nulls": i | null}  object array of str/None:
             UTF-8 data (lone surrogates kept), n + 1 int64 byte offsets, uint8 nulls
             (0 str, 1 None, 2 NaN, 3 pd.NA)
    series   {"name", "index": index, "values": column}
    frame    {"index": index, "columns": labels, "groups": [group, ...]}; a group is a 2-D
             nd node of shape (k, rows) holding k consecutive numpy columns, or one column
    range    {"start", "stop", "step", "name"}  (a RangeIndex)
    index    {"name", "values": column, "freq"?: str}
    labels   {"v": [str | int, ...], "dtype": "str" | "object" | "int64" ..., "name"}
    column kinds (values of series, frames and indexes): nd (1-D), strs, and
      string      {"storage", "na": "nan" | "NA", "values": strs}   pandas StringDtype
      category    {"codes": nd, "categories": column (not a category), "ordered": bool}
      masked      {"dtype": "Int64" | ... | "boolean", "data": nd, "mask": nd}
      datetimetz  {"tz": "UTC" | "UTC+01:00" | IANA key, "utc": nd}

Names and labels are null, str or int. A dtype is a numpy ``dtype.str`` of bool, (u)int8-64,
float16-64, complex64/128, datetime64/timedelta64, fixed-width ``<U`` or ``|S``.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
import math
import re
import zoneinfo
from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd

from giskard.codec_plain import ALIGN, MAGIC, PREFIX, VERSION, envelope
from giskard.errors import DecodingError, EncodingError

__all__ = ["decode", "encode", "encode_to_bytes", "is_encoded"]

MAX_DEPTH = 32
MAX_NODES = 1_000_000

_PREFIX = PREFIX
_INT64 = range(-(2**63), 2**63)
_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_NULLS = (None, None, math.nan, pd.NA)  # index = null code in a strs node
_MASKED = frozenset({f"{kind}{bits}" for kind in ("Int", "UInt") for bits in (8, 16, 32, 64)})
_MASKED |= {"Float32", "Float64", "boolean"}
_LABEL_DTYPES = {name: pd.api.types.pandas_dtype(name) for name in ("str", "string", "object")}
_LABEL_DTYPES |= {name: np.dtype(name) for name in ("int8", "int16", "int32", "int64")}
_DTYPE = re.compile(
    r"\|(?:b1|i1|u1|S[1-9][0-9]{0,7})|<(?:[iu][248]|f[248]|c8|c16|U[1-9][0-9]{0,7}"
    r"|[Mm]8(?:\[(?:Y|M|W|D|h|m|s|ms|us|ns|ps|fs|as)\])?)"
)
_UTC_OFFSET = re.compile(r"UTC([+-])([01][0-9]|2[0-3]):([0-5][0-9])")
# Letters, digits and _+- segments only: no "..", no absolute path reaches the tz database.
_TZ_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_+-]{0,30}(?:/[A-Za-z0-9_+-]{1,30}){0,3}")


def encode(value: object) -> list[bytes | memoryview]:
    """Frames making up the encoding, in order; concatenated they are the encoded bytes.

    C-contiguous little-endian arrays are sent as memoryviews of their own memory (no copy).
    """
    encoder = _Encoder()
    try:
        root = encoder.value(value, 0)
    except _Unsupported as exc:
        raise EncodingError(exc.message()) from None
    try:
        head = envelope(root, encoder.size, encoder.table)
    except ValueError as exc:
        raise EncodingError(str(exc)) from None
    return [head, *encoder.frames]


def encode_to_bytes(value: object) -> bytes:
    """The encoding of ``value`` as one bytes object."""
    return b"".join(encode(value))


def is_encoded(buffer: bytes | bytearray | memoryview) -> bool:
    """Whether ``buffer`` starts with this format's magic (cheap: nothing else is checked)."""
    try:
        return memoryview(buffer).cast("B")[: len(MAGIC)] == MAGIC
    except (TypeError, ValueError):
        return False


def decode(buffer: bytes | bytearray | memoryview) -> object:
    """The value encoded in ``buffer``; numeric arrays are views into it (writable if it is)."""
    try:
        return _decode(buffer)
    except DecodingError:
        raise
    except Exception as exc:  # the trust boundary: whatever numpy or pandas reject is malformed
        message = " ".join(str(exc).split())[:200]
        raise DecodingError(f"malformed data: {type(exc).__name__}: {message}") from None


# --- encoding ----------------------------------------------------------------------------------


class _Unsupported(Exception):
    """Raised inside the encoder; containers record on the way up where the value sits."""

    def __init__(self, problem: str, label: str = "") -> None:
        super().__init__(problem)
        self.problem, self.label, self.keys = problem, label, []

    def message(self) -> str:
        where = "value" + "".join(reversed(self.keys)) if self.keys else ""
        subject = f"{self.label} of {where}" if self.label and where else self.label or where
        return f"{subject or 'value'} {self.problem}, which cannot be sent as data"


class _Encoder:
    def __init__(self) -> None:
        self.frames: list[bytes | memoryview] = []
        self.table: list[list[int]] = []
        self.size = self.nodes = 0

    def add(self, data: bytes | memoryview) -> int:
        """Append one buffer at the next aligned offset; returns its index in the table."""
        if pad := -self.size % ALIGN:
            self.frames.append(bytes(pad))
            self.size += pad
        self.table.append([self.size, len(data)])
        self.frames.append(data)
        self.size += len(data)
        return len(self.table) - 1

    def value(self, obj: object, depth: int) -> object:
        kind = type(obj)
        if obj is None or kind is bool or kind is str or (kind is float and math.isfinite(obj)):
            return obj
        if kind is int:
            return _int64(obj, "")
        if depth >= MAX_DEPTH:
            raise _Unsupported(f"nests deeper than {MAX_DEPTH} levels")
        self.count(1)
        if kind is float:
            return {"k": "float", "v": repr(obj)}
        if kind is list or kind is tuple:
            return {"k": "list", "v": self.items(enumerate(obj), depth, "[{}]")}
        if kind is dict:
            values = self.items(obj.items(), depth, "[{!r}]")
            return {"k": "dict", "v": dict(zip(_keys(obj), values, strict=True))}
        return self.array_like(obj)

    def count(self, nodes: int) -> None:
        self.nodes += nodes
        if self.nodes > MAX_NODES:
            raise _Unsupported(f"holds more than {MAX_NODES} containers, arrays and columns")

    def items(self, pairs: Iterable[tuple], depth: int, where: str) -> list:
        out = []
        for key, item in pairs:
            try:
                out.append(self.value(item, depth + 1))
            except _Unsupported as exc:
                exc.keys.append(where.format(key))
                raise
        return out

    def array_like(self, obj: object) -> dict:
        if isinstance(obj, np.generic):
            return {**self.ndarray(np.asarray(obj), ""), "scalar": True}
        if type(obj) is np.ndarray:
            return self.ndarray(obj, "")
        if isinstance(obj, pd.DataFrame):
            return self.frame(obj)
        if isinstance(obj, pd.Series):
            return self.series(obj)
        if isinstance(obj, pd.Index):
            return self.index(obj, "index")
        raise _Unsupported(f"is of type {type(obj).__qualname__}")

    def ndarray(self, arr: np.ndarray, label: str) -> dict:
        if arr.dtype == object:
            return self.strings(arr, label)
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        if _np_dtype(arr.dtype.str) is None:
            raise _Unsupported(f"has dtype {arr.dtype}", label)
        # The memory order travels too: numerical code (BLAS) may sum in another order, and so
        # round differently, for the same values laid out the other way.
        fortran = arr.ndim > 1 and arr.flags.f_contiguous and not arr.flags.c_contiguous
        if not (fortran or arr.flags.c_contiguous):
            arr = np.ascontiguousarray(arr)
        # A flat uint8 view keeps the frame pointing at the array's own memory (no copy).
        data = memoryview((arr.T if fortran else arr).reshape(-1).view(np.uint8))
        node = {"k": "nd", "dtype": arr.dtype.str, "shape": list(arr.shape), "buf": self.add(data)}
        if fortran:
            node["order"] = "F"
        return node

    def strings(self, arr: np.ndarray, label: str) -> dict:
        encoded, nulls = _utf8(arr.ravel().tolist(), label)
        offsets = np.zeros(len(encoded) + 1, dtype="<i8")
        np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded)), out=offsets[1:])
        node = {"k": "strs", "shape": list(arr.shape), "data": self.add(b"".join(encoded))}
        node["offsets"] = self.add(memoryview(offsets.view(np.uint8)))
        node["nulls"] = None if nulls is None else self.add(nulls.tobytes())
        return node

    def column(self, obj: pd.Series | pd.Index, label: str) -> dict:
        """Node for the values of a Series or an Index."""
        dtype = obj.dtype
        if isinstance(dtype, np.dtype):
            return self.ndarray(obj.to_numpy(), label)
        values = obj.array
        if isinstance(dtype, pd.CategoricalDtype):
            categories = self.column(values.categories, f"categories of {label}")
            codes, ordered = self.ndarray(values.codes, label), bool(values.ordered)
            return {"k": "category", "codes": codes, "categories": categories, "ordered": ordered}
        if isinstance(dtype, pd.StringDtype):
            strings = self.strings(values.to_numpy(dtype=object), label)
            na = "NA" if dtype.na_value is pd.NA else "nan"
            return {"k": "string", "storage": dtype.storage, "na": na, "values": strings}
        if isinstance(dtype, pd.DatetimeTZDtype):
            utc = self.ndarray(values.tz_convert(None).to_numpy(), label)
            return {"k": "datetimetz", "tz": _tz_name(dtype.tz, label), "utc": utc}
        if dtype.name not in _MASKED:
            raise _Unsupported(f"has dtype {dtype}", label)
        zero = dtype.numpy_dtype.type(0)  # stands in for missing values, which the mask marks
        data = self.ndarray(values.to_numpy(dtype=dtype.numpy_dtype, na_value=zero), label)
        mask = self.ndarray(np.asarray(values.isna()), label)
        return {"k": "masked", "dtype": dtype.name, "data": data, "mask": mask}

    def index(self, index: pd.Index, label: str) -> dict:
        if type(index) is pd.RangeIndex:
            return _range(index, label)
        if isinstance(index, pd.MultiIndex):
            raise _Unsupported("is a MultiIndex", label)
        node = {"k": "index", "name": _label(index.name, label)}
        node["values"] = self.column(index, label)
        if isinstance(index, pd.DatetimeIndex | pd.TimedeltaIndex) and index.freq is not None:
            node["freq"] = index.freqstr
        return node

    def series(self, series: pd.Series) -> dict:
        label = "series" if series.name is None else f"series {series.name!r}"
        index = self.index(series.index, f"index of {label}")
        values = self.column(series, label)
        return {"k": "series", "name": _label(series.name, label), "index": index, "values": values}

    def frame(self, frame: pd.DataFrame) -> dict:
        dtypes, labels, groups = frame.dtypes.tolist(), frame.columns, []
        self.count(len(dtypes))
        for start, stop in _runs(dtypes):
            label = f"column {labels[start]!r}"
            if not _plain(dtypes[start]):
                groups.append(self.column(frame.iloc[:, start], label))
                continue
            part = frame if stop - start == len(dtypes) else frame.iloc[:, start:stop]
            # to_numpy() of one pandas block is a (rows, k) view of the (k, rows) block: .T is
            # the block itself, sent in its own memory order, without a copy.
            groups.append(self.ndarray(part.to_numpy().T, label))
        index = self.index(frame.index, "index")
        return {"k": "frame", "index": index, "columns": _labels(labels), "groups": groups}


def _keys(mapping: dict) -> list[str]:
    for key in mapping:
        if not isinstance(key, str):
            raise _Unsupported(f"has a dict key {key!r} of type {type(key).__qualname__}")
    return [str(key) for key in mapping]


def _int64(value: int, label: str) -> int:
    if value not in _INT64:
        raise _Unsupported(f"holds the int {value}, outside the int64 range", label)
    return value


def _utf8(items: list, label: str) -> tuple[list[bytes], np.ndarray | None]:
    """UTF-8 of each string, and the null codes (None when nothing is missing)."""
    if set(map(type, items)) <= {str}:
        return [item.encode("utf-8", "surrogatepass") for item in items], None
    nulls, encoded = np.zeros(len(items), dtype=np.uint8), []
    for i, item in enumerate(items):
        if isinstance(item, str):
            encoded.append(item.encode("utf-8", "surrogatepass"))
            continue
        if (
            item is not None
            and item is not pd.NA
            and not (isinstance(item, float) and item != item)
        ):
            raise _Unsupported(f"holds objects of type {type(item).__qualname__}", label)
        nulls[i] = 1 if item is None else 3 if item is pd.NA else 2
        encoded.append(b"")
    return encoded, nulls


def _tz_name(tz: dt.tzinfo, label: str) -> str:
    offset = tz.utcoffset(None) if isinstance(tz, dt.timezone) else None
    if offset is not None and not offset % dt.timedelta(minutes=1):
        minutes = int(offset.total_seconds()) // 60
        hours, rest = divmod(abs(minutes), 60)
        return f"UTC{'-' if minutes < 0 else '+'}{hours:02d}:{rest:02d}" if minutes else "UTC"
    key = getattr(tz, "key", None) or getattr(tz, "zone", None)  # zoneinfo, pytz
    if isinstance(key, str) and _TZ_KEY.fullmatch(key):
        return key
    raise _Unsupported(f"has timezone {tz!r}", label)


def _label(value: object, label: str) -> object:
    """A name or label as JSON: None, str or int."""
    if value is None or isinstance(value, str):
        return None if value is None else str(value)
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return _int64(int(value), label)
    raise _Unsupported(f"has the label or name {value!r} of type {type(value).__qualname__}", label)


def _range(index: pd.RangeIndex, label: str) -> dict:
    node = {"k": "range", "start": index.start, "stop": index.stop, "step": index.step}
    return {**node, "name": _label(index.name, label)}


def _labels(columns: pd.Index) -> dict:
    label, dtype = "column labels", str(columns.dtype)
    if type(columns) is pd.RangeIndex:
        return _range(columns, label)
    if isinstance(columns, pd.MultiIndex):
        raise _Unsupported("are a MultiIndex", label)
    if dtype not in _LABEL_DTYPES:
        raise _Unsupported(f"have dtype {dtype}", label)
    values = [_label(value, label) for value in columns.tolist()]
    return {"k": "labels", "v": values, "dtype": dtype, "name": _label(columns.name, label)}


def _plain(dtype: object) -> bool:
    """Whether a column dtype is a numpy one that pandas keeps in 2-D blocks."""
    return isinstance(dtype, np.dtype) and dtype.kind in "biufcmM"


def _runs(dtypes: list) -> Iterator[tuple[int, int]]:
    """(start, stop) of runs of columns sharing one plain dtype, and of each other column."""
    for _, run in itertools.groupby(range(len(dtypes)), lambda i: _block_key(dtypes[i], i)):
        positions = list(run)
        yield positions[0], positions[-1] + 1


def _block_key(dtype: object, position: int) -> object:
    return dtype.str if _plain(dtype) else position


@functools.lru_cache(maxsize=256)
def _np_dtype(name: str) -> np.dtype | None:
    """The numpy dtype named ``name`` if the whitelist allows it, else None."""
    return np.dtype(name) if _DTYPE.fullmatch(name) else None


# --- decoding ----------------------------------------------------------------------------------


def _decode(buffer: bytes | bytearray | memoryview) -> object:
    view = memoryview(buffer).cast("B")
    if len(view) < _PREFIX.size:
        raise DecodingError(f"{len(view)} bytes are too short to be giskard data")
    magic, header_len = _PREFIX.unpack_from(view)
    if magic != MAGIC:
        version = f"version {magic[6:7]!r} of " if magic[:6] == MAGIC[:6] else ""
        raise DecodingError(f"not giskard data: wrong magic bytes ({version or 'unknown format'})")
    body_start = _PREFIX.size + header_len + -(_PREFIX.size + header_len) % ALIGN
    if body_start > len(view):
        raise DecodingError("data is truncated inside its header")
    try:
        text = str(view[_PREFIX.size : _PREFIX.size + header_len], "utf-8")
        header = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise DecodingError(f"header is not UTF-8 JSON: {exc}") from None
    root, table = _check_header(header, len(view) - body_start)
    return _Decoder(view[body_start:], table).value(root, 0)


def _no_constant(name: str) -> float:
    raise ValueError(f"non-JSON constant {name}")


def _check_header(header: object, body_len: int) -> tuple[object, list]:
    if type(header) is not dict:
        raise DecodingError("header is not a JSON object")
    if _field(header, "v", int) != VERSION:
        raise DecodingError(f"header version {header['v']} is not supported")
    if _field(header, "size", int) != body_len:
        raise DecodingError(f"body is {body_len} bytes but the header says {header['size']}")
    table = _field(header, "buffers", list)
    for entry in table:
        if type(entry) is not list or len(entry) != 2 or {type(x) for x in entry} != {int}:
            raise DecodingError(f"buffer entry {_short(entry)} is not [offset, length]")
        if entry[0] < 0 or entry[1] < 0 or entry[0] % ALIGN or sum(entry) > body_len:
            raise DecodingError(f"buffer {entry} is misaligned or out of range")
    if "root" not in header:
        raise DecodingError("header has no root value")
    return header["root"], table


def _field(node: dict, key: str, kind: type) -> object:
    value = node.get(key)
    if type(value) is not kind:
        raise DecodingError(f"field {key!r} is missing or not a {kind.__name__}: {_short(node)}")
    return value


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _name(node: dict) -> object:
    return _check_label(node.get("name"), "name")


def _check_label(value: object, what: str) -> object:
    if value is None or type(value) is str or (type(value) is int and value in _INT64):
        return value
    raise DecodingError(f"{what} {_short(value)} is not null, a str or an int64")


def _object_dtype(values: object) -> type | None:
    """object for object ndarrays: pandas would otherwise infer a str dtype from them."""
    return object if isinstance(values, np.ndarray) and values.dtype == object else None


def _shape(node: dict) -> tuple[list[int], int]:
    shape = _field(node, "shape", list)
    if len(shape) > MAX_DEPTH or any(type(d) is not int or d < 0 for d in shape):
        raise DecodingError(f"shape {_short(shape)} is not a list of non-negative ints")
    if math.prod(d for d in shape if d) >= 2**62:
        raise DecodingError(f"shape {_short(shape)} is too large")
    return shape, math.prod(shape)


@functools.lru_cache(maxsize=8)
def _string_dtype(storage: str, na: str) -> pd.StringDtype:
    na_value = pd.NA if na == "NA" else math.nan
    try:
        return pd.StringDtype(storage, na_value=na_value)
    except ImportError:  # pyarrow storage on the sender only: the values are the same
        return pd.StringDtype("python", na_value=na_value)


def _timezone(name: object) -> dt.tzinfo:
    if name == "UTC":
        return dt.UTC
    if type(name) is not str:
        raise DecodingError(f"timezone {_short(name)} is not a str")
    if match := _UTC_OFFSET.fullmatch(name):
        offset = dt.timedelta(hours=int(match[2]), minutes=int(match[3]))
        return dt.timezone(-offset if match[1] == "-" else offset)
    if _TZ_KEY.fullmatch(name):
        return zoneinfo.ZoneInfo(name)
    raise DecodingError(f"timezone {_short(name)} is not allowed")


# Which node kinds may appear where; a kind names the _Decoder method "<kind>_node".
_ND, _STRS = frozenset(["nd"]), frozenset(["strs"])
_CATEGORIES = frozenset(["nd", "strs", "string", "masked", "datetimetz"])
_COLUMNS = _CATEGORIES | {"category"}
_INDEXES, _LABELS = frozenset(["range", "index"]), frozenset(["range", "labels"])
_VALUES = _INDEXES | {"nd", "strs", "float", "list", "dict", "series", "frame"}


class _Decoder:
    def __init__(self, body: memoryview, table: list[list[int]]) -> None:
        self.body, self.table, self.nodes = body, table, 0

    def buffer(self, node: dict, key: str, dtype: np.dtype | str, count: int) -> np.ndarray:
        """The buffer named by ``node[key]`` as ``count`` items of ``dtype``, without a copy."""
        index, dtype = _field(node, key, int), np.dtype(dtype)
        if not 0 <= index < len(self.table):
            raise DecodingError(f"buffer index {index} is out of range")
        offset, length = self.table[index]
        if count * dtype.itemsize != length:
            raise DecodingError(f"buffer {index} holds {length} bytes, not {count} of {dtype}")
        return np.frombuffer(self.body[offset : offset + length], dtype=dtype)

    def dispatch(self, node: object, kinds: frozenset, depth: int = 0) -> object:
        kind = node.get("k") if type(node) is dict else None
        if type(kind) is not str or kind not in kinds:
            raise DecodingError(
                f"expected a node of kind {'/'.join(sorted(kinds))}, got {_short(node)}"
            )
        return getattr(self, f"{kind}_node")(node, depth)

    def value(self, node: object, depth: int) -> object:
        if node is None or type(node) in (bool, str, float):
            return node
        if type(node) is int:
            if node not in _INT64:
                raise DecodingError(f"int {_short(node)} is outside the int64 range")
            return node
        if depth >= MAX_DEPTH:
            raise DecodingError(f"value nests deeper than {MAX_DEPTH} levels")
        self.count(1)
        return self.dispatch(node, _VALUES, depth)

    def count(self, nodes: int) -> None:
        self.nodes += nodes
        if self.nodes > MAX_NODES:
            raise DecodingError(f"value holds more than {MAX_NODES} nodes and columns")

    def column(self, node: object, kinds: frozenset = _COLUMNS) -> object:
        values = self.dispatch(node, kinds)
        if values.ndim != 1:
            raise DecodingError(f"column of shape {values.shape} is not one-dimensional")
        return values

    def float_node(self, node: dict, depth: int) -> float:
        value = node.get("v")
        if type(value) is not str or value not in _FLOATS:
            raise DecodingError(f"float {_short(value)} is not nan, inf or -inf")
        return _FLOATS[value]

    def list_node(self, node: dict, depth: int) -> list:
        return [self.value(item, depth + 1) for item in _field(node, "v", list)]

    def dict_node(self, node: dict, depth: int) -> dict:
        return {key: self.value(item, depth + 1) for key, item in _field(node, "v", dict).items()}

    def nd_node(self, node: dict, depth: int) -> object:
        dtype = _np_dtype(_field(node, "dtype", str))
        if dtype is None:
            raise DecodingError(f"dtype {_short(node['dtype'])} is not allowed")
        shape, count = _shape(node)
        order = node.get("order", "C")
        if order not in ("C", "F"):
            raise DecodingError(f"array order {_short(order)} is not C or F")
        array = self.buffer(node, "buf", dtype, count).reshape(shape, order=order)
        if node.get("scalar") is not True:
            return array
        if shape:
            raise DecodingError(f"scalar of shape {shape} is not zero-dimensional")
        return array[()]

    def strs_node(self, node: dict, depth: int) -> np.ndarray:
        shape, count = _shape(node)
        offsets = self.buffer(node, "offsets", "<i8", count + 1)
        if offsets[0] != 0 or (offsets[1:] < offsets[:-1]).any():
            raise DecodingError("string offsets do not increase from 0")
        raw, bounds = self.buffer(node, "data", "u1", int(offsets[-1])).tobytes(), offsets.tolist()
        items = [raw[a:b].decode("utf-8", "surrogatepass") for a, b in itertools.pairwise(bounds)]
        if node.get("nulls") is not None:
            nulls = self.buffer(node, "nulls", "u1", count)
            if count and nulls.max() >= len(_NULLS):
                raise DecodingError(f"null code {nulls.max()} is unknown")
            for i in np.flatnonzero(nulls).tolist():
                items[i] = _NULLS[nulls[i]]
        out = np.empty(count, dtype=object)
        out[:] = items
        return out.reshape(shape)

    def string_node(self, node: dict, depth: int) -> pd.api.extensions.ExtensionArray:
        storage, na = node.get("storage"), node.get("na")
        if storage not in ("python", "pyarrow") or na not in ("nan", "NA"):
            raise DecodingError(f"string storage {_short(storage)} or na {_short(na)} is unknown")
        return pd.array(self.column(node.get("values"), _STRS), dtype=_string_dtype(storage, na))

    def category_node(self, node: dict, depth: int) -> pd.Categorical:
        codes = self.column(node.get("codes"), _ND)
        categories = self.column(node.get("categories"), _CATEGORIES)
        if codes.dtype.kind != "i" or type(node.get("ordered")) is not bool:
            raise DecodingError("category codes are not ints or ordered is not a bool")
        index = pd.Index(categories, dtype=_object_dtype(categories))
        dtype = pd.CategoricalDtype(index, ordered=node["ordered"])
        return pd.Categorical.from_codes(codes, dtype=dtype)

    def masked_node(self, node: dict, depth: int) -> pd.api.extensions.ExtensionArray:
        name = node.get("dtype")
        if type(name) is not str or name not in _MASKED:
            raise DecodingError(f"masked dtype {_short(name)} is not allowed")
        dtype = pd.api.types.pandas_dtype(name)
        data, mask = self.column(node.get("data"), _ND), self.column(node.get("mask"), _ND)
        if data.dtype != dtype.numpy_dtype or mask.dtype != bool or len(data) != len(mask):
            raise DecodingError(f"masked {name} data or mask has the wrong dtype or length")
        return dtype.construct_array_type()(data, mask)

    def datetimetz_node(self, node: dict, depth: int) -> pd.api.extensions.ExtensionArray:
        utc = self.column(node.get("utc"), _ND)
        if utc.dtype.kind != "M" or np.datetime_data(utc.dtype)[0] not in ("s", "ms", "us", "ns"):
            raise DecodingError(f"datetimetz values of dtype {utc.dtype} are not allowed")
        return pd.array(utc).tz_localize(dt.UTC).tz_convert(_timezone(node.get("tz")))

    def range_node(self, node: dict, depth: int) -> pd.RangeIndex:
        start, stop, step = (node.get(key) for key in ("start", "stop", "step"))
        if {type(start), type(stop), type(step)} != {int} or not step or stop not in _INT64:
            raise DecodingError("range start, stop and step must be int64s, step not 0")
        return pd.RangeIndex(start, stop, step, name=_name(node))

    def index_node(self, node: dict, depth: int) -> pd.Index:
        values = self.column(node.get("values"))
        index = pd.Index(values, dtype=_object_dtype(values), name=_name(node), copy=False)
        freq = node.get("freq")
        if freq is None:
            return index
        if type(freq) is not str or not isinstance(index, pd.DatetimeIndex | pd.TimedeltaIndex):
            raise DecodingError(f"freq {_short(freq)} is not allowed on this index")
        return type(index)(index, freq=freq)

    def labels_node(self, node: dict, depth: int) -> pd.Index:
        dtype, labels = _field(node, "dtype", str), _field(node, "v", list)
        if dtype not in _LABEL_DTYPES:
            raise DecodingError(f"column labels of dtype {_short(dtype)} are not allowed")
        for label in labels:
            _check_label(label, "column label")
        return pd.Index(labels, dtype=_LABEL_DTYPES[dtype], name=_name(node))

    def series_node(self, node: dict, depth: int) -> pd.Series:
        values = self.column(node.get("values"))
        index = self.dispatch(node.get("index"), _INDEXES)
        if len(index) != len(values):
            raise DecodingError(f"series of {len(values)} values has an index of {len(index)}")
        dtype = _object_dtype(values)
        return pd.Series(values, index=index, name=_name(node), dtype=dtype, copy=False)

    def frame_node(self, node: dict, depth: int) -> pd.DataFrame:
        index = self.dispatch(node.get("index"), _INDEXES)
        columns = self.dispatch(node.get("columns"), _LABELS)
        self.count(len(columns))  # before splitting blocks, whose width the header sets
        groups = [self.dispatch(group, _COLUMNS) for group in _field(node, "groups", list)]
        arrays = _split_blocks(groups, len(columns))
        if any(len(values) != len(index) for values in arrays):
            raise DecodingError(f"frame columns are not all as long as its index ({len(index)})")
        if not arrays:
            return pd.DataFrame(index=index, columns=columns)
        if len(groups) == 1 and groups[0].ndim == 2:  # one block: pandas keeps it as it is
            return pd.DataFrame(groups[0].T, index=index, columns=columns, copy=False)
        data = dict(enumerate(map(_keep_object, arrays)))
        frame = pd.DataFrame(data, copy=False)
        frame.index, frame.columns = index, columns
        return frame


def _keep_object(values: object) -> object:
    """Object ndarrays wrapped so that pandas keeps them as object columns."""
    return pd.Series(values, dtype=object, copy=False) if _object_dtype(values) else values


def _split_blocks(groups: list, count: int) -> list:
    """The columns of a frame's groups (2-D blocks are split), checking there are ``count``."""
    arrays: list = []
    for values in groups:
        block = isinstance(values, np.ndarray) and values.ndim == 2
        if not block and values.ndim != 1:
            raise DecodingError(f"frame group of shape {values.shape} is not 1-D or a 2-D block")
        if len(arrays) + (len(values) if block else 1) > count:
            raise DecodingError(f"frame has more columns than its {count} labels")
        arrays.extend(values if block else [values])
    if len(arrays) != count:
        raise DecodingError(f"frame has {len(arrays)} columns but {count} labels")
    return arrays
