"""A small stand-in for Triton's ``triton_python_backend_utils``, enough to import and
call the runtime models in unit tests (the integration tests run them for real)."""

import numpy as np


class TritonError:
    UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE, UNSUPPORTED, ALREADY_EXISTS, CANCELLED = range(8)

    def __init__(self, message, code=INTERNAL):
        self._message = message
        self._code = code

    def message(self):
        return self._message

    def code(self):
        return self._code


class Tensor:
    def __init__(self, name, array):
        self._name = name
        self._array = np.asarray(array)

    def name(self):
        return self._name

    def as_numpy(self):
        if self._array is None:
            raise RuntimeError("Tensor is stored in GPU and cannot be converted to NumPy.")
        return self._array

    def is_cpu(self):
        return self._array is not None

    @staticmethod
    def from_dlpack(name, tensor):
        """Like Triton's: a CPU producer becomes a numpy-backed tensor sharing its memory;
        a CUDA producer is kept as is (``dlpack_source``), as a device tensor would be."""
        device_type, device_id = tensor.__dlpack_device__()
        if device_type in (1, 3):  # kDLCPU, kDLCUDAHost
            return Tensor(name, np.from_dlpack(tensor))
        out = Tensor.__new__(Tensor)
        out._name, out._array, out.dlpack_source, out.device = name, None, tensor, (device_type, device_id)
        return out

    def to_dlpack(self):
        source = getattr(self, "dlpack_source", None)
        return source.__dlpack__() if source is not None else self._array.__dlpack__()


class InferenceRequest:
    """Test helper: a request carrying named input tensors."""

    def __init__(self, **inputs):
        self._inputs = {name: Tensor(name, value) for name, value in inputs.items()}


def get_input_tensor_by_name(request, name):
    return request._inputs.get(name)


class InferenceResponse:
    def __init__(self, output_tensors=None, error=None):
        self._outputs = {t.name(): t for t in (output_tensors or [])}
        self._error = error

    def has_error(self):
        return self._error is not None

    def error(self):
        return self._error

    def output(self, name):
        return self._outputs[name].as_numpy()


class Logger:
    """Records what the models log (``Logger.messages``: (level, message) pairs)."""

    messages = []

    @classmethod
    def log(cls, message, level="INFO"):
        cls.messages.append((level, message))

    @classmethod
    def log_info(cls, message):
        cls.log(message, "INFO")

    @classmethod
    def log_warn(cls, message):
        cls.log(message, "WARNING")

    @classmethod
    def log_error(cls, message):
        cls.log(message, "ERROR")

    @classmethod
    def log_verbose(cls, message):
        cls.log(message, "VERBOSE")
