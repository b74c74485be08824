"""``tritonforge serve``: run until Ctrl-C / SIGTERM, or until the server dies or one of
its models stops working (``watch.ModelWatch``): then stop it and exit non-zero, naming
the model, so that a supervisor restarts it."""

from __future__ import annotations

import signal
import time
from typing import Callable, List, Sequence

from generator.errors import ServerError
from generator.serve.server import TritonServer, error_lines
from generator.serve.watch import ModelWatch


class _Stop(Exception):
    pass


def _raise_stop(signum, frame):  # noqa: ARG001
    raise _Stop()


def model_names(server: TritonServer) -> List[str]:
    """The models Triton serves from the repository: one folder with a config.pbtxt each."""
    return sorted(p.parent.name for p in server.repository.glob("*/config.pbtxt"))


def endpoint_lines(server: TritonServer) -> List[str]:
    """The addresses clients use, with the gRPC TLS mode."""
    e, tls = server.endpoints, server.grpc_tls
    grpc = e.grpc
    if tls is not None:
        grpc = f"grpcs://{e.grpc}  (TLS{', mutual: clients need a certificate' if tls.mutual else ''})"
    return [f"  HTTP     {e.http}", f"  gRPC     {grpc}", f"  metrics  {e.metrics}"]


def serve_forever(server: TritonServer, timeout: float, echo: Callable[[str], None], poll: float = 0.5,
                  notes: Sequence[str] = ()) -> int:
    """Start, wait for readiness, print endpoints (and ``notes``), then watch; returns the exit code."""
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        server.start()
        server.wait_ready(timeout)
        watch = ModelWatch(server, model_names(server)).start()
        echo(f"Triton is ready on {server.repository}")
        echo("\n".join([*endpoint_lines(server), *notes]))
        echo("Ctrl-C stops it.")
        while server.process.poll() is None:
            problem = watch.problem()
            if problem:
                raise ServerError(f"{problem}; stopping Triton on {server.repository}")
            time.sleep(poll)
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
