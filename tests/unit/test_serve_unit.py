"""Server launcher checks that need no running server."""

import pytest

from generator.errors import ServerError, UsageError
from generator.repository.generate import generate
from generator.repository.options import RepositoryOptions
from generator.serve.server import TritonServer, error_lines, required_backends


def test_required_backends(contract_onnx, tmp_path):
    generate(contract_onnx, "cpu", tmp_path / "cpu", RepositoryOptions())
    assert required_backends(tmp_path / "cpu") == {
        "detector": "onnxruntime", "detector_postprocess": "python", "detector_preprocess": "python"}


def test_bundled_server_refuses_a_cpu_repository(contract_onnx, tmp_path):
    generate(contract_onnx, "cpu", tmp_path / "cpu", RepositoryOptions())
    server = TritonServer(tmp_path / "cpu")
    with pytest.raises(UsageError, match="detector needs the 'onnxruntime' backend.*--target embedded"):
        server.check_repository(server.install())


def test_empty_repository_is_refused(tmp_path):
    server = TritonServer(tmp_path)
    with pytest.raises(UsageError, match="no model folders"):
        server.check_repository(server.install())


def test_busy_port_is_reported(contract_onnx, tmp_path):
    import socket

    generate(contract_onnx, "embedded", tmp_path / "r", RepositoryOptions())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ServerError, match=f"HTTP port {port} on 127.0.0.1 is not free"):
            TritonServer(tmp_path / "r", http_port=port, grpc_port=0, metrics_port=0).start()


def test_error_lines_pick_triton_errors():
    log = ["I1130 05:07:41 model.cc] loading\n", "E1130 05:07:42 model_lifecycle.cc:654] failed to load 'x'\n",
           "| x     | 1       | UNAVAILABLE: Internal: boom |\n", "Error: Failed to initialize NVML\n"]
    assert error_lines(log) == [log[1].rstrip(), log[2].rstrip()]


def test_unknown_tritonserver_binary(tmp_path):
    with pytest.raises(ServerError, match="tritonserver not found: /no/such/tritonserver"):
        TritonServer(tmp_path, tritonserver="/no/such/tritonserver").install()
