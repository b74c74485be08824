"""Code that runs inside Triton's Python backend, copied verbatim into generated
repositories (each stage ships the modules its entry module imports).

Stages (entry modules, each opening with its contract): ``preprocess``,
``preprocess_gpu``, ``detector``, ``postprocess``. Helpers: ``stage_utils`` (config
parameters), ``imaging`` (decode + letterbox), ``letterbox`` (the geometry and the
TRANSFORM row), ``boxes`` (NMS, padded detections), ``layouts/`` (decoding a detector's
outputs), ``runners/`` (detector runtimes), ``cuda_letterbox`` + ``dlpack`` (the GPU
preprocess engine). ``imaging``, ``boxes`` and ``layouts`` are also what the library uses
offline, so served and offline results come from the same code. Nothing here is build
tooling or a test stand-in."""
