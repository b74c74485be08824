"""One deployment, resolved: the options with every default derived (name, image, replicas,
autoscaling target) from the repository and the capacity plan. The manifests are built
from this object only."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Dict, Optional

from generator.deploy import names
from generator.deploy.capacity import CapacityPlan
from generator.deploy.image import MODELS, triton_tag
from generator.deploy.options import DEFAULT_AUTOSCALER, DeployOptions, check_options
from generator.deploy.source import RepositorySource
from generator.errors import UsageError

HTTP, GRPC, METRICS = 8000, 8001, 8002
KSERVE_HTTP, KSERVE_GRPC = 8080, 9000  # KServe's own ports for a Triton runtime
KSERVE_MODELS = "/mnt/models"  # where KServe's storage initializer puts storageUri
MIN_QUEUE_TARGET_US = 5000.0
DEFAULT_MAX_REPLICAS = 4


@dataclass(frozen=True)
class DeploySpec:
    """Everything the manifests are made of."""

    kind: str
    autoscaler: str
    delivery: str
    name: str
    namespace: str
    ensemble: str
    target: str
    image: str  # the image reference written into the manifests (tag included)
    triton_tag: str  # NGC's tag of the base: KServe's runtimeVersion
    replicas: Optional[int]  # fixed replicas (autoscaler none)
    min_replicas: Optional[int]
    max_replicas: Optional[int]
    queue_target_us: Optional[float]
    gpus: int
    cpu: str
    memory: str
    shm_size: str
    admin_key_secret: str
    monitoring_namespace: str
    prometheus_url: str
    pvc: Optional[str] = None
    pvc_path: str = ""
    storage_uri: Optional[str] = None
    storage_secret: Optional[str] = None
    service_account: Optional[str] = None
    concurrency_target: Optional[int] = None  # KServe: requests in flight per replica (capacity plan)
    plan: Optional[CapacityPlan] = None
    labels: Dict[str, str] = field(default_factory=dict)

    @property
    def metric_name(self) -> str:
        """The custom metric the adapter serves and the HPA reads (one per ensemble)."""
        return re.sub(r"[^a-z0-9_]", "_", self.ensemble.lower()) + "_queue_us_per_request"

    @property
    def model_repository(self) -> str:
        """Triton's ``--model-repository``: in the image or claim, an object-store URI (Triton
        reads s3:// and gs:// itself), or KServe's storage folder."""
        if self.kind == "kserve":
            return MODELS if self.delivery == "image" else KSERVE_MODELS
        return self.storage_uri if self.delivery == "uri" else MODELS

    @property
    def kserve_storage_uri(self) -> Optional[str]:
        if self.delivery == "pvc":
            return f"pvc://{self.pvc}" + (f"/{self.pvc_path.strip('/')}" if self.pvc_path.strip("/") else "")
        return self.storage_uri

    def to_dict(self) -> dict:
        out = asdict(self)
        out["plan"] = self.plan.to_dict() if self.plan else None
        return out


def default_name(src: RepositorySource) -> str:
    """The model's name as a DNS label (``detector_ensemble`` -> ``detector``), else the folder's."""
    for candidate in (src.model_name, src.path.name):
        name = names.dns_name(candidate)
        if name[:1].isalpha():
            return name
    raise UsageError(f"no valid Kubernetes name derives from {src.model_name!r} or {src.path.name!r}: pass --name")


def default_queue_target(src: RepositorySource) -> float:
    """Without a measurement: twice the batching delay the stages may hold a request at light
    load (their max queue delay each), at least 5 ms. Measure it instead (--load)."""
    delay = float(src.options.get("queue_delay_us") or 0)
    return max(MIN_QUEUE_TARGET_US, 2 * delay * src.batching_stages)


def image_reference(opts: DeployOptions, name: str, tag: str) -> str:
    """``--image`` with the Triton tag added when it has none; KServe needs exactly that tag."""
    if opts.image is None:
        return f"{name}-triton:{tag}"
    repo, own = names.split_tag(opts.image)
    if opts.kind == "kserve" and ("@" in opts.image or own not in (None, tag)):
        raise UsageError(f"--image {opts.image}: KServe replaces the image tag with runtimeVersion {tag}; "
                         f"tag the built image {repo}:{tag} (or pass --image {repo})")
    return opts.image if own is not None or "@" in opts.image else f"{repo}:{tag}"


def _replicas(opts: DeployOptions, plan: Optional[CapacityPlan]) -> tuple:
    """(fixed, min, max): explicit options first, then the capacity plan, then defaults."""
    if opts.autoscaler == "none":
        return opts.replicas or (plan.replicas if plan else 1), None, None
    low = opts.min_replicas if opts.min_replicas is not None else (plan.replicas if plan else 1)
    high = opts.max_replicas if opts.max_replicas is not None else \
        (plan.max_replicas if plan else max(DEFAULT_MAX_REPLICAS, low))
    if low > high:
        why = f" (the capacity plan needs {plan.replicas})" if plan and opts.min_replicas is None else ""
        raise UsageError(f"--max-replicas {high} is below the minimum {low}{why}")
    return None, low, max(high, 1)


def _queue_target(opts: DeployOptions, src: RepositorySource, plan: Optional[CapacityPlan]) -> Optional[float]:
    if opts.autoscaler not in ("hpa", "keda"):
        return None
    if opts.queue_target_us is not None:
        return float(opts.queue_target_us)
    return plan.queue_target_us if plan else default_queue_target(src)


def resolve(opts: DeployOptions, src: RepositorySource, plan: Optional[CapacityPlan] = None) -> DeploySpec:
    """Check ``opts`` against ``src`` and derive every default; refuses with exit 2."""
    opts.autoscaler = opts.autoscaler or DEFAULT_AUTOSCALER.get(opts.kind)
    opts.name = opts.name or default_name(src)
    check_options(opts, src)
    tag = triton_tag(src, opts.triton_release)
    fixed, low, high = _replicas(opts, plan)
    labels = {"app.kubernetes.io/name": opts.name, "app.kubernetes.io/component": "triton",
              "app.kubernetes.io/managed-by": "tritonforge"}
    return DeploySpec(
        kind=opts.kind, autoscaler=opts.autoscaler, delivery=opts.repository, name=opts.name,
        namespace=opts.namespace, ensemble=src.ensemble, target=src.target,
        image=image_reference(opts, opts.name, tag), triton_tag=tag, replicas=fixed, min_replicas=low,
        max_replicas=high, queue_target_us=_queue_target(opts, src, plan),
        gpus=(opts.gpus or 1) if src.needs_gpu else 0, cpu=opts.cpu, memory=opts.memory, shm_size=opts.shm_size,
        admin_key_secret=opts.admin_key_secret or f"{opts.name}-admin-key",
        monitoring_namespace=opts.monitoring_namespace, prometheus_url=opts.prometheus_url, pvc=opts.pvc,
        pvc_path=opts.pvc_path.strip("/"), storage_uri=opts.storage_uri, storage_secret=opts.storage_secret,
        service_account=opts.service_account,
        concurrency_target=plan.concurrency if plan and opts.autoscaler == "kserve" else None,
        plan=plan, labels=labels)
