"""Linux ``/proc`` readings the reliability tests assert on: a server's process tree and
its memory, its stub processes, and the addresses its sockets listen on."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List, Set, Tuple

from generator.serve.server import free_port
from generator.serve.watch import child_pids, stub_processes  # noqa: F401  (re-exported for the tests)

PROC = Path("/proc")
PAGE = os.sysconf("SC_PAGE_SIZE")


def descendants(pid: int) -> List[int]:
    out, todo = [], [pid]
    while todo:
        kids = child_pids(todo.pop())
        out += kids
        todo += kids
    return out


def rss_bytes(pid: int) -> int:
    try:
        return int((PROC / str(pid) / "statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def tree_rss(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants (tritonserver + its Python stubs)."""
    return sum(rss_bytes(p) for p in [pid, *descendants(pid)])


def find_tritonserver(parent: int, timeout: float = 30.0) -> int:
    """The tritonserver child of a ``tritonforge serve`` process."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in descendants(parent):
            try:
                if (PROC / str(pid) / "comm").read_text().strip() == "tritonserver":
                    return pid
            except OSError:
                pass
        time.sleep(0.2)
    raise AssertionError(f"no tritonserver under pid {parent}")


def _socket_inodes(pid: int) -> Set[str]:
    inodes = set()
    for fd in (PROC / str(pid) / "fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _decode_address(hex_addr: str) -> str:
    addr, port = hex_addr.split(":")
    raw = bytes.fromhex(addr)
    if len(raw) == 4:
        host = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:  # four little-endian 32-bit words
        host = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
    return f"{host}:{int(port, 16)}"


def listening(pid: int) -> List[Tuple[str, int]]:
    """(address, port) of every TCP socket of ``pid`` in LISTEN state, IPv4 and IPv6."""
    mine = _socket_inodes(pid)
    found = []
    for table in ("tcp", "tcp6"):
        for line in (PROC / "net" / table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in mine:  # 0A: TCP_LISTEN
                host, port = _decode_address(fields[1]).rsplit(":", 1)
                found.append((host, int(port)))
    return sorted(found)


LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def non_loopback_address() -> str:
    """An address of this machine other than loopback (the one its default route uses), or ''."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 9))  # UDP: nothing is sent
            addr = s.getsockname()[0]
        except OSError:
            return ""
    return "" if addr.startswith("127.") or addr == "0.0.0.0" else addr


def start_serve(repo, *extra):
    """``tritonforge serve REPO`` as a user starts it, on free ports: (process, [http, grpc, metrics])."""
    ports = [free_port(), free_port(), free_port()]
    cmd = [sys.executable, "-m", "generator", "serve", str(repo), "--http-port", str(ports[0]),
           "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]), "--timeout", "120", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env), ports


def wait_serve_ready(proc, timeout=150):
    """The output of ``serve`` up to its "ready" message; AssertionError with the output otherwise."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Ctrl-C stops it" in line:
            return "".join(lines)
    raise AssertionError("serve did not get ready:\n" + "".join(lines))


class RssSampler(threading.Thread):
    """Resident memory of a process tree (:func:`tree_rss`), sampled every ``every`` s while
    the ``with`` block runs: ``peak``, ``samples`` and ``series`` (monotonic time, bytes)."""

    def __init__(self, pid: int, every: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.every, self.peak, self.samples = pid, every, 0, 0
        self.series: List[Tuple[float, int]] = []
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            rss = tree_rss(self.pid)
            self.series.append((time.monotonic(), rss))
            self.peak = max(self.peak, rss)
            self.samples += 1
            self.done.wait(self.every)

    def at_middle(self) -> int:
        """The sample nearest the middle of the sampled time (0 without samples)."""
        if not self.series:
            return 0
        middle = (self.series[0][0] + self.series[-1][0]) / 2
        return min(self.series, key=lambda s: abs(s[0] - middle))[1]

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.join()
