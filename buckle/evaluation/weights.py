"""Judge weights are JSON files shipped in this package (no pickles: loading runs no code)."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any


def read_weights_json(default_name: str, path: str | Path | None = None) -> dict[str, Any]:
    """The JSON document at `path`, or the packaged `buckle/evaluation/<default_name>`."""
    if path is None:
        text = resources.files("buckle.evaluation").joinpath(default_name).read_text(
            encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    return json.loads(text)


@lru_cache(maxsize=1)
def judges_fingerprint() -> str:
    """sha256 over every packaged weights file: a stored report is reused only if the judges
    that produced it are the ones this code runs."""
    h = hashlib.sha256()
    root = resources.files("buckle.evaluation")
    for name in sorted(p.name for p in root.iterdir() if p.name.endswith(".json")):
        h.update(name.encode() + b"\0" + root.joinpath(name).read_bytes())
    return h.hexdigest()
