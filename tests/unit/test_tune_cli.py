"""``tritonforge tune`` refuses clearly (exit 2) before starting anything: not a generated
repository, a target the bundled server cannot run, bad --concurrency, --p99-ms <= 0, a
budget that cannot hold one level of the default, unknown --knobs."""

import pytest
from click.testing import CliRunner

from generator.cli import cli
from generator.repository.generate import generate
from generator.repository.targets import options_for


@pytest.fixture(scope="module")
def embedded(contract_onnx, tmp_path_factory):
    return generate(contract_onnx, "embedded", tmp_path_factory.mktemp("cli") / "repo", options_for("embedded")).path


def _tune(*args):
    return CliRunner().invoke(cli, ["tune", *map(str, args)])


@pytest.mark.parametrize("args, message", [
    (["--concurrency", "1,x"], "--concurrency: expected comma-separated integers"),
    (["--concurrency", "0,4"], "--concurrency: levels must be integers >= 1"),
    (["--p99-ms", "0"], "--p99-ms must be > 0, got 0"),
    (["--p99-ms", "-5"], "--p99-ms must be > 0, got -5"),
    (["--budget", "0.01", "--duration", "4"], "--budget 0.01 min cannot measure even one --duration 4 s level"),
    (["--rounds", "0"], "--rounds must be >= 1"),
    (["--knobs", "threads"], "--knobs: unknown threads"),
])
def test_bad_options_exit_2_naming_the_option(embedded, args, message):
    result = _tune(embedded, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_not_a_generated_repository(tmp_path):
    (tmp_path / "m").mkdir()
    result = _tune(tmp_path)
    assert result.exit_code == 2
    assert "not a repository written by `tritonforge generate` (no tritonforge.json)" in result.output


def test_a_target_the_bundled_server_cannot_run_points_to_tritonserver(contract_onnx, tmp_path):
    repo = generate(contract_onnx, "cpu", tmp_path / "cpu", options_for("cpu")).path
    result = _tune(repo, "--budget", "1")
    assert result.exit_code == 2, result.output
    assert "needs the 'onnxruntime' backend" in result.output and "--tritonserver" in result.output
