"""``DetectionClient``: send images to a tritonforge ensemble over gRPC or HTTP."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from client.detection import Detection, from_arrays
from client.errors import InferenceError, ModelNotFoundError, ServerUnavailableError
from client.images import ImageInput, to_bytes

OUTPUTS = ("num_detections", "boxes", "scores", "classes")
_DEFAULT_PORT = {"grpc": 8001, "http": 8000}


@dataclass(frozen=True)
class ModelInfo:
    """What the client learns from the model's config on first use."""

    name: str
    version: str
    max_batch_size: int
    class_names: Tuple[str, ...]
    input_size: Optional[Tuple[int, int]]  # (height, width) of the detector input


def _split_url(url: str, protocol: str) -> Tuple[str, bool]:
    ssl = url.startswith(("https://", "grpcs://"))
    for prefix in ("http://", "https://", "grpc://", "grpcs://"):
        if url.startswith(prefix):
            url = url[len(prefix):]
    url = url.rstrip("/")
    if ":" not in url.rsplit("]", 1)[-1]:
        url = f"{url}:{_DEFAULT_PORT[protocol]}"
    return url, ssl


class DetectionClient:
    """Synchronous client of a tritonforge ensemble.

    ``url`` is ``host:port`` (gRPC default port 8001, HTTP 8000); ``model`` is the
    ensemble's name. Images may be file paths, encoded bytes, or RGB uint8 arrays.
    """

    def __init__(self, url: str = "localhost:8001", protocol: str = "grpc", model: str = "detector_ensemble",
                 model_version: str = "", timeout: float = 60.0):
        if protocol not in ("grpc", "http"):
            raise ValueError(f"protocol must be 'grpc' or 'http', got {protocol!r}")
        self.url, self._ssl = _split_url(url, protocol)
        self.protocol = protocol
        self.model = model
        self.model_version = model_version
        self.timeout = timeout
        self._client: Any = None
        self._module: Any = None
        self._info: Optional[ModelInfo] = None

    # -- connection ------------------------------------------------------
    def _connect(self):
        if self._client is None:
            if self.protocol == "grpc":
                import tritonclient.grpc as module

                self._client = module.InferenceServerClient(self.url, ssl=self._ssl)
            else:
                import tritonclient.http as module

                self._client = module.InferenceServerClient(
                    self.url, ssl=self._ssl, connection_timeout=self.timeout, network_timeout=self.timeout)
            self._module = module
        return self._client

    def _call(self, what: str, fn, *args, **kwargs):
        """Run a tritonclient call, translating its exceptions into the SDK's."""
        from tritonclient.utils import InferenceServerException

        try:
            return fn(*args, **kwargs)
        except InferenceServerException as exc:
            status = str(exc.status() or "")
            message = exc.message() or str(exc)
            if "UNAVAILABLE" in status or "DEADLINE_EXCEEDED" in status or "failed to connect" in message.lower():
                raise ServerUnavailableError(f"{self.protocol} server at {self.url} is unavailable: {message}") from exc
            if "unknown model" in message.lower() or "NOT_FOUND" in status or "not found" in message.lower():
                raise ModelNotFoundError(f"{self.url}: model {self.model!r} not found: {message}") from exc
            raise InferenceError(f"{what} failed on {self.url}: {message}") from exc
        except (OSError, ConnectionError) as exc:
            raise ServerUnavailableError(f"{self.protocol} server at {self.url} is unreachable: {exc}") from exc

    def is_ready(self) -> bool:
        """True when the server is up and the model is ready (never raises)."""
        try:
            client = self._connect()
            return bool(self._call("readiness", client.is_model_ready, self.model, self.model_version))
        except Exception:
            return False

    def info(self) -> ModelInfo:
        """Model facts from the server (cached): max batch size, class names, input size."""
        if self._info is None:
            client = self._connect()
            live = self._call("liveness check", client.is_server_live)
            if not live:
                raise ServerUnavailableError(f"{self.protocol} server at {self.url} is not live")
            if not self._call("readiness check", client.is_model_ready, self.model, self.model_version):
                available = self._available_models()
                raise ModelNotFoundError(
                    f"{self.url}: model {self.model!r} is not served or not ready; ready models: {available}")
            config = self._call("config request", client.get_model_config, self.model, self.model_version)
            self._info = _model_info(self.model, self.model_version, config)
        return self._info

    def _available_models(self) -> List[str]:
        try:
            index = self._connect().get_model_repository_index()
        except Exception:
            return []
        entries = index.models if hasattr(index, "models") else index
        return sorted(e.name if hasattr(e, "name") else e.get("name", "?") for e in entries
                      if (getattr(e, "state", None) or (e.get("state") if isinstance(e, dict) else "")) == "READY")

    # -- inference -------------------------------------------------------
    def detect(self, image: ImageInput) -> List[Detection]:
        """Detections for one image."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[ImageInput]) -> List[List[Detection]]:
        """Detections for each image, sent in requests of at most the model's max batch size."""
        encoded = [to_bytes(image) for image in images]
        info = self.info()
        step = max(1, info.max_batch_size)
        results: List[List[Detection]] = []
        for start in range(0, len(encoded), step):
            results.extend(self._infer(encoded[start:start + step], info))
        return results

    def _infer(self, encoded: List[bytes], info: ModelInfo) -> List[List[Detection]]:
        module = self._module
        inp = module.InferInput("IMAGE", [len(encoded), 1], "BYTES")
        data = np.empty((len(encoded), 1), dtype=object)
        data[:, 0] = encoded
        if self.protocol == "http":
            inp.set_data_from_numpy(data, binary_data=True)
            outputs = [module.InferRequestedOutput(name, binary_data=True) for name in OUTPUTS]
            kwargs = {}
        else:
            inp.set_data_from_numpy(data)
            outputs = [module.InferRequestedOutput(name) for name in OUTPUTS]
            kwargs = {"client_timeout": self.timeout}
        result = self._call(f"inference on {self.model!r}", self._client.infer, self.model, [inp],
                            model_version=self.model_version, outputs=outputs, **kwargs)
        arrays = [result.as_numpy(name) for name in OUTPUTS]
        return from_arrays(*arrays, names=info.class_names)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> "DetectionClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _model_info(model: str, version: str, config: Any) -> ModelInfo:
    """Parse the model config returned by either protocol (protobuf or JSON dict)."""
    if hasattr(config, "config"):  # gRPC: ModelConfigResponse
        cfg = config.config
        params = {k: v.string_value for k, v in cfg.parameters.items()}
        max_batch = cfg.max_batch_size
    else:
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        max_batch = config.get("max_batch_size", 0)
    names = tuple(json.loads(params["class_names"])) if "class_names" in params else ()
    size = None
    if "input_height" in params and "input_width" in params:
        size = (int(params["input_height"]), int(params["input_width"]))
    return ModelInfo(model, version, int(max_batch), names, size)
