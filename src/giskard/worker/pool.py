"""The worker's executor processes: one per job it may run at once, replaced when broken."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from dataclasses import dataclass

from giskard.janitor import Janitor
from giskard.worker.cache import CacheMirror
from giskard.worker.executor import ExecutorOptions, ExecutorProcess

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class _Slot:
    executor: ExecutorProcess | None = None
    starting: asyncio.Task[ExecutorProcess] | None = None
    busy: bool = False


class ExecutorPool:
    """`size` executors, started ahead of the first job and kept warm.

    A job takes a free slot, preferring the executor that already holds its inputs, and gives
    it back; a slot given back as broken gets a fresh process, started at once so the next
    job does not wait for it more than it must.
    """

    def __init__(self, size: int, options: ExecutorOptions) -> None:
        self.size = size
        self._options = options
        self._slots = [_Slot() for _ in range(size)]
        self._free = asyncio.Semaphore(size)
        self._closing = False
        # Ends the executors' trees if this process dies without closing the pool.
        self._janitor = Janitor()

    def start(self) -> None:
        """Start every executor in the background."""
        for slot in self._slots:
            if slot.executor is None and slot.starting is None:
                self._start(slot)

    async def acquire(self, inputs: Collection[str]) -> ExecutorProcess:
        """A running executor for a job with these inputs; waits for a free slot."""
        await self._free.acquire()
        free = [slot for slot in self._slots if not slot.busy]
        slot = max(free, key=lambda s: len(s.executor.cached & set(inputs)) if s.executor else -1)
        slot.busy = True
        try:
            return await self._running(slot)
        except BaseException:
            slot.busy = False
            self._free.release()
            raise

    def release(self, executor: ExecutorProcess, *, broken: bool) -> None:
        """Give the executor back; a broken one is killed and replaced."""
        slot = next((s for s in self._slots if s.executor is executor), None)
        if slot is None:  # a job abandoned at the end of a drain, after close()
            executor.kill()
            return
        if broken or not executor.alive:
            executor.kill()
            slot.executor = None
            if not self._closing:
                self._start(slot)
        slot.busy = False
        self._free.release()

    @property
    def caches(self) -> list[CacheMirror]:
        """The worker's views of its running executors' caches."""
        return [slot.executor.cache for slot in self._slots if slot.executor is not None]

    @property
    def cache_limit_bytes(self) -> int:
        return self._options.cache_bytes * self.size

    @property
    def pids(self) -> list[int]:
        return [slot.executor.pid for slot in self._slots if slot.executor is not None]

    def closing(self) -> None:
        """The worker is stopping: executors given back broken are not replaced."""
        self._closing = True

    async def close(self) -> None:
        self._closing = True
        for slot in self._slots:
            if slot.starting is not None:
                slot.starting.cancel()
        executors = [slot.executor for slot in self._slots if slot.executor is not None]
        await asyncio.gather(*(executor.close() for executor in executors))
        for slot in self._slots:
            slot.executor = None
        await asyncio.to_thread(self._janitor.close)

    async def _running(self, slot: _Slot) -> ExecutorProcess:
        if slot.executor is not None:
            if slot.executor.alive:
                return slot.executor
            slot.executor.kill()  # died between jobs: what it left goes with it
            slot.executor = None
        if slot.starting is None:
            self._start(slot)
        assert slot.starting is not None
        # Shielded: a job cancelled while it waits must not abort the start for the next one.
        slot.executor = await asyncio.shield(slot.starting)
        return slot.executor

    def _start(self, slot: _Slot) -> None:
        task = asyncio.create_task(ExecutorProcess.start(self._options, self._janitor))
        slot.starting = task

        def started(done: asyncio.Task[ExecutorProcess]) -> None:
            slot.starting = None
            if done.cancelled():
                return
            if done.exception() is not None:
                logger.error("%s", done.exception())
                return
            slot.executor = done.result()

        task.add_done_callback(started)
