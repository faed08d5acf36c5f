"""Keep server paths out of what clients read.

Workers record what the library reports (checkpoint and corpus paths, report locations, error
texts that name files); those values are useful in logs but are a server's private layout.
Every response that carries worker-written data passes through `scrub`: a value that is a
filesystem path becomes null (keys stay, so documented shapes such as the safety report's do
not change), and a path inside a message is replaced by `<server path>`.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from app.core.config import get_settings
from buckle.settings import LibrarySettings

PLACEHOLDER = "<server path>"
# An absolute POSIX path or a home-relative one, as a whole value.
_PATH_VALUE = re.compile(r"^(~|/)[^\s]*$")


@lru_cache(maxsize=8)
def _roots_pattern(home: str, *dirs: Path) -> re.Pattern[str]:
    roots = [Path(r).expanduser() for r in (*dirs, home)]
    names = {str(r) for r in roots} | {str(r.resolve()) for r in roots} | {str(Path.home())}
    alternatives = "|".join(re.escape(r) for r in sorted(names, key=len, reverse=True))
    return re.compile(f"(?:{alternatives})[^\\s'\"]*")


_last: list = [None, None]  # [Settings, pattern]: the object is kept, so its id is never reused


def _pattern() -> re.Pattern[str]:
    # Cached per Settings object: this runs on the job-polling hot path, and resolving the
    # directories reads the environment.
    s = get_settings()
    if _last[0] is not s:
        home = os.environ.get("BUCKLE_HOME") or str(LibrarySettings.model_fields["home"].default)
        _last[:] = [s, _roots_pattern(home, s.resolved_data_dir, s.resolved_artifact_dir,
                                      s.resolved_work_dir)]
    return _last[1]


def scrub_text(text: str) -> str:
    return _pattern().sub(PLACEHOLDER, text)


def scrub(value: Any) -> Any:
    """`value` without server paths (path values become None; paths in text are masked)."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return None if _PATH_VALUE.match(value) else scrub_text(value)
    return value
