"""An admin's control of a connected worker: pause, resume, drain, stop.

The hub tells the worker (which says so in its log and exits for drain and stop), then applies
the order to routing: a paused or draining session gets no new jobs from this moment. A pause
outlives the session: the worker reconnecting is paused again (registry.RememberedPauses).
"""

from __future__ import annotations

import asyncio
import logging

from giskard.hub.registry import WorkerRegistry, WorkerSession
from giskard.rpc.v1 import worker_pb2

logger = logging.getLogger(__name__)

Control = worker_pb2.Control
DOING = {
    Control.PAUSE: "Pausing",
    Control.RESUME: "Resuming",
    Control.DRAIN: "Draining",
    Control.STOP: "Stopping",
}


class WorkerNotReadingError(Exception):
    """The worker's outbox is full: it is not reading, so it cannot be told."""


def control(registry: WorkerRegistry, session: WorkerSession, order: worker_pb2.Control) -> None:
    """Send `order` (its `by` says who gave it; its action one of DOING) to the worker and
    apply it to `session`; WorkerNotReadingError, with nothing changed, if the worker cannot
    be told."""
    try:
        session.outbox.put_nowait(worker_pb2.HubMessage(control=order))
    except asyncio.QueueFull:
        raise WorkerNotReadingError(f"the worker {session.describe()} is not reading") from None
    if order.action in (Control.PAUSE, Control.RESUME):
        registry.set_paused(session, order)
    else:
        registry.drain(session, by=order.by)
    force = " (cancelling its jobs)" if order.action == Control.STOP and order.force else ""
    logger.info("%s worker %s%s, by %s", DOING[order.action], session.describe(), force, order.by)
