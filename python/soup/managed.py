"""go-plugin's managed clients: ``cleanup_clients()`` kills every client started with
``ClientConfig.managed``, and ``cleanup_clients_on_exit()`` (an opt-in) does it when the
host exits or gets SIGTERM, so a terminated host leaves no plugins behind."""

from __future__ import annotations

import atexit
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Protocol

__all__ = ["cleanup_clients", "cleanup_clients_on_exit", "manage", "release"]


class _Killable(Protocol):
    def kill(self) -> bool: ...


_LOCK = threading.Lock()
_CLIENTS: list[_Killable] = []
_INSTALLED: set[int] = set()


def manage(client: _Killable) -> None:
    with _LOCK:
        _CLIENTS.append(client)


def release(client: _Killable) -> None:
    with _LOCK:
        if client in _CLIENTS:
            _CLIENTS.remove(client)


def cleanup_clients() -> None:
    """Kill every managed client at once (each ``kill()`` is bounded), as go-plugin's
    CleanupClients; the clients are released as they are killed."""
    with _LOCK:
        clients = list(_CLIENTS)
    threads = [threading.Thread(target=c.kill, name="soup-cleanup") for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def cleanup_clients_on_exit(signals: tuple[int, ...] = (signal.SIGTERM,)) -> None:
    """Run :func:`cleanup_clients` at interpreter exit and on ``signals`` (main thread only).

    A handler already installed for a signal is kept and called after the cleanup; with
    the default action, the process then ends by that signal as it would have. A signal
    whose disposition is "ignore" stays ignored. Calling this again changes nothing.
    """
    with _LOCK:
        first = not _INSTALLED
        fresh = [s for s in signals if s not in _INSTALLED]
        _INSTALLED.update(fresh)
    if first:
        atexit.register(cleanup_clients)
    for signum in fresh:
        previous = signal.getsignal(signum)
        if previous is signal.SIG_IGN:
            continue
        signal.signal(signum, _handler(signum, previous))


def _handler(
    signum: int, previous: Callable[[int, FrameType | None], object] | int | None
) -> Callable[[int, FrameType | None], None]:
    def on_signal(received: int, frame: FrameType | None) -> None:
        cleanup_clients()
        if callable(previous):
            previous(received, frame)
            return
        # The default action: end by this signal, as without the handler.
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    return on_signal
