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


class MetricFamily:
    """Like Triton's (``pb_utils.MetricFamily``): a family per name, shared by every model
    instance that creates it, each label set one series. ``value(name, **labels)`` reads
    what the models counted; ``reset()`` forgets every family (a fresh server)."""

    COUNTER, GAUGE, HISTOGRAM = "COUNTER", "GAUGE", "HISTOGRAM"
    _series = {}  # name -> {sorted label items: value}
    _kinds = {}

    def __init__(self, name, description, kind):
        if kind not in (self.COUNTER, self.GAUGE):
            raise ValueError(f"unsupported metric kind {kind!r}")
        if self._kinds.setdefault(name, kind) != kind:
            raise ValueError(f"metric family {name!r} exists with another kind")
        self.name, self.description, self.kind = name, description, kind
        self._series.setdefault(name, {})

    def Metric(self, labels=None):  # noqa: N802 - Triton's name
        return Metric(self, dict(labels or {}))

    @classmethod
    def value(cls, name, **labels):
        """The series of ``name`` with exactly ``labels`` (None when no model created it)."""
        return cls._series.get(name, {}).get(tuple(sorted(labels.items())))

    @classmethod
    def series(cls, name):
        """Every series of ``name``: ``{sorted label items: value}``."""
        return dict(cls._series.get(name, {}))

    @classmethod
    def reset(cls):
        cls._series.clear()
        cls._kinds.clear()


class Metric:
    def __init__(self, family, labels):
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise TypeError(f"metric labels must be strings, got {labels!r}")
        self._family, self._key = family, tuple(sorted(labels.items()))
        family._series[family.name].setdefault(self._key, 0.0)

    def increment(self, value):
        if self._family.kind == MetricFamily.COUNTER and value < 0:
            raise ValueError("a counter cannot decrease")
        self._family._series[self._family.name][self._key] += value

    def set(self, value):
        if self._family.kind != MetricFamily.GAUGE:
            raise ValueError("set() is for gauges")
        self._family._series[self._family.name][self._key] = value

    def value(self):
        return self._family._series[self._family.name][self._key]
