"""Where hunts run, for the API and the console alike: threads of their own, a few at
once, each stopped when its client goes away."""

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from fastapi import Request

from vigil.errors import Overloaded

T = TypeVar("T")


class Hunts:
    """Where hunts run: threads of their own, never the pool requests share with ingest; a
    hunt past the places free is refused at once, not queued."""

    def __init__(self, at_once: int) -> None:
        self.at_once = at_once
        self.slots = anyio.CapacityLimiter(at_once)
        self.threads = anyio.CapacityLimiter(at_once)

    async def run(self, request: Request, run: Callable[[threading.Event], T]) -> T:
        """Run a hunt in a thread of its own, stopped as soon as its client goes away; 503
        at once when every hunt place is taken (the rest of the API is never kept waiting
        for a hunt)."""
        try:
            self.slots.acquire_nowait()
        except anyio.WouldBlock:
            raise Overloaded(f"{self.at_once} hunts are running; try again shortly", 2.0) from None
        try:
            return await self._watched(request, run)
        finally:
            self.slots.release()

    async def _watched(self, request: Request, run: Callable[[threading.Event], T]) -> T:
        cancel = threading.Event()

        async def watch() -> None:
            while not cancel.is_set():
                if await request.is_disconnected():
                    cancel.set()
                    return
                await anyio.sleep(0.2)

        outcome: list[Any] = []

        async def work() -> None:
            try:
                outcome.append(await anyio.to_thread.run_sync(run, cancel, limiter=self.threads))
            except Exception as exc:  # raised below, outside the task group (no group wrap)
                outcome.append(exc)
            finally:
                cancel.set()

        async with anyio.create_task_group() as group:
            group.start_soon(watch)
            await work()
        if isinstance(outcome[0], Exception):
            raise outcome[0]
        return outcome[0]  # type: ignore[no-any-return]
