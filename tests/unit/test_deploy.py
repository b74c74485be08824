"""``tritonforge deploy`` manifests for every target x kind x autoscaler x repository delivery,
with non-default names and namespaces, checked without a cluster:

- Kubernetes-native documents against the schemas kubernetes-validate ships (its newest
  version, strict: an unknown or misspelled field fails);
- KServe's resources through the kserve package's models: deserialized into
  V1alpha1ServingRuntime / V1beta1InferenceService and serialized back, compared whole, so a
  field the models do not know is dropped and the comparison fails;
- KEDA's ScaledObject has no schema here: its required structure is checked by hand;
- the semantics: health probes, the Service without the metrics port, restricted admin
  APIs, the HPA's metric served by the adapter rule, GPUs only where due, namespaces.

No cluster ran any of these manifests.
"""

from __future__ import annotations

import re
import types

import pytest
import yaml

from generator.deploy import autoscaling, manifests
from generator.deploy.options import DeployOptions
from generator.deploy.source import read_repository
from generator.deploy.spec import resolve
from generator.repository.generate import generate
from generator.repository.targets import options_for
from generator.serve.admin import restricted_args

kubernetes_validate = pytest.importorskip("kubernetes_validate")
K8S_VERSION = kubernetes_validate.utils.latest_version()

TARGETS = ("embedded", "cpu", "gpu", "jetson")
SCALERS = {"kubernetes": ("hpa", "keda", "none"), "kserve": ("kserve", "none")}
DELIVERIES = {"image": {}, "pvc": {"pvc": "vision-models", "pvc_path": "repos/shapes"},
              "uri": {"storage_uri": "gs://vision-bucket/repos/shapes"}}
NAME, NAMESPACE, MONITORING = "shapes-edge", "vision-prod", "observability"


@pytest.fixture(scope="module")
def repos(contract_onnx, tmp_path_factory):
    """One small repository per target (gpu and jetson with the deferred plan build)."""
    root = tmp_path_factory.mktemp("deploy-repos")
    return {t: read_repository(generate(contract_onnx, t, root / t, options_for(t, name="shapes")).path)
            for t in TARGETS}


def _combos():
    for target in TARGETS:
        for kind, scalers in SCALERS.items():
            for scaler in scalers:
                for delivery in DELIVERIES:
                    yield target, kind, scaler, delivery


def _spec(src, kind, scaler, delivery, **extra):
    opts = DeployOptions(kind=kind, autoscaler=scaler, repository=delivery, name=NAME, namespace=NAMESPACE,
                         monitoring_namespace=MONITORING, image="team/shapes", **DELIVERIES[delivery], **extra)
    return resolve(opts, src)


def _all_docs(files):
    return [d for docs in files.values() for d in docs]


# ---------------------------------------------------------------- KServe models

@pytest.fixture(scope="module")
def kserve_models():
    """kserve's resource models, loaded without ``kserve/__init__.py``: that imports KServe's
    gRPC protos, which clash with tritonclient's (both define ``inference.*``) in one process."""
    import importlib
    import importlib.util
    import sys

    found = importlib.util.find_spec("kserve")
    if found is None:
        pytest.skip("kserve is not installed (the test extra)")
    before = {k: v for k, v in sys.modules.items() if k == "kserve" or k.startswith("kserve.")}
    package = types.ModuleType("kserve")
    package.__path__ = list(found.submodule_search_locations)
    sys.modules["kserve"] = package
    try:
        return importlib.import_module("kserve.models")
    finally:
        for key in [k for k in sys.modules if (k == "kserve" or k.startswith("kserve.")) and k not in before]:
            sys.modules.pop(key)
        sys.modules.update(before)


_LIST = re.compile(r"^(?:list|List)\[(.*)\]$")
_DICT = re.compile(r"^(?:dict\(|Dict\[)[^,]*, (.*)[)\]]$")
_PLAIN = {"str", "int", "float", "bool", "object", "date", "datetime"}


def _load(data, kind, kserve):
    """``data`` read as the model type ``kind`` names and written back: KServe's own models
    (generated classes) by their attribute maps, the Kubernetes types they embed through
    the kubernetes client's pydantic models (which refuse unknown fields). A key the models
    do not know is dropped, so the result differs from ``data``."""
    if _LIST.match(kind):
        return [_load(item, _LIST.match(kind).group(1), kserve) for item in data]
    if _DICT.match(kind):
        return {k: _load(v, _DICT.match(kind).group(1), kserve) for k, v in data.items()}
    if kind in _PLAIN:
        return data
    model = getattr(kserve, kind, None)
    if model is None:
        import kubernetes.client.models as k8s

        obj = getattr(k8s, kind).model_validate(data)
        return obj.model_dump(by_alias=True, exclude_none=True, mode="json")
    by_json = {json_key: attr for attr, json_key in model.attribute_map.items()}
    values = {by_json[k]: _load(v, model.openapi_types[by_json[k]], kserve) for k, v in data.items() if k in by_json}
    obj = model(**values)  # the generated setters check required fields and enums
    return {model.attribute_map[a]: getattr(obj, a) for a in values}


def kserve_round_trip(doc, kserve):
    kind = {"ServingRuntime": "V1alpha1ServingRuntime", "InferenceService": "V1beta1InferenceService"}[doc["kind"]]
    return _load(doc, kind, kserve)


# ---------------------------------------------------------------- every combination

@pytest.mark.parametrize("target,kind,scaler,delivery", list(_combos()))
def test_every_combination_validates(repos, target, kind, scaler, delivery, kserve_models):
    spec = _spec(repos[target], kind, scaler, delivery)
    files = manifests.documents(spec)
    docs = _all_docs(files)
    native = [d for d in docs if manifests.native(d)]
    for doc in native:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert manifests.validate(files, K8S_VERSION) == len(native)
    if kind == "kserve":
        for doc in docs:
            assert kserve_round_trip(doc, kserve_models) == doc, f"a field of {doc['kind']} is unknown to kserve"
    for doc in docs:
        expected = MONITORING if doc["kind"] == "ConfigMap" else NAMESPACE
        assert doc["metadata"]["namespace"] == expected, doc["kind"]
        assert doc["metadata"]["name"].startswith(NAME)
    kinds = [d["kind"] for d in docs]
    assert ("HorizontalPodAutoscaler" in kinds) == (scaler == "hpa")
    assert ("ScaledObject" in kinds) == (scaler == "keda")
    assert ("InferenceService" in kinds) == (kind == "kserve")
    if kind == "kubernetes":
        _check_workload(spec, files, repos[target])
    else:
        _check_kserve(spec, files, repos[target])


def _by_kind(files, kind):
    return next(d for d in _all_docs(files) if d["kind"] == kind)


def _check_container(container, spec, needs_gpu, http_port):
    args = container["args"]
    assert set(restricted_args("$(TRITONFORGE_ADMIN_KEY)")) <= set(args)
    assert {"--strict-readiness=true", "--exit-on-error=true", f"--http-port={http_port}"} <= set(args)
    assert f"--model-repository={spec.model_repository}" in args
    env = {e["name"]: e for e in container["env"]}
    assert env["TRITONFORGE_ADMIN_KEY"]["valueFrom"]["secretKeyRef"] == {"name": f"{NAME}-admin-key", "key": "key"}
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/live"
    limits = container.get("resources", {}).get("limits", {})
    if container.get("resources"):
        assert ("nvidia.com/gpu" in limits) == needs_gpu


def _check_workload(spec, files, src):
    deployment = _by_kind(files, "Deployment")
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    _check_container(container, spec, src.needs_gpu, 8000)
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "8002"
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert ("replicas" in deployment["spec"]) == (spec.autoscaler == "none")
    service = _by_kind(files, "Service")
    assert sorted(p["port"] for p in service["spec"]["ports"]) == [8000, 8001], "metrics must not be in the Service"
    policy = _by_kind(files, "NetworkPolicy")["spec"]
    metrics_rule = next(r for r in policy["ingress"] if r["ports"] == [{"port": 8002, "protocol": "TCP"}])
    assert metrics_rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": MONITORING}}}]
    open_rule = next(r for r in policy["ingress"] if "from" not in r)
    assert 8002 not in [p["port"] for p in open_rule["ports"]]
    _check_delivery(spec, pod["spec"], container)
    if spec.autoscaler == "hpa":
        _check_hpa(spec, files)
    if spec.autoscaler == "keda":
        _check_keda(spec, _by_kind(files, "ScaledObject"))
    assert (pod["spec"].get("nodeSelector") == {"kubernetes.io/arch": "arm64"}) == (src.target == "jetson")


def _check_delivery(spec, pod_spec, container):
    claims = [v for v in pod_spec["volumes"] if "persistentVolumeClaim" in v]
    if spec.delivery == "pvc":
        assert claims == [{"name": "models", "persistentVolumeClaim": {"claimName": "vision-models", "readOnly": True}}]
        mount = next(m for m in container["volumeMounts"] if m["name"] == "models")
        assert mount == {"name": "models", "mountPath": "/models", "readOnly": True, "subPath": "repos/shapes"}
    else:
        assert claims == []
    if spec.delivery == "uri":
        assert "--model-repository=gs://vision-bucket/repos/shapes" in container["args"]


def _check_hpa(spec, files):
    hpa = _by_kind(files, "HorizontalPodAutoscaler")["spec"]
    adapter = _by_kind(files, "ConfigMap")
    rules = yaml.safe_load(adapter["data"]["config.yaml"])["rules"]
    assert len(rules) == 1
    metric = hpa["metrics"][0]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == rules[0]["name"]["as"]
    assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": "12000"}
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME}
    assert 'model="shapes_ensemble"' in rules[0]["seriesQuery"]
    query = rules[0]["metricsQuery"]
    assert "<<.LabelMatchers>>" in query and "<<.GroupBy>>" in query
    assert 'nv_inference_queue_duration_us{<<.LabelMatchers>>,model!="shapes_ensemble"}' in query
    assert 'nv_inference_request_success{<<.LabelMatchers>>,model="shapes_ensemble"}' in query


def _check_keda(spec, scaled):
    """KEDA ships no schema here: its required structure, by hand (keda.sh/v1alpha1)."""
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    body = scaled["spec"]
    assert set(body) >= {"scaleTargetRef", "triggers"}
    assert body["scaleTargetRef"]["name"] == NAME
    assert isinstance(body["minReplicaCount"], int) and body["minReplicaCount"] <= body["maxReplicaCount"]
    (trigger,) = body["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "Value"
    meta = trigger["metadata"]
    assert set(meta) == {"serverAddress", "query", "threshold"}
    assert all(isinstance(v, str) for v in meta.values()), "KEDA trigger metadata values are strings"
    assert float(meta["threshold"]) == spec.queue_target_us
    assert f'namespace="{NAMESPACE}"' in meta["query"] and f'pod=~"{NAME}-' in meta["query"]


def _check_kserve(spec, files, src):
    runtime = _by_kind(files, "ServingRuntime")
    isvc = _by_kind(files, "InferenceService")
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"] == {"name": "triton"} and model["protocolVersion"] == "v2"
    tag = "24.10-py3-igpu" if src.target == "jetson" else "24.10-py3"
    assert model["runtimeVersion"] == tag
    container = runtime["spec"]["containers"][0]
    assert container["image"] == f"team/shapes:{tag}", "KServe rewrites the tag to runtimeVersion: they must agree"
    assert runtime["spec"]["supportedModelFormats"][0]["name"] == "triton"
    _check_container(container, spec, src.needs_gpu, 8080)
    assert ("nvidia.com/gpu" in model["resources"]["limits"]) == src.needs_gpu
    expected_uri = {"image": None, "pvc": "pvc://vision-models/repos/shapes",
                    "uri": "gs://vision-bucket/repos/shapes"}[spec.delivery]
    assert model.get("storageUri") == expected_uri
    assert f"--model-repository={'/models' if spec.delivery == 'image' else '/mnt/models'}" in container["args"]


# ---------------------------------------------------------------- the checks can fail

def test_schema_check_fails_on_a_misspelled_field(repos):
    files = manifests.documents(_spec(repos["cpu"], "kubernetes", "hpa", "image"))
    deployment = files["kubernetes.yaml"][0]
    deployment["spec"]["replicaz"] = 2
    with pytest.raises(Exception, match="internal error: kubernetes.yaml: Deployment shapes-edge"):
        manifests.validate(files, K8S_VERSION)


def test_kserve_round_trip_drops_a_misspelled_field(repos, kserve_models):
    isvc = manifests.documents(_spec(repos["gpu"], "kserve", "kserve", "uri"))["kserve.yaml"][1]
    isvc["spec"]["predictor"]["model"]["runtimeVersoin"] = "24.10-py3"
    assert kserve_round_trip(isvc, kserve_models) != isvc


# ---------------------------------------------------------------- values

def test_gpu_count_and_resources(repos):
    spec = _spec(repos["gpu"], "kubernetes", "none", "image", gpus=2, cpu="4", memory="16Gi")
    container = manifests.documents(spec)["kubernetes.yaml"][0]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "2"}
    assert container["resources"]["requests"] == container["resources"]["limits"]


def test_default_name_image_and_queue_target(repos):
    src = repos["embedded"]
    spec = resolve(DeployOptions(), src)
    assert spec.name == "shapes" and spec.namespace == "default" and spec.image == "shapes-triton:24.10-py3"
    assert spec.queue_target_us == 2 * 2000 * 3  # twice the three stages' max queue delay
    assert (spec.min_replicas, spec.max_replicas, spec.replicas) == (1, 4, None)


def test_keda_query_is_the_conventions_ratio(repos):
    spec = _spec(repos["cpu"], "kubernetes", "keda", "image")
    query = autoscaling.keda_query(spec)
    assert query.startswith("sum (rate(nv_inference_queue_duration_us{")
    assert 'model!="shapes_ensemble"' in query and 'nv_inference_request_success{' in query
    per_pod = autoscaling.pod_promql(spec, NAMESPACE)
    assert per_pod.startswith("sum by (namespace, pod) (rate(nv_inference_queue_duration_us{namespace=")
