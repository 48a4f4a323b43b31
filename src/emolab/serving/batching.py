"""Micro-batching: concurrent requests to one model are gathered for up to ``max_wait_ms`` or ``max_batch``
items (the model's :class:`~emolab.serving.settings.BatchSettings`) and run as one batch, in a worker thread so
inference never blocks the event loop."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from emolab.serving.settings import BatchSettings


@dataclass
class _Request:
    inputs: list  # texts, or uint8 images (H, W)
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """One per served model. ``await submit(inputs)`` returns the ``(len(inputs), K)`` probabilities.

    A single consumer task takes the first waiting request and every request already queued behind it (they
    piled up while the previous batch ran), then waits up to ``max_wait_ms`` for more, until the batch holds
    ``max_batch`` items; the batch runs in a one-thread executor (one model call at a time: the cores are
    shared by every request anyway). Under load batches form without waiting; alone, a request waits at
    most ``max_wait_ms``. When a batch fails, its requests run again one by one, so that only the request
    the model fails on gets the error. ``on_batch(size)`` and ``on_queue(depth)`` report to the metrics."""

    def __init__(self, predict: Callable[[list], np.ndarray], batch: BatchSettings = BatchSettings(), *,
                 on_batch: Callable[[int], None] = lambda n: None, on_queue: Callable[[int], None] = lambda n: None):
        self.predict, self.batch = predict, batch
        self.max_batch, self.max_wait = batch.max_batch, batch.max_wait_ms / 1000.0
        self.on_batch, self.on_queue = on_batch, on_queue
        self.queue: asyncio.Queue[_Request] | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emolab-batch")
        self.task: asyncio.Task | None = None
        self.queued_items = 0

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, inputs: list) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        self.queued_items += len(inputs)
        self.on_queue(self.queued_items)
        await self.queue.put(_Request(list(inputs), future))
        return await future

    async def _gather(self) -> list[_Request]:
        first = await self.queue.get()
        batch, size = [first], len(first.inputs)
        while size < self.max_batch and not self.queue.empty():
            nxt = self.queue.get_nowait()
            batch.append(nxt)
            size += len(nxt.inputs)
        deadline = time.perf_counter() + self.max_wait
        while size < self.max_batch:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            try:
                nxt = await asyncio.wait_for(self.queue.get(), timeout=left)
            except asyncio.TimeoutError:
                break
            batch.append(nxt)
            size += len(nxt.inputs)
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            live = [r for r in batch if not r.future.done()]  # a request that timed out is not computed
            items = [x for r in live for x in r.inputs]
            self.queued_items -= sum(len(r.inputs) for r in batch)
            self.on_queue(self.queued_items)
            if not items:
                continue
            self.on_batch(len(items))
            try:
                probs = await loop.run_in_executor(self.executor, self._predict, items)
            except Exception as exc:  # noqa: BLE001 - handed to the request(s) it came from
                if len(live) == 1:
                    if not live[0].future.done():
                        live[0].future.set_exception(exc)
                    continue
                await self._one_by_one(live)  # one bad request must not fail the others batched with it
                continue
            start = 0
            for r in live:
                if not r.future.done():
                    r.future.set_result(probs[start:start + len(r.inputs)])
                start += len(r.inputs)

    async def _one_by_one(self, live: list[_Request]) -> None:
        """After a failed batch: each of its requests alone, so only the one(s) the model fails on fail."""
        loop = asyncio.get_running_loop()
        for r in live:
            if r.future.done():
                continue
            self.on_batch(len(r.inputs))
            try:
                probs = await loop.run_in_executor(self.executor, self._predict, r.inputs)
            except Exception as exc:  # noqa: BLE001 - this request's own failure
                if not r.future.done():
                    r.future.set_exception(exc)
                continue
            if not r.future.done():
                r.future.set_result(probs)

    def _predict(self, items: list) -> np.ndarray:
        if items and isinstance(items[0], np.ndarray):
            return self.predict(np.stack(items))
        return self.predict(items)

