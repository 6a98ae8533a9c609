"""The console's worker pages: /workers/<name or worker_id> shows one worker, its identity and
environment, its packages (searchable), what its cache holds and its jobs of the last hour."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from giskard.hub.console.charts import job_charts
from giskard.hub.console.history import KEPT_S, History
from giskard.hub.console.pages import PageRenderer
from giskard.hub.registry import WorkerRegistry
from giskard.rpc.v1 import worker_pb2
from giskard.sizes import format_size
from giskard.worker_info import info_from_proto

NO_SUCH_WORKER = "no such worker"
# What the page lists of a worker's cache report, whatever the worker sent.
CACHED_LISTED = 10
ADDRESS_SHOWN = 12  # hex digits of an input's BLAKE3: enough to tell it from the others


class WorkerPages:
    """One worker's page, from the hub's status (`status`, as HubClient.status) or, for a
    worker that left lately, from what the registry remembers of it, with its jobs of the
    last hour from `history`; `page` renders a logged-in reader's page."""

    def __init__(
        self,
        status: Callable[[], dict[str, Any]],
        registry: WorkerRegistry,
        history: History,
        page: PageRenderer,
    ) -> None:
        self._status = status
        self._registry = registry
        self._history = history
        self._page = page

    async def worker(self, request: Request) -> Response:
        worker = self._find(request.path_params["worker"])
        if worker is None:
            raise HTTPException(404, NO_SUCH_WORKER)
        query = request.query_params.get("q", "")
        return self._page(
            request,
            "worker.html.j2",
            worker=worker,
            query=query,
            packages=matching_packages(worker["packages"], query),
            cache=self._cache(worker),
            charts=job_charts(self._history.per_minute(worker["worker_id"]), KEPT_S),
        )

    def _cache(self, worker: dict[str, Any]) -> dict[str, Any] | None:
        """What the connected worker's caches held when it last said; None if it never did
        (an older worker, one that left)."""
        session = self._registry.named(worker["name"])
        if session is None or session.info.worker_id != worker["worker_id"]:
            return None
        return cache_view(session.cache) if session.cache is not None else None

    def _find(self, ref: str) -> dict[str, Any] | None:
        """The listed worker that `ref` names (its name or worker_id), else the latest one
        that left under it."""
        for worker in self._status()["workers"]:
            if ref in (worker["name"], worker["worker_id"]):
                return worker
        for departed in reversed(self._registry.departed()):
            if ref in (departed.info.name, departed.info.worker_id):
                left = {"left_at": departed.left_at, "why": departed.why}
                return {
                    **info_from_proto(departed.info),
                    **left,
                    "connected_at": departed.connected_at,
                }
        return None


def matching_packages(packages: dict[str, str], query: str) -> dict[str, str]:
    """The packages whose name holds `query`, case aside (the page's box does the same)."""
    query = query.strip().lower()
    return {name: version for name, version in packages.items() if query in name.lower()}


def cache_view(report: worker_pb2.CacheReport) -> dict[str, Any]:
    """A worker's cache report as its page shows it."""
    return {
        "entries": report.entries,
        "size": _size(report.size_bytes),
        "limit": _size(report.limit_bytes),
        "largest": [_cached(item) for item in report.largest[:CACHED_LISTED]],
        "latest": [_cached(item) for item in report.latest[:CACHED_LISTED]],
    }


def _cached(item: worker_pb2.CachedInput) -> dict[str, Any]:
    return {
        "address": item.blake3[:ADDRESS_SHOWN],
        "size": _size(item.size),
        "last_used_at": item.last_used_at,
    }


def _size(size: int) -> dict[str, Any]:
    return {"bytes": size, "text": format_size(size)}
