"""What the user asks of ``tritonforge deploy``, checked as a whole before anything is
rendered: every refused combination names the options involved (exit 2)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import List, Optional

from generator.deploy import names
from generator.deploy.source import RepositorySource
from generator.repository.options import Check, raise_failed

KINDS = ("kubernetes", "kserve")
AUTOSCALERS = ("hpa", "keda", "kserve", "none")
DELIVERIES = ("image", "pvc", "uri")
DEFAULT_AUTOSCALER = {"kubernetes": "hpa", "kserve": "kserve"}
URI_SCHEMES = {"kubernetes": ("s3://", "gs://"), "kserve": ("s3://", "gs://", "pvc://")}
# Triton 2.51, the server bundled in nvidia-pytriton 0.7, is NGC's tritonserver:24.10
DEFAULT_RELEASE = "24.10"


@dataclass
class DeployOptions:
    """Options of one deployment; ``None`` means "derive it" (see ``resolve``)."""

    kind: str = "kubernetes"
    autoscaler: Optional[str] = None
    repository: str = "image"
    pvc: Optional[str] = None
    pvc_path: str = ""
    storage_uri: Optional[str] = None
    storage_secret: Optional[str] = None
    service_account: Optional[str] = None
    name: Optional[str] = None
    namespace: str = "default"
    replicas: Optional[int] = None
    min_replicas: Optional[int] = None
    max_replicas: Optional[int] = None
    cpu: str = "2"
    memory: str = "4Gi"
    shm_size: str = "1Gi"
    gpus: Optional[int] = None
    image: Optional[str] = None
    triton_release: str = DEFAULT_RELEASE
    queue_target_us: Optional[float] = None
    admin_key_secret: Optional[str] = None
    monitoring_namespace: str = "monitoring"
    prometheus_url: str = "http://prometheus-server.monitoring.svc:80"

    def to_dict(self) -> dict:
        return asdict(self)


def _kind_checks(o: DeployOptions) -> List[Check]:
    return [
        (o.kind in KINDS, f"--kind must be one of {', '.join(KINDS)}, got {o.kind!r}"),
        (o.autoscaler in AUTOSCALERS, f"--autoscaler must be one of {', '.join(AUTOSCALERS)}, got {o.autoscaler!r}"),
        (o.repository in DELIVERIES, f"--repository must be one of {', '.join(DELIVERIES)}, got {o.repository!r}"),
        (not (o.kind == "kserve" and o.autoscaler in ("hpa", "keda")),
         f"--kind kserve with --autoscaler {o.autoscaler}: KServe scales its predictor itself; "
         "use --autoscaler kserve (its own) or none, or --kind kubernetes"),
        (not (o.kind == "kubernetes" and o.autoscaler == "kserve"),
         "--autoscaler kserve needs --kind kserve (plain Kubernetes: hpa, keda or none)"),
        (not (o.kind == "kserve" and o.queue_target_us is not None),
         "--queue-target-us: KServe scales on concurrency per replica; the queue-time target is for --kind kubernetes"),
        (not (o.kind == "kserve" and o.storage_secret),
         "--storage-secret: KServe reads object-store credentials from the service account (--service-account)"),
    ]


def _delivery_checks(o: DeployOptions) -> List[Check]:
    schemes = URI_SCHEMES.get(o.kind, ())
    return [
        (o.repository != "pvc" or bool(o.pvc), "--repository pvc needs --pvc NAME (the claim holding the repository)"),
        (o.pvc is None or o.repository == "pvc", f"--pvc: only with --repository pvc (got --repository {o.repository})"),
        (o.repository != "uri" or bool(o.storage_uri), "--repository uri needs --storage-uri (s3://... or gs://...)"),
        (o.storage_uri is None or o.repository == "uri",
         f"--storage-uri: only with --repository uri (got --repository {o.repository})"),
        (o.storage_uri is None or o.storage_uri.startswith(schemes),
         f"--storage-uri {o.storage_uri}: --kind {o.kind} takes {', '.join(schemes)} URIs"
         + (" (a claim: --repository pvc --pvc NAME)" if o.kind == "kubernetes" else "")),
        (o.storage_secret is None or o.repository == "uri", "--storage-secret: only with --repository uri"),
        (not o.pvc_path or o.repository == "pvc", "--pvc-path: only with --repository pvc"),
        (".." not in o.pvc_path.split("/") and not o.pvc_path.startswith("/"),
         f"--pvc-path must be a relative path inside the claim, got {o.pvc_path!r}"),
    ]


def _name_checks(o: DeployOptions) -> List[Check]:
    checks = [
        (names.is_label(o.name or "", names.NAME_MAX) and o.name[:1].isalpha(),
         f"--name must be a DNS-1123 label starting with a letter (a-z, 0-9, '-'), at most {names.NAME_MAX} "
         f"characters, got {o.name!r}"),
        (names.is_label(o.namespace), f"--namespace must be a DNS-1123 label (a-z, 0-9, '-'), got {o.namespace!r}"),
        (names.is_label(o.monitoring_namespace),
         f"--monitoring-namespace must be a DNS-1123 label, got {o.monitoring_namespace!r}"),
    ]
    for flag, value in (("--admin-key-secret", o.admin_key_secret), ("--pvc", o.pvc),
                        ("--storage-secret", o.storage_secret), ("--service-account", o.service_account)):
        checks.append((value is None or names.is_subdomain(value),
                       f"{flag} must be a DNS-1123 name (a-z, 0-9, '-', '.'), got {value!r}"))
    return checks


def _replica_checks(o: DeployOptions) -> List[Check]:
    floor = 1 if o.autoscaler == "hpa" else 0  # HPA needs >= 1; KEDA and KServe scale to zero
    fixed = o.autoscaler == "none"
    return [
        (o.replicas is None or fixed,
         f"--replicas: for --autoscaler none; with {o.autoscaler} use --min-replicas/--max-replicas"),
        (not fixed or (o.min_replicas is None and o.max_replicas is None),
         "--min-replicas/--max-replicas: for an autoscaler; --autoscaler none takes --replicas"),
        (o.replicas is None or o.replicas >= 1, f"--replicas must be >= 1, got {o.replicas}"),
        (o.min_replicas is None or o.min_replicas >= floor,
         f"--min-replicas must be >= {floor} with --autoscaler {o.autoscaler}, got {o.min_replicas}"),
        (o.max_replicas is None or o.max_replicas >= 1, f"--max-replicas must be >= 1, got {o.max_replicas}"),
        (o.min_replicas is None or o.max_replicas is None or o.min_replicas <= o.max_replicas,
         f"--min-replicas {o.min_replicas} is above --max-replicas {o.max_replicas}"),
        (o.queue_target_us is None or o.queue_target_us > 0,
         f"--queue-target-us must be > 0, got {o.queue_target_us}"),
        (not (fixed and o.queue_target_us is not None), "--queue-target-us: needs an autoscaler (not none)"),
    ]


def _resource_checks(o: DeployOptions, src: RepositorySource) -> List[Check]:
    return [
        (names.is_cpu(o.cpu), f"--cpu must be a CPU quantity such as 2, 1.5 or 500m, got {o.cpu!r}"),
        (names.is_memory(o.memory), f"--memory must be a memory quantity such as 4Gi or 512Mi, got {o.memory!r}"),
        (names.is_memory(o.shm_size), f"--shm-size must be a memory quantity such as 1Gi, got {o.shm_size!r}"),
        (src.needs_gpu or o.gpus is None,
         f"--gpus: the {src.target} target runs on CPUs (--gpus applies to TensorRT targets: gpu, jetson)"),
        (not src.needs_gpu or o.gpus is None or o.gpus >= 1,
         f"--gpus must be >= 1 for the {src.target} target (its detector is a TensorRT plan), got {o.gpus}"),
        (names.is_release(o.triton_release),
         f"--triton-release must be an NGC release such as {DEFAULT_RELEASE}, got {o.triton_release!r}"),
        (o.image is None or names.is_image(o.image), f"--image is not an image reference: {o.image!r}"),
        (o.prometheus_url.startswith(("http://", "https://")),
         f"--prometheus-url must start with http:// or https://, got {o.prometheus_url!r}"),
    ]


def check_options(o: DeployOptions, src: RepositorySource) -> None:
    """Refuse the first invalid value or combination (``UsageError``, exit 2)."""
    raise_failed(_kind_checks(o) + _delivery_checks(o) + _name_checks(o) + _replica_checks(o)
                 + _resource_checks(o, src))
