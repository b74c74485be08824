"""Notice, while Triton runs, a model that stopped working, and say which one.

Triton 2.51 keeps reporting a model "ready" after its Python stub process died (killed,
out of memory, a crash in native code): every request to it then fails with "Stub
process '<model>_0_0' is not healthy", and nothing is logged at the default verbosity.
So three signals are watched:

- the stub processes themselves (Linux ``/proc``): children of the server running
  ``triton_python_backend_stub``, each with its model's ``model.py`` on its command line;
  one that exits or turns zombie names its model;
- the server's log: lines saying a stub is not healthy, or that a model failed to load;
- each model's readiness (``GET /v2/models/<name>/ready``), polled every few seconds.
"""

from __future__ import annotations

import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional, Sequence

STUB = "triton_python_backend_stub"
PROC = Path("/proc")
_UNHEALTHY = re.compile(r"Stub process '([^']+)' is not healthy")
_FAILED_LOAD = re.compile(r"failed to load '([^']+)'(?: version \d+)?: (.*?)(?:\\n|\"$|$)")
_INSTANCE = re.compile(r"^(.*)_\d+_\d+$")


def instance_model(instance: str) -> str:
    """Triton names instances ``<model>_<group>_<index>``."""
    match = _INSTANCE.match(instance)
    return match.group(1) if match else instance


def failed_loads(log: Sequence[str]) -> Dict[str, str]:
    """Model -> reason, from Triton's "failed to load '<model>' version N: <reason>" lines."""
    failed: Dict[str, str] = {}
    for line in log:
        match = _FAILED_LOAD.search(line.rstrip())
        if match:
            failed.setdefault(match.group(1), match.group(2).strip())
    return failed


def child_pids(pid: int) -> List[int]:
    """Processes whose parent is ``pid`` (a scan of ``/proc``, which every Linux has)."""
    kids: List[int] = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            kids.append(int(entry.name))
    return kids


def process_state(pid: int) -> Optional[str]:
    """The one-letter state of ``pid`` (``Z`` zombie), None once it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def stub_processes(server_pid: int) -> Dict[int, str]:
    """Python-backend stubs of a tritonserver: pid -> model (the folder of its ``model.py``)."""
    stubs: Dict[int, str] = {}
    for pid in child_pids(server_pid):
        try:
            argv = (PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 1 and os.path.basename(argv[0].decode(errors="replace")) == STUB:
            stubs[pid] = Path(argv[1].decode(errors="replace")).parent.parent.name
    return stubs


class ModelWatch:
    """Started once the server is ready; :meth:`problem` returns a sentence naming the
    model that stopped working, or None."""

    def __init__(self, server, models: Sequence[str], ready_every: float = 2.0):
        self.server = server
        self.models = list(models)
        self.ready_every = ready_every
        self.stubs: Dict[int, str] = {}
        self._lines_seen = 0
        self._next_ready = 0.0

    def start(self) -> "ModelWatch":
        self.stubs = stub_processes(self.server.process.pid) if PROC.is_dir() else {}
        self._lines_seen = self.server.lines_read
        self._next_ready = time.monotonic() + self.ready_every
        return self

    def problem(self) -> Optional[str]:
        return self._dead_stub() or self._log_problem() or self._unready_model()

    def _dead_stub(self) -> Optional[str]:
        for pid, model in sorted(self.stubs.items()):
            state = process_state(pid)
            if state is None or state in "ZX":
                return (f"model '{model}': its Python backend stub process (pid {pid}) "
                        f"{'exited' if state is None else 'died'}; Triton would fail every request to it")
        return None

    def _new_lines(self) -> List[str]:
        count = self.server.lines_read - self._lines_seen
        self._lines_seen += count
        return list(self.server.log)[-count:] if count > 0 else []

    def _log_problem(self) -> Optional[str]:
        lines = self._new_lines()
        for line in lines:
            match = _UNHEALTHY.search(line)
            if match:
                return (f"model '{instance_model(match.group(1))}': Triton reports its Python backend stub "
                        f"'{match.group(1)}' is not healthy")
        failed = failed_loads(lines)
        if failed:
            model, reason = next(iter(failed.items()))
            return f"model '{model}' failed to load: {reason}"
        return None

    def _unready_model(self) -> Optional[str]:
        if time.monotonic() < self._next_ready:
            return None
        self._next_ready = time.monotonic() + self.ready_every
        unready = []
        for model in self.models:
            url = f"http://{self.server.endpoints.http}/v2/models/{model}/ready"
            try:
                with urllib.request.urlopen(url, timeout=5):
                    continue
            except urllib.error.HTTPError as exc:
                unready.append(f"'{model}' (HTTP {exc.code})")
            except (urllib.error.URLError, OSError):
                return None  # no answer is not an answer: the process watch covers a dead server
        if not unready:
            return None
        many = len(unready) > 1
        return (f"{'models' if many else 'model'} {', '.join(unready)} {'are' if many else 'is'} no longer ready "
                f"(GET /v2/models/<name>/ready)")
