"""``tritonforge detect``: the SDK, from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

from generator.errors import ServerError, UsageError


def run_detect(paths: List[Path], url: str, protocol: str, model: str,
               draw_dir: Optional[Path] = None) -> List[Tuple[Path, list]]:
    """Detections for each image file; optionally write annotated PNGs to ``draw_dir``."""
    from client import DetectionClient, DetectionClientError, InvalidImageError

    try:
        with DetectionClient(url, protocol=protocol, model=model) as c:
            results = list(zip(paths, c.detect_batch(paths)))
    except InvalidImageError as exc:
        raise UsageError(str(exc)) from exc
    except DetectionClientError as exc:
        raise ServerError(str(exc)) from exc
    if draw_dir is not None:
        from generator.vis import draw_file

        for path, dets in results:
            draw_file(path, dets, Path(draw_dir))
    return results
