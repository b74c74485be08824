"""A small stand-in for Triton's ``triton_python_backend_utils``, enough to import and
call the runtime models in unit tests (the integration tests run them for real)."""

import numpy as np


class TritonError:
    def __init__(self, message):
        self._message = message

    def message(self):
        return self._message


class Tensor:
    def __init__(self, name, array):
        self._name = name
        self._array = np.asarray(array)

    def name(self):
        return self._name

    def as_numpy(self):
        return self._array


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
