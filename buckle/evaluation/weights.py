"""Judge weights are JSON files shipped in this package (no pickles: loading runs no code)."""

from __future__ import annotations

import json
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
