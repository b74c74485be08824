"""The tritonclient clients behind a sync :class:`DetectionClient`.

A gRPC client (one channel) is shared by every thread. An HTTP client is not
thread-safe (gevent) and fixes its timeouts when made, so there is one per thread and
timeout: the few most recent per thread are kept, and those of finished threads
(a finished :meth:`DetectionClient.stream`) are closed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable, List, Tuple

_KEEP_PER_THREAD = 4


def close_quietly(client: Any) -> None:
    try:
        client.close()
    except Exception:  # an HTTP client made on another (finished) thread: its sockets go with it
        pass


class Connections:
    """Clients made by ``factory(timeout)``, one shared (``per_thread=False``) or one per thread and timeout."""

    def __init__(self, factory: Callable[[float], Any], per_thread: bool):
        self._factory = factory
        self._per_thread = per_thread
        self._lock = threading.Lock()
        self._clients: "OrderedDict[Hashable, Tuple[threading.Thread, Any]]" = OrderedDict()

    def _key(self, thread: threading.Thread, timeout: float) -> Hashable:
        return (thread.ident, timeout) if self._per_thread else "shared"

    def get(self, timeout: float) -> Any:
        thread = threading.current_thread()
        key = self._key(thread, timeout)
        with self._lock:
            entry = self._clients.get(key)
            if entry is not None and (entry[0] is thread or not self._per_thread):
                self._clients.move_to_end(key)
                return entry[1]
        client = self._factory(timeout)
        with self._lock:
            entry = self._clients.get(key)
            if entry is not None and not self._per_thread:  # another thread made the shared one first
                stale = [client]
                client = entry[1]
            else:
                stale = [entry[1]] if entry is not None else []  # a finished thread's, same ident
                self._clients[key] = (thread, client)
                stale += self._evict(thread)
        for old in stale:
            close_quietly(old)
        return client

    def _evict(self, thread: threading.Thread) -> List[Any]:
        mine = [k for k, (owner, _) in self._clients.items() if owner is thread]
        return [self._clients.pop(k)[1] for k in mine[:-_KEEP_PER_THREAD]] if self._per_thread else []

    def prune(self) -> None:
        """Close the clients of threads that have finished."""
        with self._lock:
            dead = [k for k, (owner, _) in self._clients.items() if self._per_thread and not owner.is_alive()]
            stale = [self._clients.pop(k)[1] for k in dead]
        for old in stale:
            close_quietly(old)

    def close(self) -> None:
        with self._lock:
            stale = [client for _, client in self._clients.values()]
            self._clients.clear()
        for old in stale:
            close_quietly(old)
