"""Dynamic batching: requests that arrive together share one forward pass.

This module is private; use the names re-exported by :mod:`breastus.service`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Generic, TypeVar

from breastus._errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")


class DynamicBatcher(Generic[T, R]):
    """Collect concurrent items into batches and run ``run_batch`` once per batch in ``executor``.

    A batch starts with the first waiting item and takes every item that arrives
    within ``max_wait_s`` (and all already queued), up to ``max_batch``. While a
    batch runs, new items queue, so under load batches fill by themselves; alone,
    an item waits at most ``max_wait_s``.

    Parameters
    ----------
    run_batch : callable
        ``run_batch(items) -> results``, one result per item in order. Runs in
        ``executor`` (keep it a one-thread executor to serialise model calls).
    executor : concurrent.futures.Executor
    max_batch : int, default=16
    max_wait_s : float, default=0.003

    Attributes
    ----------
    batches, items : int
        Batches run and items in them so far (``items / batches``: the mean batch size).

    Raises
    ------
    ConfigError
        If ``max_batch < 1`` or ``max_wait_s < 0``.

    """

    def __init__(
        self,
        run_batch: Callable[[Sequence[T]], Sequence[R]],
        executor: Executor,
        max_batch: int = 16,
        max_wait_s: float = 0.003,
    ) -> None:
        if not isinstance(max_batch, int) or max_batch < 1:
            raise ConfigError(f"max_batch must be an int >= 1. Got {max_batch!r} instead.")
        if not max_wait_s >= 0:
            raise ConfigError(f"max_wait_s must be a float >= 0. Got {max_wait_s!r} instead.")
        self.run_batch = run_batch
        self.executor = executor
        self.max_batch = max_batch
        self.max_wait_s = float(max_wait_s)
        self.batches = 0
        self.items = 0
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] | None = None
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """Queue ``item`` and wait for its result (the exception of its batch, if it failed)."""
        if self._queue is None or self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._work(self._queue))
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def close(self) -> None:
        """Stop the worker; queued items get :class:`asyncio.CancelledError`."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._queue is not None:
            while not self._queue.empty():
                _, future = self._queue.get_nowait()
                future.cancel()
        self._worker = None
        self._queue = None

    async def _collect(self, queue: asyncio.Queue[tuple[T, asyncio.Future[R]]]) -> list[tuple[T, asyncio.Future[R]]]:
        loop = asyncio.get_running_loop()
        batch = [await queue.get()]
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch:
            try:
                batch.append(queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return batch

    async def _work(self, queue: asyncio.Queue[tuple[T, asyncio.Future[R]]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [entry for entry in await self._collect(queue) if not entry[1].cancelled()]
            if not batch:
                continue
            self.batches += 1
            self.items += len(batch)
            try:
                results = await loop.run_in_executor(self.executor, self.run_batch, [item for item, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
