"""The artifacts a job reads, in the order its code receives them: the hub checks and pins
them, the worker sends them to an executor, and both must agree on the list."""

from __future__ import annotations

from giskard.rpc.v1 import common_pb2


def job_inputs(spec: common_pb2.JobSpec) -> list[tuple[common_pb2.ArtifactRef, str]]:
    """(ref, form) for each input; form is "pickle" (code) or "data" (the safe format).
    A call's keyword arguments come after its positional ones, by name."""
    kind = spec.WhichOneof("kind")
    if kind == "predict":
        return [(spec.predict.model, "pickle"), (spec.predict.data, "data")]
    if kind == "call":
        keywords = [spec.call.kwargs[name] for name in sorted(spec.call.kwargs)]
        arguments = [(a.value, "pickle" if a.pickled else "data") for a in spec.call.args]
        arguments += [(a.value, "pickle" if a.pickled else "data") for a in keywords]
        return [(spec.call.function, "pickle"), *arguments]
    return []
