"""Artifact keys: relative POSIX paths, checked the same way for every store."""

from __future__ import annotations


def check_key(key: str) -> str:
    """The key, or ValueError when it is empty, absolute or climbs out (`..`): keys come from
    the services, but a store must not be the place where one slip becomes another tenant's
    object."""
    parts = key.split("/") if isinstance(key, str) else [""]
    if not key or "\\" in key or "\x00" in key or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"artifact key escapes the store: {key!r}")
    return key
