"""The plain-Kubernetes workload: Deployment (Triton with health probes, admin APIs behind
a key from a Secret), a Service with only the inference ports, and a NetworkPolicy that
admits the metrics port from the monitoring namespace only."""

from __future__ import annotations

from typing import List, Optional

from generator.deploy.image import MODELS
from generator.deploy.spec import GRPC, HTTP, METRICS, DeploySpec
from generator.serve.admin import ENV_KEY, restricted_args

ADMIN_ENV = ENV_KEY  # the variable serve reads the key from, too
ADMIN_SECRET_KEY = "key"
READY, LIVE = "/v2/health/ready", "/v2/health/live"
CONTAINER = "triton"


def meta(spec: DeploySpec, name: Optional[str] = None, namespace: Optional[str] = None, **extra) -> dict:
    return {"name": name or spec.name, "namespace": namespace or spec.namespace, "labels": dict(spec.labels), **extra}


def triton_args(spec: DeploySpec, http: int, grpc: int) -> List[str]:
    """tritonserver's options: ready only when every model is, exit on a load error, admin APIs
    behind the key (Kubernetes expands ``$(VAR)`` in args from the container's env)."""
    return [f"--model-repository={spec.model_repository}", f"--http-port={http}", f"--grpc-port={grpc}",
            f"--metrics-port={METRICS}", "--allow-metrics=true", "--strict-readiness=true",
            "--exit-on-error=true", *restricted_args(f"$({ADMIN_ENV})")]


def admin_env(spec: DeploySpec) -> dict:
    return {"name": ADMIN_ENV, "valueFrom": {"secretKeyRef": {"name": spec.admin_key_secret, "key": ADMIN_SECRET_KEY}}}


def probes(port) -> dict:
    """Startup (model loading may take minutes), liveness and readiness on Triton's health routes."""
    def get(path: str, period: int, failures: int) -> dict:
        return {"httpGet": {"path": path, "port": port}, "periodSeconds": period, "failureThreshold": failures}
    return {"startupProbe": get(LIVE, 10, 60), "livenessProbe": get(LIVE, 10, 3), "readinessProbe": get(READY, 5, 3)}


def resources(spec: DeploySpec) -> dict:
    """Requests equal limits (a guaranteed pod: steady latency); GPUs as ``nvidia.com/gpu`` limits."""
    amount = {"cpu": spec.cpu, "memory": spec.memory}
    if spec.gpus:
        amount["nvidia.com/gpu"] = str(spec.gpus)
    return {"requests": dict(amount), "limits": dict(amount)}


def shm_volume(spec: DeploySpec) -> dict:
    """The Python backend talks to its stubs through /dev/shm (64 MiB by default in a pod)."""
    return {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}}


def _storage(spec: DeploySpec) -> tuple:
    """(volumes, mounts, env, envFrom) that deliver the repository and its credentials."""
    volumes, mounts, env, env_from = [shm_volume(spec)], [{"name": "dshm", "mountPath": "/dev/shm"}], [], []
    if spec.delivery == "pvc":
        volumes.append({"name": "models", "persistentVolumeClaim": {"claimName": spec.pvc, "readOnly": True}})
        mounts.append({"name": "models", "mountPath": MODELS, "readOnly": True,
                       **({"subPath": spec.pvc_path} if spec.pvc_path else {})})
    elif spec.storage_secret and spec.storage_uri.startswith("gs://"):
        volumes.append({"name": "gcs-credentials", "secret": {"secretName": spec.storage_secret}})
        mounts.append({"name": "gcs-credentials", "mountPath": "/var/secrets/gcs", "readOnly": True})
        env.append({"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/var/secrets/gcs/key.json"})
    elif spec.storage_secret:  # s3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION
        env_from.append({"secretRef": {"name": spec.storage_secret}})
    return volumes, mounts, env, env_from


def container(spec: DeploySpec) -> dict:
    _, mounts, env, env_from = _storage(spec)
    ports = [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in
             (("http", HTTP), ("grpc", GRPC), ("metrics", METRICS))]
    out = {"name": CONTAINER, "image": spec.image, "command": ["tritonserver"], "args": triton_args(spec, HTTP, GRPC),
           "ports": ports, "env": [admin_env(spec), *env], "resources": resources(spec), "volumeMounts": mounts,
           "securityContext": {"allowPrivilegeEscalation": False}, **probes("http")}
    if env_from:
        out["envFrom"] = env_from
    return out


def pod_template(spec: DeploySpec) -> dict:
    annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": str(METRICS), "prometheus.io/path": "/metrics"}
    pod = {"containers": [container(spec)], "volumes": _storage(spec)[0], "terminationGracePeriodSeconds": 30}
    if spec.target == "jetson":
        pod["nodeSelector"] = {"kubernetes.io/arch": "arm64"}
    if spec.service_account:
        pod["serviceAccountName"] = spec.service_account
    return {"metadata": {"labels": dict(spec.labels), "annotations": annotations}, "spec": pod}


def deployment(spec: DeploySpec) -> dict:
    body = {"selector": {"matchLabels": selector(spec)}, "template": pod_template(spec),
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}}
    if spec.replicas is not None:  # under an autoscaler the Deployment leaves replicas to it
        body = {"replicas": spec.replicas, **body}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(spec), "spec": body}


def selector(spec: DeploySpec) -> dict:
    return {"app.kubernetes.io/name": spec.name, "app.kubernetes.io/component": "triton"}


def service(spec: DeploySpec) -> dict:
    """Inference and health over HTTP and gRPC; the metrics port is scraped from the pods."""
    ports = [{"name": "http", "port": HTTP, "targetPort": "http", "protocol": "TCP"},
             {"name": "grpc", "port": GRPC, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"}]
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta(spec),
            "spec": {"type": "ClusterIP", "selector": selector(spec), "ports": ports}}


def network_policy(spec: DeploySpec) -> dict:
    """HTTP and gRPC from anywhere; metrics only from pods in the monitoring namespace."""
    open_ports = [{"port": HTTP, "protocol": "TCP"}, {"port": GRPC, "protocol": "TCP"}]
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": spec.monitoring_namespace}}}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta(spec),
            "spec": {"podSelector": {"matchLabels": selector(spec)}, "policyTypes": ["Ingress"],
                     "ingress": [{"ports": open_ports},
                                 {"from": [monitoring], "ports": [{"port": METRICS, "protocol": "TCP"}]}]}}
