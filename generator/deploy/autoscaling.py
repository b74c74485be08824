"""Autoscaling on Triton's queue time per request: the Σ of the composing models' queue time
over the ensemble's successful requests (the ensemble's own queue is ~0: requests wait in
its stages). Served to an ``autoscaling/v2`` HPA through a prometheus-adapter rule, or
queried by a KEDA ScaledObject. Idle pods read 0 (the divisor is clamped), not NaN."""

from __future__ import annotations

from generator.deploy.spec import DeploySpec
from generator.deploy.workload import meta

QUEUE = "nv_inference_queue_duration_us"
SUCCESS = "nv_inference_request_success"
WINDOW = "1m"


def _ratio(spec: DeploySpec, matchers: str, by: str) -> str:
    """Queue microseconds per successful ensemble request, summed ``by`` the given labels."""
    ens = spec.ensemble
    group = f"sum by ({by}) " if by else "sum "
    return (f'{group}(rate({QUEUE}{{{matchers},model!="{ens}"}}[{WINDOW}])) / '
            f'clamp_min({group}(rate({SUCCESS}{{{matchers},model="{ens}"}}[{WINDOW}])), 1e-9)')


def pod_promql(spec: DeploySpec, namespace: str = "$namespace") -> str:
    """Per pod, as in the docs (the adapter's form with its template variables filled)."""
    return _ratio(spec, f'namespace="{namespace}"', "namespace, pod")


def adapter_rule(spec: DeploySpec) -> dict:
    """One prometheus-adapter ``rules:`` entry: the metric ``spec.metric_name`` per pod."""
    return {
        "seriesQuery": f'{SUCCESS}{{model="{spec.ensemble}",namespace!="",pod!=""}}',
        "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
        "name": {"matches": f"^{SUCCESS}$", "as": spec.metric_name},
        "metricsQuery": _ratio(spec, "<<.LabelMatchers>>", "<<.GroupBy>>"),
    }


def adapter_config_map(spec: DeploySpec) -> dict:
    """The adapter's config file (``rules:``) in a ConfigMap of the monitoring namespace."""
    import yaml

    text = yaml.safe_dump({"rules": [adapter_rule(spec)]}, sort_keys=False, width=1000)
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": meta(spec, f"{spec.name}-adapter-rules", spec.monitoring_namespace),
            "data": {"config.yaml": text}}


def adapter_helm_values(spec: DeploySpec) -> dict:
    """The same rule as values of the prometheus-community/prometheus-adapter chart."""
    return {"rules": {"custom": [adapter_rule(spec)]}}


def hpa(spec: DeploySpec) -> dict:
    """Scale the Deployment so the pods' average queue time per request stays at the target."""
    metric = {"type": "Pods", "pods": {"metric": {"name": spec.metric_name},
                                       "target": {"type": "AverageValue", "averageValue": _quantity(spec)}}}
    behavior = {"scaleUp": {"stabilizationWindowSeconds": 0},
                "scaleDown": {"stabilizationWindowSeconds": 300}}
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta(spec),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
                     "minReplicas": spec.min_replicas, "maxReplicas": spec.max_replicas,
                     "metrics": [metric], "behavior": behavior}}


def _quantity(spec: DeploySpec) -> str:
    """The target in microseconds as a Kubernetes quantity (milli-units below 1 us resolution)."""
    value = spec.queue_target_us
    return str(int(value)) if float(value).is_integer() else f"{int(round(value * 1000))}m"


def keda_query(spec: DeploySpec) -> str:
    """One number for the whole Deployment: its pods' queue time over their requests."""
    pods = f'namespace="{spec.namespace}",pod=~"{spec.name}-[a-z0-9]+-[a-z0-9]+"'
    return _ratio(spec, pods, "")


def scaled_object(spec: DeploySpec) -> dict:
    """KEDA's ScaledObject (keda.sh/v1alpha1): a prometheus trigger of type Value (the query is
    already an average: KEDA must not divide it by the replicas)."""
    trigger = {"type": "prometheus", "metricType": "Value",
               "metadata": {"serverAddress": spec.prometheus_url, "query": keda_query(spec),
                            "threshold": f"{spec.queue_target_us:.10g}"}}  # KEDA parses a float
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": meta(spec),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
                     "minReplicaCount": spec.min_replicas, "maxReplicaCount": spec.max_replicas,
                     "pollingInterval": 15, "cooldownPeriod": 300, "triggers": [trigger]}}
