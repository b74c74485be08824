"""Code that runs inside Triton's Python backend, copied verbatim into generated
repositories. ``imaging`` and ``boxes`` are plain numpy/OpenCV and are also what the
library uses offline, so served and offline results come from the same code."""
