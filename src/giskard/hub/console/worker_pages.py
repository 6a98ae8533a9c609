"""The console's worker pages: /workers/<name or worker_id> shows one worker, its identity and
environment, its packages (searchable) and what it reported lately."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from giskard.hub.registry import WorkerRegistry
from giskard.worker.info import info_from_proto

NO_SUCH_WORKER = "no such worker"

# The console's page renderer: a logged-in reader's page, else the login redirect.
PageRenderer = Callable[..., Response]


class WorkerPages:
    """One worker's page, from the hub's status (`status`, as HubClient.status) or, for a
    worker that left lately, from what the registry remembers of it; `page` renders a
    logged-in reader's page."""

    def __init__(
        self,
        status: Callable[[], dict[str, Any]],
        registry: WorkerRegistry,
        page: PageRenderer,
    ) -> None:
        self._status = status
        self._registry = registry
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
        )

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
