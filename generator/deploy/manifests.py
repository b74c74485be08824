"""The manifests of a deployment as documents, grouped by the file the user applies, their
YAML text, and their check against the Kubernetes schemas that ``kubernetes-validate``
ships (Kubernetes-native kinds only: KServe and KEDA resources are CRDs)."""

from __future__ import annotations

from typing import Dict, List, Optional

from generator.deploy import autoscaling, kserve, workload
from generator.deploy.spec import DeploySpec
from generator.errors import MissingDependencyError, TritonForgeError

NATIVE_API_VERSIONS = ("v1", "apps/v1", "autoscaling/v2", "networking.k8s.io/v1")


def documents(spec: DeploySpec) -> Dict[str, List[dict]]:
    """File name -> the documents it holds, in apply order."""
    if spec.kind == "kserve":
        return {"kserve.yaml": [kserve.serving_runtime(spec), kserve.inference_service(spec)]}
    docs = [workload.deployment(spec), workload.service(spec), workload.network_policy(spec)]
    if spec.autoscaler == "hpa":
        docs.append(autoscaling.hpa(spec))
    elif spec.autoscaler == "keda":
        docs.append(autoscaling.scaled_object(spec))
    files = {"kubernetes.yaml": docs}
    if spec.autoscaler == "hpa":
        files["prometheus-adapter.yaml"] = [autoscaling.adapter_config_map(spec)]
    return files


def _yaml():
    try:
        import yaml
    except ImportError:
        raise MissingDependencyError("tritonforge deploy writes YAML with PyYAML: "
                                     "pip install 'tritonforge[deploy]' (or pyyaml)") from None
    return yaml


def _dumper():
    yaml = _yaml()

    class Dumper(yaml.SafeDumper):
        """Multi-line strings (a config file inside a ConfigMap) as literal blocks."""

    def text(dumper, value: str):
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return Dumper


def to_yaml(docs: List[dict], header: str = "") -> str:
    """Multi-document YAML, keys in the order they were built (as a reader expects them)."""
    text = _yaml().dump_all(docs, Dumper=_dumper(), sort_keys=False, default_flow_style=False, width=1000,
                            explicit_start=True)
    return header + text


def native(doc: dict) -> bool:
    return doc.get("apiVersion") in NATIVE_API_VERSIONS


def schema_version() -> Optional[str]:
    """The newest Kubernetes version whose schemas kubernetes-validate ships; None when absent."""
    try:
        from kubernetes_validate import utils
    except ImportError:
        return None
    return utils.latest_version()


def validate(files: Dict[str, List[dict]], version: str) -> int:
    """Check every Kubernetes-native document (strict: unknown fields fail); the count checked.
    A failure is an internal error: the generator made an invalid manifest."""
    import kubernetes_validate

    checked = 0
    for name, docs in files.items():
        for doc in filter(native, docs):
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = f"{name}: {doc['kind']} {doc['metadata']['name']}"
                raise TritonForgeError(f"internal error: {where} fails the Kubernetes {version} schema: "
                                       f"{exc}") from exc
            checked += 1
    return checked
