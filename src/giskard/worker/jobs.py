"""What a job does with its inputs, in the executor process. No transport here."""

from __future__ import annotations

import pickle
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from giskard import codec, compat
from giskard.errors import EncodingError

# With progress asked for, predict runs in about this many batches, none under MIN_BATCH_ROWS.
PROGRESS_STEPS = 20
MIN_BATCH_ROWS = 10_000

Reporter = Callable[[int, int], None]


class UnsupportedResult(Exception):
    """The job's result is not data that can travel back without pickle."""


class IncompatibleEnvironment(Exception):
    """A pickle cannot be loaded in this environment; `differences` (giskard.compat) says how
    it differs from the one the pickle was made in."""

    def __init__(self, message: str, differences: list[compat.Difference]) -> None:
        super().__init__(message)
        self.differences = differences


# What unpickling raises when the environment lacks what a pickle refers to (a module, a
# name in it) or holds another version of it (Python's code objects, a class's layout).
LOAD_ERRORS = (ImportError, AttributeError, pickle.UnpicklingError, TypeError)


def load_pickle(blob: bytearray, requirements: compat.Requirements = compat.NOTHING) -> Any:
    """A model or function sent by the hub (cloudpickle: code travels hub to worker only).
    IncompatibleEnvironment if it cannot load here, comparing this environment with
    `requirements`, what the client recorded when it pickled it."""
    import cloudpickle

    try:
        return cloudpickle.loads(blob)
    except LOAD_ERRORS as exc:
        diffs = compat.differences(requirements, compat.this_environment())
        compared = (
            compat.explain(requirements, diffs)
            if requirements
            else "its client recorded no requirements to compare with"
        )
        raise IncompatibleEnvironment(
            f"the job's pickle cannot be loaded here ({type(exc).__name__}: {exc}): {compared}",
            diffs,
        ) from exc


def load_data(blob: bytearray) -> Any:
    """A value in the safe data format; arrays are views of `blob`, not copies."""
    return codec.decode(blob)


def shielded(value: Any) -> Any:
    """A view of a cached input that user code cannot change in the cache: pandas objects are
    shallow copies (pandas copies on write), arrays are read-only views."""
    import numpy as np
    import pandas as pd

    if isinstance(value, pd.DataFrame | pd.Series):
        return value.copy(deep=False)
    if isinstance(value, np.ndarray):
        view = value.view()
        view.flags.writeable = False
        return view
    return value


def predict(model: Any, data: Any, method: str, report: Reporter | None = None) -> Any:
    """`getattr(model, method)(data)`; with `report`, in batches of rows, reporting each."""
    function = getattr(model, method, None)
    if not callable(function):
        raise AttributeError(f"{type(model).__name__} has no method {method!r}")
    rows = _row_count(data)
    if report is None or rows < 2 * MIN_BATCH_ROWS:
        result = function(data)
        if report is not None:
            report(rows, rows)
        return result
    step = max(MIN_BATCH_ROWS, -(-rows // PROGRESS_STEPS))
    report(0, rows)
    parts = []
    for start in range(0, rows, step):
        parts.append(function(_rows(data, start, start + step)))
        report(min(start + step, rows), rows)
    return _concat(parts)


def call(function: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    if not callable(function):
        raise TypeError(f"a {type(function).__name__} is not callable")
    return function(*args, **kwargs)


def encode_result(value: Any) -> list[bytes | memoryview]:
    """The result in the safe data format; UnsupportedResult says which part cannot go."""
    try:
        return codec.encode(value)
    except EncodingError as exc:
        raise UnsupportedResult(
            f"the job returned a {type(value).__qualname__}, which cannot be sent back as data "
            f"({exc}); return None, bool, int, float, str, lists and dicts of those, numpy "
            "arrays, pandas DataFrames or Series"
        ) from None


# What a failure's fields keep of an exception, in characters: its message and traceback
# are the job's own text, of any size, and go to the worker in one pipe header, which must
# stay well under pipe.MAX_HEADER_BYTES however JSON escapes them (up to 12 bytes a char).
FAILURE_TYPE_MAX_CHARS = 256
FAILURE_MESSAGE_MAX_CHARS = 8 * 1024
FAILURE_TRACEBACK_MAX_CHARS = 32 * 1024
CUT_MARK = " [... cut]"


def failure_from(exc: BaseException) -> dict[str, str]:
    """The fields of a JobFailure for an exception raised by a job, cut to their limits."""
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    # Each part (a frame, an exception's line) is cut first, so that a huge message does
    # not push the frames out; then the whole keeps its end, where the raise is.
    parts = [cut(part, FAILURE_MESSAGE_MAX_CHARS) for part in traceback.format_exception(exc)]
    trace = "".join(parts)
    if len(trace) > FAILURE_TRACEBACK_MAX_CHARS:
        trace = CUT_MARK.strip() + "\n" + trace[-FAILURE_TRACEBACK_MAX_CHARS:]
    return {
        "type": cut(name, FAILURE_TYPE_MAX_CHARS),
        "message": cut(_text_of(exc), FAILURE_MESSAGE_MAX_CHARS),
        "traceback": trace,
    }


def cut(text: str, max_chars: int) -> str:
    """`text`, or its start and CUT_MARK when longer than `max_chars`."""
    return text if len(text) <= max_chars else text[: max_chars - len(CUT_MARK)] + CUT_MARK


def _text_of(exc: BaseException) -> str:
    """str(exc), which is the job's own code and may raise too."""
    try:
        return str(exc)
    except Exception as trouble:
        return f"<str() of the {type(exc).__name__} raised {type(trouble).__name__}>"


def _row_count(data: Any) -> int:
    try:
        return len(data)
    except TypeError:
        return 1


def _rows(data: Any, start: int, stop: int) -> Any:
    return data.iloc[start:stop] if hasattr(data, "iloc") else data[start:stop]


def _concat(parts: list[Any]) -> Any:
    import numpy as np
    import pandas as pd

    first = parts[0]
    if isinstance(first, np.ndarray):
        return np.concatenate(parts)
    if isinstance(first, pd.DataFrame | pd.Series):
        return pd.concat(parts)
    if isinstance(first, list):
        return [item for part in parts for item in part]
    raise UnsupportedResult(
        f"predict returned a {type(first).__qualname__} per batch, which giskard cannot join; "
        "ask for no progress to predict in one piece"
    )
