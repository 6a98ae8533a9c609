"""The pickles of objects passed to jobs again and again (the same model at every `predict`),
kept while the object lives and as long as its state is the one that was pickled.

Whether an object changed is told by its state: what its pickle is made of, read without
pickling it. That is possible, and so cached, only for objects whose pickle follows from their
`__dict__` alone, all the way down: instances of importable Python classes that pickle the
default way (or as scikit-learn's estimators do: `__dict__` and the library's version), with
attributes that are plain values, containers of them, numpy arrays, or importable classes and
functions (pickled by name). Anything else (a class pickled by value, whose methods' globals
would be captured; C extension state; a custom `__reduce__` or `__getstate__`) is pickled
every time, as before.
"""

from __future__ import annotations

import itertools
import sys
import threading
import types
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import blake3
import cloudpickle
import numpy as np

T = TypeVar("T")

# Objects remembered at once: a few models per session.
PICKLES_REMEMBERED = 64
# How deep the state of an object is read; deeper, it is not cached.
MAX_DEPTH = 64
# Arrays up to this size are kept as bytes in the state; larger ones by their BLAKE3 digest.
ARRAY_KEPT_BYTES = 4096

_ATOMS = (type(None), bool, int, float, complex, str, bytes)
# Compared by their bits, not by ==: 0.0 == -0.0, and a model whose value changed so must
# not be served the old pickle.
_BITS = {float: float.hex, complex: lambda z: (z.real.hex(), z.imag.hex())}
_BY_NAME = (type, types.FunctionType, types.BuiltinFunctionType, np.ufunc)


class Unverifiable(Exception):
    """The object's state cannot be read without pickling it."""


@dataclass
class _Entry(Generic[T]):
    ref: weakref.ref[Any]
    state: tuple[Any, ...]
    value: T


class PickleCache(Generic[T]):
    """What was made of an object's pickle (`T`), by the object, while it lives unchanged."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[int, _Entry[T]] = OrderedDict()

    def lookup(self, obj: Any) -> tuple[T | None, tuple[Any, ...] | None]:
        """What was remembered for `obj` if its state is unchanged, and its state now (None:
        it cannot be cached)."""
        try:
            state = state_of(obj)
        except Unverifiable:
            return None, None
        with self._lock:
            entry = self._entries.get(id(obj))
            if entry is None or entry.ref() is not obj or entry.state != state:
                return None, state
            self._entries.move_to_end(id(obj))
            return entry.value, state

    def remember(self, obj: Any, state: tuple[Any, ...] | None, value: T) -> None:
        """Remember `value` for `obj` as it was in `state` (from `lookup`, read before it was
        pickled: a change made meanwhile is then seen at the next lookup)."""
        if state is None:
            return
        key = id(obj)
        try:
            ref = weakref.ref(obj, lambda dead: self._forget(key, dead))
        except TypeError:  # not weakly referenceable: its id could be another's later
            return
        with self._lock:
            self._entries[key] = _Entry(ref, state, value)
            self._entries.move_to_end(key)
            if len(self._entries) > PICKLES_REMEMBERED:
                self._entries.popitem(last=False)

    def _forget(self, key: int, dead: weakref.ref[Any]) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.ref is dead:
                del self._entries[key]


def state_of(obj: Any) -> tuple[Any, ...]:
    """What `obj`'s pickle is made of, flattened; raises Unverifiable (see the module)."""
    reader = _StateReader()
    try:
        reader.read(obj, 0)
    except RuntimeError as exc:  # changed while read, by another thread
        raise Unverifiable(str(exc)) from None
    return tuple(reader.tokens)


class _StateReader:
    """Reads one object's state. Whether a class is pickled by name is decided for this
    reading only: a module may be reloaded, or registered to be pickled by value, meanwhile."""

    def __init__(self) -> None:
        # What cloudpickle pickles by value, which it decides when it pickles: part of the state.
        self.by_value = frozenset(cloudpickle.list_registry_pickle_by_value())
        self.tokens: list[Any] = [self.by_value]
        self._seen: set[int] = set()
        self._plain: dict[type, bool] = {}

    def read(self, obj: Any, depth: int) -> None:
        kind = type(obj)
        if kind in _ATOMS:
            self.tokens += (kind, _BITS[kind](obj) if kind in _BITS else obj)
            return
        if isinstance(obj, _BY_NAME):
            if not _pickled_by_name(obj, self.by_value):
                raise Unverifiable(f"{obj!r} is pickled by value")
            self.tokens.append(obj)  # compared by identity
            return
        if depth > MAX_DEPTH:
            raise Unverifiable("too deep")
        # Shared and cyclic references stay as they are in the pickle: by identity.
        self.tokens += (kind, id(obj))
        if id(obj) not in self._seen:
            self._seen.add(id(obj))
            self._read_compound(obj, kind, depth + 1)

    def _read_compound(self, obj: Any, kind: type, depth: int) -> None:
        if kind is np.ndarray:
            self._read_array(obj, depth)
        elif isinstance(obj, np.generic):
            self.tokens += (obj.dtype, obj.tobytes())
        elif kind is list or kind is tuple:
            self.tokens.append(len(obj))
            self._read_items(obj, depth)
        elif kind is dict:
            self._read_dict(obj, depth)
        elif self._plain_class(kind):
            self._read_dict(obj.__dict__, depth)
        else:
            raise Unverifiable(f"a {kind.__qualname__} does not pickle from its __dict__")

    def _read_dict(self, obj: dict[Any, Any], depth: int) -> None:
        self.tokens.append(len(obj))
        self._read_items(itertools.chain.from_iterable(obj.items()), depth)

    def _read_items(self, items: Iterable[Any], depth: int) -> None:
        tokens = self.tokens
        for item in items:
            kind = type(item)
            if kind in _ATOMS:  # most of them: read here, a call less each
                tokens += (kind, _BITS[kind](item) if kind in _BITS else item)
            else:
                self.read(item, depth)

    def _read_array(self, array: np.ndarray, depth: int) -> None:
        # The dtype itself: its `str` is "|V8" for any 8-byte record, whatever its fields.
        self.tokens += (array.dtype, array.shape)
        if array.dtype.hasobject:
            self._read_items(array.ravel(order="K"), depth)
        elif array.nbytes <= ARRAY_KEPT_BYTES:
            self.tokens.append(array.tobytes())
        else:
            contiguous = memoryview(np.ascontiguousarray(array)).cast("B")
            self.tokens.append(blake3.blake3(contiguous).digest())

    def _plain_class(self, kind: type) -> bool:
        """Whether an instance of `kind` pickles as its `__dict__` says (see the module)."""
        plain = self._plain.get(kind)
        if plain is None:
            plain = _pickled_by_name(kind, self.by_value) and _pickles_from_dict(kind)
            self._plain[kind] = plain
        return plain


# What _pickles_from_dict found of each class: it follows from the class's definition.
_FROM_DICT: weakref.WeakKeyDictionary[type, bool] = weakref.WeakKeyDictionary()


def _pickles_from_dict(kind: type) -> bool:
    from_dict = _FROM_DICT.get(kind)
    if from_dict is None:
        from_dict = _FROM_DICT[kind] = _defined_to_pickle_from_dict(kind)
    return from_dict


def _defined_to_pickle_from_dict(kind: type) -> bool:
    mro = [k for k in kind.__mro__ if k is not object]
    return (
        all(k.__flags__ & _HEAP_TYPE and "__slots__" not in vars(k) for k in mro)
        and kind.__reduce_ex__ is object.__reduce_ex__
        and kind.__reduce__ is object.__reduce__
        and kind.__getstate__ in _getstates_from_dict()
        and not hasattr(kind, "__getnewargs_ex__")
        and not hasattr(kind, "__getnewargs__")
    )


_HEAP_TYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class defined in Python


def _getstates_from_dict() -> set[Any]:
    """The `__getstate__` methods known to return what `__dict__` holds: the default one, and
    scikit-learn's estimators' (their `__dict__` and the library's version)."""
    known = {object.__getstate__}
    if (sklearn_base := sys.modules.get("sklearn.base")) is not None:
        known.add(sklearn_base.BaseEstimator.__getstate__)
    return known


def _pickled_by_name(obj: Any, by_value: frozenset[str]) -> bool:
    """Whether cloudpickle pickles this class or function by reference (its module and name),
    so that its code and globals are not part of the pickle."""
    module_name = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if not module_name or not qualname or module_name == "__main__" or "<" in qualname:
        return False
    parts = module_name.split(".")
    if any(".".join(parts[:n]) in by_value for n in range(1, len(parts) + 1)):
        return False
    found: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found is obj
