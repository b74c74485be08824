"""``tritonforge deploy`` through click: what it writes and prints, every refusal (exit 2,
nothing written, the options named), and the atomic output folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from generator.cli import cli
from generator.repository.generate import generate
from generator.repository.targets import options_for


@pytest.fixture(scope="module")
def repos(contract_onnx, tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy-cli-repos")
    return {t: generate(contract_onnx, t, root / t, options_for(t, name="shapes")).path for t in ("cpu", "gpu")}


def run(*args):
    return CliRunner().invoke(cli, ["deploy", *map(str, args)])


def load_json(tmp_path: Path, rows) -> Path:
    path = tmp_path / "load.json"
    path.write_text(json.dumps({"endpoint": {"url": "localhost:8001"}, "levels": rows}))
    return path


def row(c, img_s, p99, queue, errors=0):
    return {"concurrency": c, "requests": 100, "errors": errors, "throughput_img_s": img_s, "p50_ms": p99 / 2,
            "p90_ms": p99 * 0.9, "p99_ms": p99, "mean_ms": p99 / 2, "queue_us_per_request": queue}


def test_kubernetes_output_and_report(repos, tmp_path):
    out = tmp_path / "k8s"
    result = run(repos["cpu"], "--out", out, "--name", "shapes-edge", "--namespace", "vision-prod")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "Dockerfile", "README.md", "deploy.json", "kubernetes.yaml", "prometheus-adapter-values.yaml",
        "prometheus-adapter.yaml", "requirements.txt"]
    docs = list(yaml.safe_load_all((out / "kubernetes.yaml").read_text()))
    assert [d["kind"] for d in docs] == ["Deployment", "Service", "NetworkPolicy", "HorizontalPodAutoscaler"]
    assert "checked 5 Kubernetes-native manifests" in result.output  # + the adapter ConfigMap
    assert "kubectl -n vision-prod create secret generic shapes-edge-admin-key" in result.output
    record = json.loads((out / "deploy.json").read_text())
    assert record["deployment"]["namespace"] == "vision-prod" and record["repository"]["target"] == "cpu"
    record.pop("command")  # the command as typed (a reproducer, as every tritonforge record has)
    assert str(repos["cpu"]) not in json.dumps(record), "no machine paths in the record"
    for name in ("kubernetes.yaml", "Dockerfile", "README.md", "prometheus-adapter.yaml"):
        assert str(tmp_path) not in (out / name).read_text() and str(repos["cpu"]) not in (out / name).read_text()
    dockerfile = (out / "Dockerfile").read_text()
    assert "FROM ${TRITON_IMAGE}" in dockerfile and "COPY --from=repository . /models" in dockerfile
    assert "nvcr.io" not in dockerfile and "nvcr.io" not in (out / "README.md").read_text()
    requirements = (out / "requirements.txt").read_text().splitlines()
    assert "numpy<2" in requirements and "opencv-python-headless<4.12" in requirements
    assert "No cluster ran these manifests" in (out / "README.md").read_text()


def test_gpu_pvc_without_plan_warns_and_dockerfile_installs_requirements(repos, tmp_path):
    out = tmp_path / "gpu"
    result = run(repos["gpu"], "--out", out, "--repository", "pvc", "--pvc", "models", "--autoscaler", "keda",
                 "--gpus", "2", "--namespace", "gpu-serving")
    assert result.exit_code == 0, result.output
    assert "has no TensorRT plan yet" in result.output
    dockerfile = (out / "Dockerfile").read_text()
    assert "COPY --from=repository" not in dockerfile and "pycuda" in dockerfile
    assert "# from the repository's requirements.txt:" in (out / "requirements.txt").read_text()
    scaled = list(yaml.safe_load_all((out / "kubernetes.yaml").read_text()))[-1]
    assert scaled["kind"] == "ScaledObject" and not (out / "prometheus-adapter.yaml").exists()


def test_capacity_plan_sets_replicas_and_target(repos, tmp_path):
    load = load_json(tmp_path, [row(1, 40.0, 30.0, 900.0), row(4, 120.0, 60.0, 4200.0), row(8, 150.0, 140.0, 9000.0)])
    out = tmp_path / "planned"
    result = run(repos["cpu"], "--out", out, "--rate", 500, "--p99-ms", 100, "--load", load)
    assert result.exit_code == 0, result.output
    hpa = list(yaml.safe_load_all((out / "kubernetes.yaml").read_text()))[-1]["spec"]
    # 120 img/s x 0.8 = 96 per replica; ceil(500 / 96) = 6; max 12; target 4200 us
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (6, 12)
    assert hpa["metrics"][0]["pods"]["target"]["averageValue"] == "4200"
    assert "=>" in result.output and "replicas: ceil(500 / 96.0) = 6" in result.output
    assert "Capacity plan" in (out / "README.md").read_text()


def test_kserve_concurrency_from_plan(repos, tmp_path):
    load = load_json(tmp_path, [row(2, 80.0, 20.0, 500.0), row(4, 100.0, 45.0, 2500.0)])
    out = tmp_path / "ks"
    result = run(repos["gpu"], "--out", out, "--kind", "kserve", "--repository", "uri", "--storage-uri",
                 "s3://bucket/shapes", "--rate", 100, "--p99-ms", 50, "--load", load, "--headroom", 0.5)
    assert result.exit_code == 0, result.output
    isvc = list(yaml.safe_load_all((out / "kserve.yaml").read_text()))[1]["spec"]["predictor"]
    assert (isvc["minReplicas"], isvc["maxReplicas"], isvc["scaleMetric"], isvc["scaleTarget"]) == (2, 4, "concurrency", 4)


REFUSALS = [
    (("--kind", "kserve", "--autoscaler", "keda"), "--kind kserve with --autoscaler keda"),
    (("--kind", "kserve", "--autoscaler", "hpa"), "--kind kserve with --autoscaler hpa"),
    (("--autoscaler", "kserve"), "--autoscaler kserve needs --kind kserve"),
    (("--repository", "pvc"), "--repository pvc needs --pvc"),
    (("--pvc", "claim"), "--pvc: only with --repository pvc"),
    (("--storage-uri", "s3://b/m"), "--storage-uri: only with --repository uri"),
    (("--repository", "uri"), "--repository uri needs --storage-uri"),
    (("--repository", "uri", "--storage-uri", "pvc://claim/m"), "--kind kubernetes takes s3://, gs://"),
    (("--repository", "uri", "--storage-uri", "http://x/m"), "--kind kubernetes takes s3://, gs://"),
    (("--kind", "kserve", "--repository", "uri", "--storage-uri", "s3://b", "--storage-secret", "creds"),
     "KServe reads object-store credentials"),
    (("--gpus", "1"), "--gpus: the cpu target runs on CPUs"),
    (("--min-replicas", "3", "--max-replicas", "2"), "--min-replicas 3 is above --max-replicas 2"),
    (("--autoscaler", "hpa", "--min-replicas", "0"), "--min-replicas must be >= 1"),
    (("--replicas", "3"), "--replicas: for --autoscaler none"),
    (("--autoscaler", "none", "--max-replicas", "3"), "--autoscaler none takes --replicas"),
    (("--autoscaler", "none", "--queue-target-us", "100"), "--queue-target-us: needs an autoscaler"),
    (("--kind", "kserve", "--queue-target-us", "100"), "KServe scales on concurrency"),
    (("--rate", "10"), "missing --p99-ms, --load"),
    (("--rate", "10", "--p99-ms", "50"), "missing --load"),
    (("--headroom", "0.5"), "--headroom: only with --rate"),
    (("--name", "Bad_Name"), "--name must be a DNS-1123 label"),
    (("--name", "9lives"), "--name must be a DNS-1123 label starting with a letter"),
    (("--name", "a" * 41), "at most 40 characters"),
    (("--namespace", "Vision"), "--namespace must be a DNS-1123 label"),
    (("--admin-key-secret", "bad_secret"), "--admin-key-secret must be a DNS-1123 name"),
    (("--cpu", "two"), "--cpu must be a CPU quantity"),
    (("--memory", "4GB"), "--memory must be a memory quantity"),
    (("--triton-release", "2.51"), "--triton-release must be an NGC release"),
    (("--image", "Bad Image"), "--image is not an image reference"),
    (("--kind", "kserve", "--image", "team/shapes:latest"), "KServe replaces the image tag"),
    (("--pvc-path", "x", "--repository", "pvc", "--pvc", "c", "--kind", "kserve", "--autoscaler", "keda"),
     "--kind kserve with --autoscaler keda"),
    (("--repository", "pvc", "--pvc", "c", "--pvc-path", "../up"), "--pvc-path must be a relative path"),
]


@pytest.mark.parametrize("args,message", REFUSALS, ids=[" ".join(a)[:40] for a, _ in REFUSALS])
def test_refusals_exit_2_and_write_nothing(repos, tmp_path, args, message):
    out = tmp_path / "out"
    result = run(repos["cpu"], "--out", out, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [], "no temporary left behind"


def test_gpu_target_refuses_zero_gpus(repos, tmp_path):
    result = run(repos["gpu"], "--out", tmp_path / "out", "--gpus", "0")
    assert result.exit_code == 2 and "--gpus must be >= 1 for the gpu target" in result.output
    assert not (tmp_path / "out").exists()


def test_not_a_repository(tmp_path):
    (tmp_path / "plain").mkdir()
    result = run(tmp_path / "plain", "--out", tmp_path / "out")
    assert result.exit_code == 2 and f"{tmp_path / 'plain' / 'tritonforge.json'} not found" in result.output
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "tritonforge.json").write_text('{"target": "cpu"}')
    result = run(tmp_path / "broken", "--out", tmp_path / "out")
    assert result.exit_code == 2 and "missing ensemble, backends, options" in result.output
    assert not (tmp_path / "out").exists()


def test_capacity_refusals(repos, tmp_path):
    load = load_json(tmp_path, [row(1, 40.0, 30.0, 900.0), row(4, 120.0, 60.0, None)])
    result = run(repos["cpu"], "--out", tmp_path / "o", "--rate", 10, "--p99-ms", 10, "--load", load)
    assert result.exit_code == 2 and "no level" in result.output and "best p99 is 30.0 ms at concurrency 1" in result.output
    result = run(repos["cpu"], "--out", tmp_path / "o", "--rate", 10, "--p99-ms", 100, "--load", load)
    assert result.exit_code == 2 and "rerun tritonforge bench --url" in result.output
    assert not (tmp_path / "o").exists()


def test_non_empty_out_needs_force(repos, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("x")
    assert run(repos["cpu"], "--out", out).exit_code == 2
    assert (out / "old.txt").exists()
    result = run(repos["cpu"], "--out", out, "--force")
    assert result.exit_code == 0, result.output
    assert not (out / "old.txt").exists() and (out / "kubernetes.yaml").exists()


def test_failure_mid_write_leaves_no_out(repos, tmp_path, monkeypatch):
    """The output folder appears whole or not at all: a write that fails after some files
    leaves neither --out nor a temporary behind."""
    written = []
    real = Path.write_text

    def flaky(self, text, *a, **k):
        written.append(self.name)
        if len(written) == 3:
            raise OSError("disk full")
        return real(self, text, *a, **k)

    monkeypatch.setattr(Path, "write_text", flaky)
    out = tmp_path / "out"
    result = run(repos["cpu"], "--out", out)
    assert result.exit_code != 0 and len(written) == 3
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []
