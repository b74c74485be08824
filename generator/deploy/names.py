"""Kubernetes names and values, checked before anything is rendered: DNS-1123 names,
resource quantities, image references, Triton release tags."""

from __future__ import annotations

import re
from typing import Optional, Tuple

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # DNS-1123 label
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_CPU = re.compile(r"^([0-9]+m|[0-9]+(\.[0-9]+)?)$")
_MEMORY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_RELEASE = re.compile(r"^[0-9]{2}\.[0-9]{2}$")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(rf"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
                    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$")

# KServe appends "-predictor-..." to the InferenceService name, and the generated names add
# "-admin-key", "-adapter-rules": 40 keeps every derived name within 63 characters
NAME_MAX = 40


def is_label(text: str, limit: int = 63) -> bool:
    return bool(_LABEL.match(text or "")) and len(text) <= limit


def is_subdomain(text: str) -> bool:
    return bool(_SUBDOMAIN.match(text or "")) and len(text) <= 253


def is_cpu(text: str) -> bool:
    return bool(_CPU.match(text or "")) and text not in ("0", "0m")


def is_memory(text: str) -> bool:
    return bool(_MEMORY.match(text or "")) and not re.match(r"^0+(\.0+)?[A-Za-z]*$", text)


def is_release(text: str) -> bool:
    return bool(_RELEASE.match(text or ""))


def is_image(text: str) -> bool:
    return bool(_IMAGE.match(text or ""))


def split_tag(image: str) -> Tuple[str, Optional[str]]:
    """``repo[:port]/path[:tag]`` -> (repository, tag or None); a digest stays in the repository."""
    if "@" in image:
        return image, None
    head, _, last = image.rpartition("/")
    if ":" in last:
        name, tag = last.split(":", 1)
        return (f"{head}/{name}" if head else name), tag
    return image, None


def dns_name(text: str) -> str:
    """``text`` as a DNS-1123 label: lower case, ``_`` and ``.`` as ``-``, other characters dropped."""
    out = re.sub(r"[^a-z0-9-]", "", re.sub(r"[_.]", "-", text.lower()))
    return re.sub(r"-+", "-", out).strip("-")[:NAME_MAX].rstrip("-")
