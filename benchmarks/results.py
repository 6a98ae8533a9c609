"""Every cell of a run: one value (or why there is none) per measure and system."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.common import Latency, one_line

SYSTEMS = ("giskard", "grpc", "inprocess", "dask", "ray")
HEADERS = ("giskard", "raw gRPC", "in-process", "Dask", "Ray")


@dataclass
class Cell:
    value: float | None = None
    note: str = ""  # "error: ..." or "n/a: ..." when there is no value
    details: dict[str, Any] = field(default_factory=dict)


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
            p50, p99 = measures
            self.cells[(p50, system)] = Cell(outcome.p50_ms, details=details)
            self.cells[(p99, system)] = Cell(outcome.p99_ms, details=details)
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
    return "-" if value is None else number(value)


def number(value: float) -> str:
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"
