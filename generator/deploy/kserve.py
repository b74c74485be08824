"""KServe: a ServingRuntime (``serving.kserve.io/v1alpha1``) running the built Triton image,
and the InferenceService (``serving.kserve.io/v1beta1``) whose predictor uses it.

KServe routes its v2 HTTP endpoint (port 8080, Triton's ``--http-port``) and replaces the
runtime image's tag with ``runtimeVersion``: the image is tagged with the Triton release.
The repository comes from ``storageUri`` (``s3://``, ``gs://``, ``pvc://``), which KServe's
storage initializer copies to /mnt/models, or is baked into the image (no storageUri)."""

from __future__ import annotations

from generator.deploy.spec import KSERVE_GRPC, KSERVE_HTTP, METRICS, DeploySpec
from generator.deploy.workload import admin_env, meta, probes, resources, shm_volume, triton_args

FORMAT = "triton"


def runtime_name(spec: DeploySpec) -> str:
    return f"{spec.name}-triton"


def serving_runtime(spec: DeploySpec) -> dict:
    container = {"name": "kserve-container", "image": spec.image, "command": ["tritonserver"],
                 "args": triton_args(spec, KSERVE_HTTP, KSERVE_GRPC), "env": [admin_env(spec)],
                 "ports": [{"containerPort": KSERVE_HTTP, "protocol": "TCP"}],
                 "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
                 "securityContext": {"allowPrivilegeEscalation": False}, **probes(KSERVE_HTTP)}
    body = {"annotations": {"prometheus.kserve.io/port": str(METRICS), "prometheus.kserve.io/path": "/metrics"},
            "supportedModelFormats": [{"name": FORMAT, "version": "2", "autoSelect": False}],
            "protocolVersions": ["v2"], "containers": [container], "volumes": [shm_volume(spec)]}
    if spec.target == "jetson":
        body["nodeSelector"] = {"kubernetes.io/arch": "arm64"}
    return {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "ServingRuntime",
            "metadata": meta(spec, runtime_name(spec)), "spec": body}


def _predictor(spec: DeploySpec) -> dict:
    model = {"modelFormat": {"name": FORMAT}, "protocolVersion": "v2", "runtime": runtime_name(spec),
             "runtimeVersion": spec.triton_tag, "resources": resources(spec)}
    if spec.kserve_storage_uri:
        model["storageUri"] = spec.kserve_storage_uri
    fixed = spec.replicas
    out = {"minReplicas": fixed if fixed is not None else spec.min_replicas,
           "maxReplicas": fixed if fixed is not None else spec.max_replicas, "model": model}
    if spec.concurrency_target:
        out.update(scaleMetric="concurrency", scaleTarget=spec.concurrency_target)
    if spec.service_account:
        out["serviceAccountName"] = spec.service_account
    return out


def inference_service(spec: DeploySpec) -> dict:
    annotations = {"serving.kserve.io/enable-prometheus-scraping": "true"}
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": meta(spec, annotations=annotations), "spec": {"predictor": _predictor(spec)}}
