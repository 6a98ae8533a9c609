"""Progress reporting from inside a job.

Code running in a worker job (a function sent with `HubClient.call`, or a model) may call
`report_progress(done, total)`; the client sees it through its `on_progress` callback. Outside
a job it does nothing, so the same code runs locally unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

_reporter: Callable[[int, int], None] | None = None


def report_progress(done: int, total: int) -> None:
    """Tell the client that `done` of `total` units of the running job are finished."""
    reporter = _reporter  # read once: the job may end meanwhile, in another thread
    if reporter is not None:
        reporter(int(done), int(total))


def set_reporter(reporter: Callable[[int, int], None] | None) -> None:
    """Install the function that sends progress (the executor does, around each job)."""
    global _reporter
    _reporter = reporter
