"""``tritonforge serve``: run until Ctrl-C / SIGTERM, or until the server dies."""

from __future__ import annotations

import signal
import time
from typing import Callable

from generator.errors import ServerError
from generator.serve.server import TritonServer, error_lines


class _Stop(Exception):
    pass


def _raise_stop(signum, frame):  # noqa: ARG001
    raise _Stop()


def serve_forever(server: TritonServer, timeout: float, echo: Callable[[str], None]) -> int:
    """Start, wait for readiness, print endpoints, then wait; returns the exit code."""
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        server.start()
        server.wait_ready(timeout)
        e = server.endpoints
        echo(f"Triton is ready on {server.repository}")
        echo(f"  HTTP     {e.http}\n  gRPC     {e.grpc}\n  metrics  {e.metrics}")
        echo("Ctrl-C stops it.")
        while server.process.poll() is None:
            time.sleep(0.5)
        lines = error_lines(server.log) or list(server.log)[-10:]
        raise ServerError(f"Triton exited unexpectedly (code {server.process.returncode}):\n  "
                          + "\n  ".join(line.rstrip() for line in lines))
    except (KeyboardInterrupt, _Stop):
        code = server.stop()
        echo(f"Triton stopped (exit code {code}).")
        return 0
    except BaseException:
        server.stop()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
