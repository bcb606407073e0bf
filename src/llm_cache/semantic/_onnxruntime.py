"""Importing onnxruntime with its telemetry off (private).

onnxruntime 1.32's Linux build carries Microsoft's 1DS telemetry client: on import it
opens an event store (``~/.cache/Microsoft/DeveloperTools/.onnxruntime/onnxruntime.db``)
and some seconds later resolves and posts to ``mobile.events.data.microsoft.com``
(measured here with strace: DNS queries about 9 s after the first session). llm-cache
promises that local embeddings never touch the network.

What stops it, measured: ``ORT_DISABLE_TELEMETRY=1`` in the environment *before onnxruntime
is imported* (no event store, no DNS query). ``onnxruntime.disable_telemetry_events()``
called after the import does not stop the upload; it is called too, as a best effort.
So every import of onnxruntime in llm-cache goes through :func:`import_onnxruntime`, which
sets the variable first (unless the process set it already: an explicit ``0`` is the
user's choice). If something imported onnxruntime before llm-cache could set it, a
warning says to set ``ORT_DISABLE_TELEMETRY=1`` in the environment.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from .._imports import require

__all__ = ["import_onnxruntime"]

logger = logging.getLogger("llm_cache")
_VARIABLE = "ORT_DISABLE_TELEMETRY"
_first_call = True


def import_onnxruntime(feature: str) -> Any:
    """The ``onnxruntime`` module, its telemetry switched off (``feature`` names what needs
    it in the missing-extra error)."""
    global _first_call
    if _first_call and "onnxruntime" in sys.modules and os.environ.get(_VARIABLE) != "1":
        logger.warning(
            "llm-cache: onnxruntime was imported before llm-cache could switch its telemetry off; "
            "set %s=1 in the environment to keep local embeddings offline",
            _VARIABLE,
        )
    _first_call = False
    os.environ.setdefault(_VARIABLE, "1")
    ort = require("onnxruntime", extra="semantic", feature=feature)
    disable = getattr(ort, "disable_telemetry_events", None)
    if callable(disable):
        disable()
    return ort
