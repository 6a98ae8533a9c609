"""A job's end reason between its wire form (the protocol's EndReason enum) and EndReason."""

from __future__ import annotations

from giskard.errors import EndReason
from giskard.rpc.v1 import common_pb2

_PREFIX = "END_REASON_"


def to_proto(reason: EndReason) -> common_pb2.EndReason.ValueType:
    return common_pb2.EndReason.Value(_PREFIX + reason.name)


def from_proto(value: int) -> EndReason | None:
    """The reason; None for END_REASON_UNSPECIFIED or a value this version does not know."""
    try:
        name = common_pb2.EndReason.Name(value)  # type: ignore[arg-type]
    except ValueError:
        return None
    return EndReason.__members__.get(name.removeprefix(_PREFIX))
