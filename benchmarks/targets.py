"""The targets the run is judged by, and their verdicts."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.results import GRPC_LATENCY, HEADERS, SYSTEMS, Results, number


@dataclass(frozen=True)
class Target:
    """`compute(results)` against `limit` with `op`; shown under the row of `measure`."""

    measure: str
    label: str
    description: str
    compute: Callable[[Results], tuple[float, str]]  # the value, and how to show it
    op: str  # "<=" or ">="
    limit: float
    unit: str  # "x" for ratios


def _need(results: Results, *cells: tuple[str, str]) -> list[float]:
    values = []
    for measure, system in cells:
        value = results.value(measure, system)
        if value is None:
            raise _Missing(f"{_header(system)} {_why(results.note(measure, system))}")
        values.append(value)
    return values


class _Missing(Exception):
    pass


def _why(note: str) -> str:
    if note == "n/a: skipped":
        return "skipped"
    if note.startswith("n/a: "):
        return f"n/a ({note.removeprefix('n/a: ')})"
    return "error"


def _header(system: str) -> str:
    if system in GRPC_LATENCY:
        return "raw gRPC"
    return HEADERS[SYSTEMS.index(system)]


def _overhead(measure: str) -> Callable[[Results], tuple[float, str]]:
    """(giskard - in-process) over (unary echo + bidi echo), all p50: a predict is one
    client-to-hub call plus one hop on the worker's open stream."""

    def compute(results: Results) -> tuple[float, str]:
        g, local, unary, bidi = _need(
            results,
            (measure, "giskard"),
            ("predict_p50", "inprocess"),
            ("predict_p50", "grpc_unary"),
            ("predict_p50", "grpc_bidi"),
        )
        ratio = (g - local) / (unary + bidi)
        return ratio, f"{number(g - local)} ms = {ratio:.2f}x"

    return compute


def _ratio(
    measure: str, top: str, bottom: str, bottom_measure: str | None = None
) -> Callable[[Results], tuple[float, str]]:
    """`measure` of system `top` over `bottom_measure` (default: the same) of `bottom`."""

    def compute(results: Results) -> tuple[float, str]:
        a, b = _need(results, (measure, top), (bottom_measure or measure, bottom))
        return a / b, f"{a / b:.2f}x"

    return compute


def _absolute(measure: str, unit: str) -> Callable[[Results], tuple[float, str]]:
    def compute(results: Results) -> tuple[float, str]:
        (value,) = _need(results, (measure, "giskard"))
        return value, f"{number(value)} {unit}"

    return compute


def _latency_targets(p50: str, p99: str) -> tuple[Target, ...]:
    return (
        Target(
            p50,
            "overhead: giskard - in-process",
            "<= 1.5x (unary + bidi echo)",
            _overhead(p50),
            "<=",
            1.5,
            "x",
        ),
        Target(
            p50,
            "speed-up: Dask / giskard",
            ">= 6x",
            _ratio("predict_p50", "dask", "giskard", p50),
            ">=",
            6,
            "x",
        ),
        Target(
            p99, "giskard p99 / p50", "<= 2x", _ratio(p99, "giskard", "giskard", p50), "<=", 2, "x"
        ),
    )


def _rate_targets(measure: str) -> tuple[Target, ...]:
    """Both ways of keeping many jobs in flight, against the peers' pipelined rate."""
    return (
        Target(measure, "", ">= 2000 jobs/s", _absolute(measure, "jobs/s"), ">=", 2000, " jobs/s"),
        Target(
            measure,
            "giskard / Dask",
            ">= 6x",
            _ratio(measure, "giskard", "dask", "throughput"),
            ">=",
            6,
            "x",
        ),
        Target(
            measure,
            "giskard / Ray",
            ">= 1.3x",
            _ratio(measure, "giskard", "ray", "throughput"),
            ">=",
            1.3,
            "x",
        ),
    )


def _per_frame(measure: str) -> Target:
    return Target(
        measure,
        "",
        "<= 2.5x the frame",
        _ratio(measure, "giskard", "giskard", "mem_frame"),
        "<=",
        2.5,
        "x",
    )


TARGETS = (
    *_latency_targets("predict_p50", "predict_p99"),
    *_latency_targets("predict_obj_p50", "predict_obj_p99"),
    *_rate_targets("throughput"),
    *_rate_targets("throughput_threads"),
    Target(
        "big_cold", "giskard / Ray", "<= 0.6x", _ratio("big_cold", "giskard", "ray"), "<=", 0.6, "x"
    ),
    Target(
        "big_cold",
        "giskard / Dask",
        "<= 0.3x",
        _ratio("big_cold", "giskard", "dask"),
        "<=",
        0.3,
        "x",
    ),
    Target(
        "big_warm",
        "giskard / in-process",
        "<= 1.5x",
        _ratio("big_warm", "giskard", "inprocess"),
        "<=",
        1.5,
        "x",
    ),
    _per_frame("mem_hub"),
    _per_frame("mem_worker"),
    _per_frame("mem_executor"),
    # Random bytes cannot be compressed: the link's limit is theirs too, give or take TCP.
    Target(
        "link_random",
        "",
        "<= 1.2x the limit",
        _ratio("link_random", "giskard", "giskard", "link_limit"),
        "<=",
        1.2,
        "x",
    ),
    # Under the limit only if fewer bytes than the frame's cross the link: compression.
    Target(
        "link_realistic",
        "",
        "< 1x the limit",
        _ratio("link_realistic", "giskard", "giskard", "link_limit"),
        "<",
        1,
        "x",
    ),
    Target("cli_help", "", "<= 150 ms", _absolute("cli_help", "ms"), "<=", 150, " ms"),
    Target("worker_connect", "", "<= 1.5 s", _absolute("worker_connect", "s"), "<=", 1.5, " s"),
    Target("worker_rss", "", "<= 130 MiB", _absolute("worker_rss", "MiB"), "<=", 130, " MiB"),
)
_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt}


@dataclass
class Verdict:
    target: Target
    value: float | None
    shown: str
    met: bool | None
    text: str


def check(target: Target, results: Results) -> Verdict:
    try:
        value, shown = target.compute(results)
    except _Missing as missing:
        return Verdict(target, None, "", None, f"n/a: {missing}")
    met = _OPS[target.op](value, target.limit)
    limit = f"{target.op} {target.limit:g}{target.unit}"
    got = f"{value:.2f}x" if target.unit == "x" else f"{value:.4g}{target.unit}"
    if met:
        return Verdict(target, value, shown, True, f"met: {got}" if target.unit == "x" else "met")
    return Verdict(target, value, shown, False, f"missed: {got} vs target {limit}")
