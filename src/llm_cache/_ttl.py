"""TTL arithmetic shared by every backend (no I/O)."""

from __future__ import annotations

import math

from .errors import ConfigurationError


def validate_ttl(ttl: float | None) -> float | None:
    """Return ``ttl`` as seconds (``None`` = never expires) or raise a clear error."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise ConfigurationError(f"ttl must be a number of seconds or None, not {ttl!r}")
    if not math.isfinite(ttl) or ttl <= 0:
        raise ConfigurationError(f"ttl must be a positive number of seconds, not {ttl!r}")
    return float(ttl)


def expires_at(now: float, ttl: float | None) -> float | None:
    """The absolute expiry time of an entry written at ``now``."""
    return None if ttl is None else now + ttl


def is_expired(expiry: float | None, now: float) -> bool:
    """Whether an entry with absolute expiry ``expiry`` is gone at ``now``."""
    return expiry is not None and now >= expiry
