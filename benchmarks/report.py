"""Prints the run's table and saves its JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.results import GRPC_LATENCY, HEADERS, SYSTEMS, Results, number
from benchmarks.targets import TARGETS, Verdict, check

CELL_WIDTH = 40  # longer error messages are cut in the table and printed in full below it


@dataclass(frozen=True)
class Measure:
    key: str
    label: str
    unit: str


MEASURES = (
    Measure("predict_p50", "1-row predict p50, model stored (`put`)", "ms"),
    Measure("predict_p99", "1-row predict p99, model stored (`put`)", "ms"),
    Measure("predict_obj_p50", "1-row predict p50, model passed each call", "ms"),
    Measure("predict_obj_p99", "1-row predict p99, model passed each call", "ms"),
    Measure("throughput", "trivial calls, pipelined (all submitted at once)", "jobs/s"),
    Measure("throughput_threads", "trivial calls, blocking from 32 threads", "jobs/s"),
    Measure("big_cold", "1M-row predict, cold", "s"),
    Measure("big_warm", "1M-row predict, warm", "s"),
    Measure("mem_frame", "cold predict of a big frame, its size", "MiB"),
    Measure("mem_hub", "  peak RSS of the hub", "MiB"),
    Measure("mem_worker", "  peak RSS of the worker process", "MiB"),
    Measure("mem_executor", "  peak RSS of its executor", "MiB"),
    Measure("mem_worker_tree", "  peak RSS of worker + executor, sampled", "MiB"),
    Measure("link_limit", "1 Gbit/s link, its limit: frame bytes / rate", "s"),
    Measure("link_random", "  cold predict over it, random float64", "s"),
    Measure("link_realistic", "  cold predict over it, breast_cancer repeated", "s"),
    Measure("cli_help", "`giskard --help`", "ms"),
    Measure("worker_connect", "worker start -> connected", "s"),
    Measure("worker_rss", "idle worker RSS", "MiB"),
    Measure("worker_tree_rss", "idle worker + children RSS", "MiB"),
    Measure("worker_tree_rss_after", "worker + children RSS, after the runs", "MiB"),
)
# Raw gRPC has two latency series: unary calls and messages on an open bidi stream.
# Rows that say their frame's size: it depends on the settings.
SIZED = ("mem_frame", "link_limit")
INFORMATIVE = {
    "mem_frame",
    "mem_worker_tree",
    "link_limit",
    "worker_tree_rss",
    "worker_tree_rss_after",
}


def _cell(results: Results, measure: str, system: str) -> str:
    if system == "grpc" and measure in ("predict_p50", "predict_p99"):
        parts = []
        for part, tag in zip(GRPC_LATENCY, ("u", "b"), strict=True):
            value = results.value(measure, part)
            parts.append(f"{number(value)} {tag}" if value is not None else None)
        if all(p is not None for p in parts):
            return " / ".join(parts)  # type: ignore[arg-type]
        return _clip(results.note(measure, "grpc_unary") or results.note(measure, "grpc_bidi"))
    value = results.value(measure, system)
    if value is not None:
        return number(value)
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
        label = f"{measure.label}{_rows(results, measure.key)} ({measure.unit})"
        if own is not None:
            verdict = check(own, results)
            verdicts.append(verdict)
            rows.append((label, *values, own.description, verdict.text))
        else:
            note = "informative" if measure.key in INFORMATIVE else ""
            rows.append((label, *values, "", note))
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


def _rows(results: Results, measure: str) -> str:
    """The frame's size, for rows whose size a run chooses (smaller with --quick)."""
    if measure not in SIZED:
        return ""
    cell = results.cells.get((measure, "giskard"))
    rows = cell.details.get("rows") if cell else None
    return f", {rows:,} rows" if rows else ""


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
