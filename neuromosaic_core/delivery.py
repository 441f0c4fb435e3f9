"""Delivery off the search loop: one daemon thread and one bounded queue per receiver.

Alert channels (:mod:`neuromosaic_core.alerts`) and experiment trackers
(:mod:`neuromosaic_core.trackers`) hand their work to a :class:`QueueWorker`: the search only puts
an item in a queue (never waits), a receiver that is slow or hangs delays only its own later
items, and a full queue drops the item (counted, logged once) rather than holding up the trials.
At the end, :func:`drain` gives every worker one shared deadline to finish what is queued.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from loguru import logger


class QueueWorker:
    """One receiver's thread: ``handle(item)`` for each item offered, in order, then ``close()``.

    ``what`` names the receiver in log lines (``alert channel webhook``); ``describe(item)`` names
    an item (``failure_rate fired``). ``setting`` is the queue-size setting a full queue points
    the user to. Counters: ``delivered``, ``failed``, ``dropped``; ``seconds`` accumulates the time
    ``handle`` took.
    """

    def __init__(self, what: str, handle: Callable[[Any], None], close: Callable[[], None], size: int,
                 setting: str, describe: Callable[[Any], str] = str, thread_name: str = "delivery") -> None:
        self.what, self.handle, self._close, self.setting, self.describe = what, handle, close, setting, describe
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=size)
        self.dropped = self.delivered = self.failed = 0
        self.seconds = 0.0
        self._end = object()
        self.thread = threading.Thread(target=self._loop, name=thread_name, daemon=True)
        self.thread.start()

    def offer(self, item: Any) -> None:
        """Queue ``item`` without waiting; a full queue drops it."""
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1:  # once; drain() gives the count
                logger.warning(f"{self.what}: queue full ({self.setting}={self.queue.maxsize}), it is not keeping up; "
                               f"dropped {self.describe(item)}")

    def _loop(self) -> None:
        while True:
            item = self.queue.get()
            if item is self._end:
                break
            started = time.perf_counter()
            try:
                self.handle(item)
                self.delivered += 1
            except Exception as exc:
                self.failed += 1
                logger.warning(f"{self.what}: {self.describe(item)} not delivered: {type(exc).__name__}: {exc}")
            finally:
                self.seconds += time.perf_counter() - started
        try:
            self._close()
        except Exception as exc:
            logger.warning(f"{self.what}: close failed: {type(exc).__name__}: {exc}")

    def stop(self) -> None:
        """Queue the end marker: the thread delivers what is queued, closes the receiver and ends."""
        while True:  # the end marker must get in, even behind a full queue of a hung receiver
            try:
                self.queue.put_nowait(self._end)
                return
            except queue.Full:
                try:
                    self.queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass


def drain(workers: Sequence[QueueWorker], seconds: float, setting: str) -> None:
    """Stop ``workers`` and wait up to ``seconds`` in all for them to deliver what is queued;
    log what is given up (``setting``: the drain setting to raise) and what was dropped."""
    deadline = time.monotonic() + seconds
    for worker in workers:
        worker.stop()
    for worker in workers:
        worker.thread.join(max(0.0, deadline - time.monotonic()))
        if worker.thread.is_alive():
            logger.warning(f"{worker.what}: still delivering after {setting}={seconds:g}; "
                           f"{max(0, worker.queue.qsize() - 1)} queued item(s) given up")
        if worker.dropped:
            logger.warning(f"{worker.what}: {worker.dropped} item(s) dropped in all (queue full)")
