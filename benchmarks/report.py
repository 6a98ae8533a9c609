"""Collects every cell of the run, checks the targets, prints the table, saves JSON."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import Latency, one_line

SYSTEMS = ("giskard", "grpc", "inprocess", "dask", "ray")
HEADERS = ("giskard", "raw gRPC", "in-process", "Dask", "Ray")
CELL_WIDTH = 40  # longer error messages are cut in the table and printed in full below it


@dataclass
class Cell:
    value: float | None = None
    note: str = ""  # "error: ..." or "n/a: ..." when there is no value
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Measure:
    key: str
    label: str
    unit: str


MEASURES = (
    Measure("predict_p50", "1-row predict p50", "ms"),
    Measure("predict_p99", "1-row predict p99", "ms"),
    Measure("throughput", "trivial calls, pipelined", "jobs/s"),
    Measure("throughput_threads", "trivial calls, blocking from 32 threads", "jobs/s"),
    Measure("big_cold", "1M-row predict, cold", "s"),
    Measure("big_warm", "1M-row predict, warm", "s"),
    Measure("cli_help", "`giskard --help`", "ms"),
    Measure("worker_connect", "worker start -> connected", "s"),
    Measure("worker_rss", "idle worker RSS", "MiB"),
    Measure("worker_tree_rss", "idle worker + children RSS", "MiB"),
    Measure("worker_tree_rss_after", "worker + children RSS, after the runs", "MiB"),
)
# Raw gRPC has two latency series: unary calls and messages on an open bidi stream.
GRPC_LATENCY = ("grpc_unary", "grpc_bidi")


class Results:
    def __init__(self) -> None:
        self.cells: dict[tuple[str, str], Cell] = {}
        self.errors: list[str] = []

    def value(self, measure: str, system: str) -> float | None:
        cell = self.cells.get((measure, system))
        return cell.value if cell else None

    def note(self, measure: str, system: str) -> str:
        cell = self.cells.get((measure, system))
        return cell.note if cell else "not run"

    def record(
        self, system: str, measures: tuple[str, ...], measure: Callable[[], Any], print_: bool
    ) -> None:
        """Run `measure()`; it returns a Latency (for p50/p99), a float, or a dict with a
        "value" and details. An exception becomes an error cell, never the end of the run."""
        try:
            self._store(system, measures, measure())
        except Exception as exc:
            self.fail(system, measures, exc)
            return
        if print_:
            shown = ", ".join(f"{m}={_short(self.value(m, system))}" for m in measures)
            print(f"  {system}: {shown}", flush=True)

    def _store(self, system: str, measures: tuple[str, ...], outcome: Any) -> None:
        if isinstance(outcome, Latency):
            details = vars(outcome).copy()
            self.cells[("predict_p50", system)] = Cell(outcome.p50_ms, details=details)
            self.cells[("predict_p99", system)] = Cell(outcome.p99_ms, details=details)
        elif isinstance(outcome, dict) and "value" in outcome:
            details = {k: v for k, v in outcome.items() if k != "value"}
            self.cells[(measures[0], system)] = Cell(outcome["value"], details=details)
        elif isinstance(outcome, dict):
            details = {k: v for k, v in outcome.items() if k not in measures}
            for key in measures:
                self.cells[(key, system)] = Cell(outcome[key], details=details)
        else:
            self.cells[(measures[0], system)] = Cell(float(outcome))

    def fail(self, system: str, measures: tuple[str, ...], exc: BaseException) -> None:
        from benchmarks.bench_giskard import NotAvailable

        text = one_line(exc)
        note = f"n/a: {exc}" if isinstance(exc, NotAvailable) else f"error: {text}"
        for key in measures:
            if (key, system) not in self.cells:
                self.cells[(key, system)] = Cell(note=note)
        if not isinstance(exc, NotAvailable):
            self.errors.append(f"{system} {'/'.join(measures)}: {text}")
        print(f"  {system}: {note}", flush=True)

    def skip(self, system: str, measures: tuple[str, ...], why: str) -> None:
        for key in measures:
            self.cells.setdefault((key, system), Cell(note=f"n/a: {why}"))


def _short(value: float | None) -> str:
    return "-" if value is None else _num(value)


def _num(value: float) -> str:
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


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


def _overhead(results: Results) -> tuple[float, str]:
    g, local, unary, bidi = _need(
        results,
        ("predict_p50", "giskard"),
        ("predict_p50", "inprocess"),
        ("predict_p50", "grpc_unary"),
        ("predict_p50", "grpc_bidi"),
    )
    ratio = (g - local) / (unary + bidi)
    return ratio, f"{_num(g - local)} ms = {ratio:.2f}x"


def _ratio(measure: str, top: str, bottom: str) -> Callable[[Results], tuple[float, str]]:
    def compute(results: Results) -> tuple[float, str]:
        a, b = _need(results, (measure, top), (measure, bottom))
        return a / b, f"{a / b:.2f}x"

    return compute


def _absolute(measure: str, unit: str) -> Callable[[Results], tuple[float, str]]:
    def compute(results: Results) -> tuple[float, str]:
        (value,) = _need(results, (measure, "giskard"))
        return value, f"{_num(value)} {unit}"

    return compute


TARGETS = (
    Target(
        "predict_p50",
        "overhead: giskard - in-process",
        "<= 1.5x (unary + bidi echo)",
        _overhead,
        "<=",
        1.5,
        "x",
    ),
    Target(
        "predict_p50",
        "speed-up: Dask / giskard",
        ">= 6x",
        _ratio("predict_p50", "dask", "giskard"),
        ">=",
        6,
        "x",
    ),
    Target(
        "throughput",
        "giskard",
        ">= 2000 jobs/s",
        _absolute("throughput", "jobs/s"),
        ">=",
        2000,
        " jobs/s",
    ),
    Target(
        "throughput",
        "giskard / Dask",
        ">= 6x",
        _ratio("throughput", "giskard", "dask"),
        ">=",
        6,
        "x",
    ),
    Target(
        "throughput",
        "giskard / Ray",
        ">= 1.3x",
        _ratio("throughput", "giskard", "ray"),
        ">=",
        1.3,
        "x",
    ),
    Target(
        "big_cold",
        "giskard / Ray",
        "<= 0.6x",
        _ratio("big_cold", "giskard", "ray"),
        "<=",
        0.6,
        "x",
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
        "<= 2x",
        _ratio("big_warm", "giskard", "inprocess"),
        "<=",
        2,
        "x",
    ),
    Target("cli_help", "", "<= 150 ms", _absolute("cli_help", "ms"), "<=", 150, " ms"),
    Target("worker_connect", "", "<= 1.5 s", _absolute("worker_connect", "s"), "<=", 1.5, " s"),
    Target("worker_rss", "", "<= 130 MiB", _absolute("worker_rss", "MiB"), "<=", 130, " MiB"),
)
INFORMATIVE = {"predict_p99", "throughput_threads", "worker_tree_rss", "worker_tree_rss_after"}
_OPS = {"<=": operator.le, ">=": operator.ge}


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
        return Verdict(target, value, shown, True, "met")
    return Verdict(target, value, shown, False, f"missed: {got} vs target {limit}")


def _cell(results: Results, measure: str, system: str) -> str:
    if system == "grpc" and measure in ("predict_p50", "predict_p99"):
        parts = []
        for part, tag in zip(GRPC_LATENCY, ("u", "b"), strict=True):
            value = results.value(measure, part)
            parts.append(f"{_num(value)} {tag}" if value is not None else None)
        if all(p is not None for p in parts):
            return " / ".join(parts)  # type: ignore[arg-type]
        return _clip(results.note(measure, "grpc_unary") or results.note(measure, "grpc_bidi"))
    value = results.value(measure, system)
    if value is not None:
        return _num(value)
    cell = results.cells.get((measure, system))
    return _clip(cell.note) if cell else ""


def _clip(text: str) -> str:
    return text if len(text) <= CELL_WIDTH else text[: CELL_WIDTH - 3] + "..."


def table(results: Results) -> tuple[str, list[Verdict]]:
    header = ("measure", *HEADERS, "target", "verdict")
    rows: list[tuple[str, ...]] = []
    verdicts = []
    for measure in MEASURES:
        targets = [t for t in TARGETS if t.measure == measure.key]
        values = tuple(_cell(results, measure.key, system) for system in SYSTEMS)
        own = next((t for t in targets if not t.label), None)
        if own is not None:
            verdict = check(own, results)
            verdicts.append(verdict)
            label = f"{measure.label} ({measure.unit})"
            rows.append((label, *values, own.description, verdict.text))
        else:
            note = "informative" if measure.key in INFORMATIVE else ""
            rows.append((f"{measure.label} ({measure.unit})", *values, "", note))
        for target in targets:
            if target is own:
                continue
            verdict = check(target, results)
            verdicts.append(verdict)
            blank = ("",) * (len(SYSTEMS) - 1)
            shown = (verdict.shown, *blank)
            rows.append((f"  {target.label}", *shown, target.description, verdict.text))
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = [_line(header, widths), "-+-".join("-" * w for w in widths)]
    lines += [_line(row, widths) for row in rows]
    return "\n".join(lines), verdicts


def _line(cells: tuple[str, ...], widths: list[int]) -> str:
    return " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()


def save_json(
    path: Path, results: Results, verdicts: list[Verdict], context: dict[str, Any]
) -> None:
    cells: dict[str, dict[str, Any]] = {}
    for (measure, system), cell in sorted(results.cells.items()):
        entry: dict[str, Any] = {"value": cell.value}
        if cell.note:
            entry["note"] = cell.note
        if cell.details:
            entry["details"] = cell.details
        cells.setdefault(measure, {})[system] = entry
    document = {
        **context,
        "units": {m.key: m.unit for m in MEASURES},
        "results": cells,
        "targets": [
            {
                "measure": v.target.measure,
                "label": v.target.label,
                "target": v.target.description,
                "value": v.value,
                "met": v.met,
                "verdict": v.text,
            }
            for v in verdicts
        ],
        "errors": results.errors,
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
