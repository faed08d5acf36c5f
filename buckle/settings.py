"""Library-level settings: where Buckle keeps its cache, read from env vars.

One place so the CLI, the workers and the tests agree on `BUCKLE_HOME`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class LibrarySettings(BaseSettings):
    """Env vars prefixed `BUCKLE_`; every field has a default so nothing needs to be set."""

    model_config = SettingsConfigDict(env_prefix="BUCKLE_", extra="ignore")

    home: Path = Field(
        default=Path("~/.cache/buckle"),
        description="Cache for converted models, fetched wheels and curated corpora.",
    )

    @property
    def home_dir(self) -> Path:
        path = self.home.expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return path


def buckle_home() -> Path:
    """The cache root. Re-read each call so tests can point BUCKLE_HOME elsewhere."""
    return LibrarySettings().home_dir
