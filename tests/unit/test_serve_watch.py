"""The serve watch without Triton: log lines, instance names, and real stand-in stub
processes (a Python child whose command line looks like Triton's stub's)."""

import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from generator.serve import watch
from generator.serve.server import Endpoints, free_port

LOAD_FAILED = ('E1130 08:03:20.569219 26530 model_lifecycle.cc:642] "failed to load \'shapes_postprocess\' version 1: '
               'Internal: RuntimeError: weights are missing on purpose\\n\\nAt:\\n  /r/shapes_postprocess/1/model.py'
               '(24): initialize\\n"\n')


def _server(lines=(), pid=None):
    port = free_port()  # nothing listens: readiness gives no answer
    return SimpleNamespace(log=list(lines), lines_read=len(lines), process=SimpleNamespace(pid=pid or os.getpid()),
                           endpoints=Endpoints("127.0.0.1", port, port, port))


def test_instance_names_map_to_models():
    assert watch.instance_model("shapes_postprocess_0_0") == "shapes_postprocess"
    assert watch.instance_model("my_model_2_13") == "my_model"
    assert watch.instance_model("plain") == "plain"


def test_failed_loads_are_read_from_tritons_log():
    assert watch.failed_loads(["I... loading\n", LOAD_FAILED]) == {
        "shapes_postprocess": "Internal: RuntimeError: weights are missing on purpose"}


def test_log_lines_name_the_model():
    server = _server(["I1130 starting\n"])
    w = watch.ModelWatch(server, ["shapes"], ready_every=3600).start()
    assert w.problem() is None
    server.log.append("E1130 python_be.cc] Stub process 'shapes_preprocess_0_1' is not healthy.\n")
    server.lines_read += 1
    assert w.problem() == ("model 'shapes_preprocess': Triton reports its Python backend stub "
                           "'shapes_preprocess_0_1' is not healthy")
    assert w.problem() is None  # each line is read once
    server.log.append(LOAD_FAILED)
    server.lines_read += 1
    assert w.problem() == "model 'shapes_postprocess' failed to load: Internal: RuntimeError: weights are missing on purpose"


def test_no_answer_from_the_http_endpoint_is_not_a_verdict():
    w = watch.ModelWatch(_server(), ["shapes"], ready_every=0).start()
    assert w.problem() is None


@pytest.fixture()
def fake_stub(tmp_path):
    """A child process whose command line is ``.../triton_python_backend_stub <repo>/mymodel/1/model.py``."""
    model_py = tmp_path / "repo" / "mymodel" / "1" / "model.py"
    model_py.parent.mkdir(parents=True)
    model_py.write_text("import time\ntime.sleep(120)\n")
    proc = subprocess.Popen([str(tmp_path / watch.STUB), str(model_py)], executable=sys.executable)
    deadline = time.monotonic() + 10
    while proc.pid not in watch.stub_processes(os.getpid()) and time.monotonic() < deadline:
        time.sleep(0.05)
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_dead_stub_names_its_model(fake_stub):
    assert watch.stub_processes(os.getpid()) == {fake_stub.pid: "mymodel"}
    w = watch.ModelWatch(_server(), ["mymodel"], ready_every=3600).start()
    assert w.problem() is None
    os.kill(fake_stub.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while watch.process_state(fake_stub.pid) not in ("Z", None) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert w.problem() == (f"model 'mymodel': its Python backend stub process (pid {fake_stub.pid}) died; "
                           "Triton would fail every request to it")
    fake_stub.wait()  # reaped: gone from /proc
    assert "exited" in w.problem()
