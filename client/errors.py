"""Exceptions raised by the client SDK."""


class DetectionClientError(Exception):
    """Base class of every SDK error."""


class ServerUnavailableError(DetectionClientError):
    """The server cannot be reached (wrong address, not started, network down)."""


class ModelNotFoundError(DetectionClientError):
    """The server answers but does not serve the requested model (or it is not ready)."""


class InferenceError(DetectionClientError):
    """The server refused or failed a request; the message is the server's."""


class InvalidImageError(DetectionClientError, ValueError):
    """An input the client cannot send as an image (unknown type, missing file, bad array)."""
