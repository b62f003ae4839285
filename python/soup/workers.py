"""The gRPC server's worker threads: few while calls keep moving, more when they stall.

grpcio's sync server runs every call on its executor's threads. Each extra runnable
thread is one more taker of the GIL every time a call makes a syscall, so under load a
pool of 16 threads spends more of the plugin's CPU on hand-offs than on calls (see
docs/bench.md: 4 threads served 32 connections with ~30 % less CPU per call). But a
long-lived stream (GRPCStdio, the broker's StartStream, a user's streaming RPC) holds a
thread for as long as it lasts, so a small fixed pool can starve: every thread waiting
in a stream, the next call queued forever.

:class:`ElasticExecutor` keeps ``core`` threads, and a watcher adds one more whenever
calls wait and none has started for ``grow_after`` seconds (every thread is stuck), up
to ``max_workers``. Threads that joined stay: a plugin that needed them once may again.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any

__all__ = ["ElasticExecutor"]

_Item = tuple[futures.Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class ElasticExecutor(futures.Executor):
    """An executor of ``core`` threads that grows while its queued calls do not start."""

    def __init__(
        self,
        core: int,
        max_workers: int,
        *,
        grow_after: float = 0.05,
        thread_name_prefix: str = "soup-worker",
    ) -> None:
        if not 1 <= core <= max_workers:
            raise ValueError(f"need 1 <= core <= max_workers, got {core} and {max_workers}")
        self._core, self._max, self._grow_after = core, max_workers, grow_after
        self._prefix = thread_name_prefix
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = threading.Semaphore(0)  # released by a thread about to wait for work
        self._submitted = 0
        self._started = 0  # calls taken off the queue: the watcher's sign of progress
        self._waiting = threading.Event()  # set when a call was queued with no thread idle
        self._shutdown = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def thread_count(self) -> int:
        """Worker threads started so far (the watcher not counted)."""
        return len(self._threads)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future[Any]:
        future: futures.Future[Any] = futures.Future()
        with self._lock:
            if self._shutdown.is_set():
                raise RuntimeError("cannot schedule new calls after shutdown")
            self._submitted += 1
            self._queue.put((future, fn, args, kwargs))
            if self._idle.acquire(blocking=False):
                return future  # an idle thread takes it
            if len(self._threads) < self._core:
                self._start_thread()
            else:
                self._watch()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown.set()
            self._waiting.set()  # the watcher ends
            if cancel_futures:
                self._cancel_queued()
            for _ in self._threads:
                self._queue.put(None)  # one stop per thread, after the queued calls
            threads = list(self._threads)
        if wait:
            for thread in threads:
                thread.join()

    def _cancel_queued(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item[0].cancel()

    def _start_thread(self) -> None:
        thread = threading.Thread(
            target=self._work, name=f"{self._prefix}_{len(self._threads)}", daemon=True
        )
        thread.start()
        self._threads.append(thread)

    def _watch(self) -> None:
        """Calls wait for a thread: have the watcher check that they get one (lock held)."""
        if self._watcher is None:
            self._watcher = threading.Thread(
                target=self._watch_loop, name=f"{self._prefix}_watcher", daemon=True
            )
            self._watcher.start()
        self._waiting.set()

    def _watch_loop(self) -> None:
        while self._waiting.wait() and not self._shutdown.is_set():
            started = self._started
            if self._shutdown.wait(self._grow_after):
                return
            with self._lock:
                backlog = self._submitted - self._started
                if backlog and self._started == started and len(self._threads) < self._max:
                    self._start_thread()  # no call started meanwhile: every thread is stuck
                if not backlog:
                    self._waiting.clear()  # the next queued call with no thread idle sets it

    def _work(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                self._idle.release()
                item = self._queue.get()
            if item is None:
                return
            with self._lock:
                self._started += 1
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # the caller's to see, through its future
                future.set_exception(exc)
            else:
                future.set_result(result)
            del item, future, fn, args, kwargs
