"""Running jobs' user code. Pure functions of their inputs; no transport here."""

from __future__ import annotations

import traceback
from typing import Any

from giskard.rpc.v1 import common_pb2


def load_model(blob: bytes | bytearray) -> Any:
    """Deserialise a model sent by the hub (cloudpickle: code travels hub to worker only)."""
    import cloudpickle

    return cloudpickle.loads(blob)


def predict(model: Any, data: Any, method: str) -> Any:
    """`getattr(model, method)(data)`, with a clear error when the method does not exist."""
    function = getattr(model, method, None)
    if not callable(function):
        raise AttributeError(f"{type(model).__name__} has no method {method!r}")
    return function(data)


def failure_from(exc: BaseException) -> common_pb2.JobFailure:
    """The wire form of an exception raised by a job."""
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    return common_pb2.JobFailure(
        type=name,
        message=str(exc),
        traceback="".join(traceback.format_exception(exc)),
    )
