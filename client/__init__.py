"""tritonforge client SDK: call a tritonforge detection ensemble over gRPC or HTTP.

Needs only ``tritonclient`` and ``numpy`` (``pip install 'tritonforge[client]'``); it
never imports torch or the ``generator`` package.

    from client import DetectionClient
    with DetectionClient("localhost:8001", protocol="grpc") as c:
        for det in c.detect("street.jpg"):
            print(det.class_name, det.score, det.x1, det.y1, det.x2, det.y2)
"""

from client.client import DetectionClient, ModelInfo
from client.detection import Detection, to_json
from client.errors import (
    DetectionClientError, InferenceError, InvalidImageError, ModelNotFoundError, ServerUnavailableError,
)
from client.images import encode_png, to_bytes

__all__ = [
    "DetectionClient", "ModelInfo", "Detection", "to_json", "encode_png", "to_bytes",
    "DetectionClientError", "InferenceError", "InvalidImageError", "ModelNotFoundError", "ServerUnavailableError",
]
