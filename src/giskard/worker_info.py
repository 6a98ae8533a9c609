"""A worker's info as the wire carries it (WorkerInfo) and as plain values (the `info` job's
result, HubClient.workers): the worker writes it, the hub and clients read it. Apart from
giskard.worker so that reading it loads nothing that runs jobs."""

from __future__ import annotations

from typing import Any

UNAME_FIELDS = ("system", "node", "release", "version", "machine")


def info_to_proto(info: dict[str, Any]) -> Any:
    """The `WorkerInfo` message for a dict made by giskard.worker.info.collect_info."""
    from giskard.rpc.v1 import common_pb2  # the protobuf runtime: only when a message is made

    return common_pb2.WorkerInfo(
        **{k: v for k, v in info.items() if k != "uname"}, uname=common_pb2.Uname(**info["uname"])
    )


def info_from_proto(message: Any) -> dict[str, Any]:
    """The inverse of `info_to_proto`."""
    uname = message.uname
    return {
        "worker_id": message.worker_id,
        "interpreter": message.interpreter,
        "python_version": message.python_version,
        "platform": message.platform,
        "uname": {field: getattr(uname, field) for field in UNAME_FIELDS},
        "pid": message.pid,
        "started_at": message.started_at,
        "hostname": message.hostname,
        "giskard_version": message.giskard_version,
        "packages": dict(sorted(message.packages.items(), key=lambda item: item[0].lower())),
        "hub_address": message.hub_address,
        "name": message.name,
        "labels": dict(sorted(message.labels.items())),
        "environment": message.environment,
    }
