"""Line charts as server-rendered SVG data for the console's templates (no JavaScript)."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

from giskard.hub.console.history import Minute

WIDTH, HEIGHT, MARGIN = 600, 160, 30


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    title: str  # shown on hover: the point's time and value


@dataclass(frozen=True)
class Series:
    name: str
    points: tuple[Point, ...]

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)


@dataclass(frozen=True)
class Chart:
    title: str
    top: str  # the value at the top of the y axis, as shown
    series: tuple[Series, ...]


def line_chart(
    title: str, unit: str, named: dict[str, Sequence[tuple[float, float]]], span_s: float
) -> Chart:
    """A chart of the (time.time(), value) series in `named` over the last `span_s`."""
    end = max((t for values in named.values() for t, _ in values), default=0.0)
    start = end - span_s
    top = max((v for values in named.values() for _, v in values), default=0.0) or 1.0

    def point(at: float, value: float) -> Point:
        x = MARGIN + (at - start) / span_s * (WIDTH - 2 * MARGIN)
        y = HEIGHT - MARGIN - value / top * (HEIGHT - 2 * MARGIN)
        clock = datetime.datetime.fromtimestamp(at).strftime("%H:%M:%S")
        return Point(x, y, f"{clock}: {value:.3g} {unit}")

    series = tuple(
        Series(name, tuple(point(at, value) for at, value in values))
        for name, values in named.items()
    )
    return Chart(title, f"{top:.3g} {unit}", series)


def job_charts(minutes: Sequence[Minute], span_s: float) -> list[Chart]:
    """The jobs that ended per minute, and their latency per minute (p50 and p95)."""
    return [
        line_chart(
            "Jobs ended per minute",
            "jobs",
            {"ended": [(m.start, m.ended) for m in minutes]},
            span_s,
        ),
        line_chart(
            "Latency per minute (submitted to ended)",
            "s",
            {
                "p50": [(m.start, m.p50_s) for m in minutes],
                "p95": [(m.start, m.p95_s) for m in minutes],
            },
            span_s,
        ),
    ]
