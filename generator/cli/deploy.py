"""``tritonforge deploy``: Kubernetes or KServe manifests (and the serving image's
Dockerfile) for a generated repository, autoscaled on Triton's queue time."""

from __future__ import annotations

from pathlib import Path

import click

from generator.cli.common import field_default, invoked_command

FOLDER = click.Path(file_okay=False, path_type=Path)


def _default(name: str):
    from generator.deploy.options import DeployOptions

    return field_default(DeployOptions, name)


@click.command()
@click.argument("repository", type=FOLDER)
@click.option("--out", type=FOLDER, required=True, help="Folder for the manifests, Dockerfile and README.")
@click.option("--kind", type=click.Choice(("kubernetes", "kserve")), default="kubernetes", show_default=True,
              help="Plain Deployment + Service, or a KServe InferenceService + ServingRuntime.")
@click.option("--autoscaler", type=click.Choice(("hpa", "keda", "kserve", "none")), default=None,
              help="hpa (on queue time, via prometheus-adapter) | keda | kserve (its own) | none [hpa; kserve for --kind kserve].")
@click.option("--repository", "delivery", type=click.Choice(("image", "pvc", "uri")), default="image",
              show_default=True, help="How the repository reaches the pods: baked into the image, a claim, an object store.")
@click.option("--pvc", default=None, help="--repository pvc: the PersistentVolumeClaim holding the repository.")
@click.option("--pvc-path", default="", help="--repository pvc: the repository's folder inside the claim [its root].")
@click.option("--storage-uri", default=None, help="--repository uri: s3://... or gs://... (KServe also pvc://...).")
@click.option("--storage-secret", default=None,
              help="--kind kubernetes --repository uri: Secret with the object store's credentials.")
@click.option("--service-account", default=None, help="Service account of the pods (object-store identity).")
@click.option("--name", default=None, help="Resource name [the model's name as a DNS label].")
@click.option("--namespace", default="default", show_default=True)
@click.option("--replicas", type=int, default=None, help="--autoscaler none: fixed replicas [1, or the plan's].")
@click.option("--min-replicas", type=int, default=None, help="Autoscaler floor [1, or the plan's replicas].")
@click.option("--max-replicas", type=int, default=None, help="Autoscaler ceiling [4, or twice the plan's replicas].")
@click.option("--cpu", default=_default("cpu"), show_default=True, help="CPU request and limit per pod.")
@click.option("--memory", default=_default("memory"), show_default=True, help="Memory request and limit per pod.")
@click.option("--shm-size", default=_default("shm_size"), show_default=True,
              help="/dev/shm size (the Python backend's stubs talk through it).")
@click.option("--gpus", type=int, default=None, help="gpu/jetson targets: nvidia.com/gpu per pod [1].")
@click.option("--image", default=None,
              help="The image you build from the Dockerfile and push [<name>-triton:<release>-py3].")
@click.option("--triton-release", default=_default("triton_release"), show_default=True,
              help="NGC Triton release (yy.mm) of the base image; KServe's runtimeVersion.")
@click.option("--queue-target-us", type=float, default=None,
              help="Autoscaling target: queue time per request, us [the plan's; else 2 x stages x queue delay, >= 5000].")
@click.option("--admin-key-secret", default=None, help="Secret (key 'key') with the admin-API key [<name>-admin-key].")
@click.option("--monitoring-namespace", default=_default("monitoring_namespace"), show_default=True,
              help="Namespace of Prometheus (admitted to the metrics port) and prometheus-adapter.")
@click.option("--prometheus-url", default=_default("prometheus_url"), show_default=True,
              help="--autoscaler keda: where KEDA queries Prometheus.")
@click.option("--rate", type=float, default=None, help="Capacity plan: images (requests) per second to sustain.")
@click.option("--p99-ms", type=float, default=None, help="Capacity plan: the p99 latency bound, ms.")
@click.option("--load", type=click.Path(path_type=Path), default=None,
              help="Capacity plan: load.json of tritonforge bench --url --out, measured on the target hardware.")
@click.option("--headroom", type=float, default=None, help="Capacity plan: fraction of the measured throughput to plan on [0.8].")
@click.option("--force", is_flag=True, help="Replace a non-empty --out.")
def deploy(repository, out, kind, autoscaler, delivery, pvc, pvc_path, storage_uri, storage_secret, service_account,
           name, namespace, replicas, min_replicas, max_replicas, cpu, memory, shm_size, gpus, image, triton_release,
           queue_target_us, admin_key_secret, monitoring_namespace, prometheus_url, rate, p99_ms, load, headroom,
           force) -> None:
    """Kubernetes / KServe manifests for REPOSITORY (a folder tritonforge generate wrote)."""
    from generator.deploy.build import CapacityRequest, deploy as run
    from generator.deploy.options import DeployOptions

    opts = DeployOptions(
        kind=kind, autoscaler=autoscaler, repository=delivery, pvc=pvc, pvc_path=pvc_path, storage_uri=storage_uri,
        storage_secret=storage_secret, service_account=service_account, name=name, namespace=namespace,
        replicas=replicas, min_replicas=min_replicas, max_replicas=max_replicas, cpu=cpu, memory=memory,
        shm_size=shm_size, gpus=gpus, image=image, triton_release=triton_release, queue_target_us=queue_target_us,
        admin_key_secret=admin_key_secret, monitoring_namespace=monitoring_namespace, prometheus_url=prometheus_url)
    result = run(repository, out, opts, CapacityRequest(rate, p99_ms, load, headroom), force, invoked_command())
    _report(result)


def _report(result) -> None:
    from generator.deploy.capacity import format_plan

    spec = result.spec
    if spec.plan is not None:
        click.echo(format_plan(result.rows, spec.plan))
    click.echo(f"wrote {result.out} ({spec.kind}, {spec.autoscaler} autoscaler, repository by {spec.delivery}): "
               f"{', '.join(result.files)}")
    if not result.schema_version:
        click.echo("not schema-checked: pip install 'tritonforge[deploy]' (kubernetes-validate) to check them")
    elif result.checked:
        click.echo(f"checked {result.checked} Kubernetes-native manifests against the Kubernetes "
                   f"{result.schema_version} schemas; no cluster ran them")
    if spec.kind == "kserve" or spec.autoscaler == "keda":
        click.echo("KServe and KEDA resources are custom resources: tritonforge's tests check them against "
                   "KServe's models and KEDA's required fields; no cluster ran them")
    if result.source is not None and result.source.plan_missing:
        click.echo(f"warning: {result.source.path} has no TensorRT plan yet: run its build_plans.sh on the serving "
                   "GPU before building the image or filling the claim")
    for step in result.next_steps:
        click.echo(f"next: {step}")


COMMANDS = [deploy]
