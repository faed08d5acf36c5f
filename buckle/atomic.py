"""Atomic file writes: temp file in the same folder, fsync, then `os.replace`.

Why one helper: curated corpora, checkpoints, reports and adapters are all read by other
processes (workers, the API) and must survive kill -9 mid-write; a reader sees the old file or
the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600, which would hide it from other readers
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, value: Any, *, indent: int | None = 2) -> Path:
    text = json.dumps(value, indent=indent, ensure_ascii=False, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def atomic_write_jsonl(path: str | Path, rows: list[Any]) -> Path:
    """One JSON value per line (compact), written as a whole."""
    lines = [json.dumps(r, ensure_ascii=False, allow_nan=False) for r in rows]
    return atomic_write_text(path, "".join(line + "\n" for line in lines))
