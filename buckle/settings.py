"""Library-level settings: where Buckle keeps its cache, read from env vars.

One place so the CLI, the workers and the tests agree on `BUCKLE_HOME`.
"""

from __future__ import annotations

from functools import lru_cache
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
    default_model: str = "smollm2-135m-instruct"

    @property
    def home_dir(self) -> Path:
        path = self.home.expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return path


@lru_cache(maxsize=1)
def get_settings() -> LibrarySettings:
    return LibrarySettings()


def buckle_home() -> Path:
    """The cache root. Re-read each call so tests can point BUCKLE_HOME elsewhere."""
    return LibrarySettings().home_dir
