"""``tritonforge deploy``: Kubernetes and KServe manifests for a generated repository."""
