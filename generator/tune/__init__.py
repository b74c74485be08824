"""``tritonforge tune``: sweep a repository's batching, instances and runtime on the bundled server."""
