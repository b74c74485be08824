"""tritonforge client SDK: call a tritonforge detection ensemble over gRPC or HTTP.

Needs only ``tritonclient`` and ``numpy`` (``pip install 'tritonforge[client]'``); it
never imports torch, OpenCV or the ``generator`` package.

    from client import DetectionClient
    with DetectionClient("localhost:8001", protocol="grpc") as c:
        for det in c.detect("street.jpg"):
            print(det.class_name, det.score, det.x1, det.y1, det.x2, det.y2)

``AsyncDetectionClient`` is the asyncio form of the same API.
"""

from client.aio import AsyncDetectionClient
from client.client import DetectionClient
from client.detection import CategoryIds, Detection, FrameResult, to_coco, to_dicts, to_json
from client.draw import draw, draw_array
from client.errors import (
    ClientConfigError, DetectionClientError, InferenceError, InvalidImageError, ModelNotFoundError,
    ModelUnavailableError, PermissionDeniedError, RequestTimeoutError, ServerUnavailableError, TLSError,
)
from client.images import encode_png, to_bytes
from client.info import ModelInfo, TensorSpec

__all__ = [
    "DetectionClient", "AsyncDetectionClient", "ModelInfo", "TensorSpec",
    "Detection", "FrameResult", "CategoryIds", "to_dicts", "to_json", "to_coco", "draw", "draw_array",
    "encode_png", "to_bytes",
    "ClientConfigError", "DetectionClientError", "InferenceError", "InvalidImageError", "ModelNotFoundError",
    "ModelUnavailableError", "PermissionDeniedError", "RequestTimeoutError",
    "ServerUnavailableError", "TLSError",
]
