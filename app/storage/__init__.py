"""Artifacts (uploads, adapters, result files) behind one interface, local or in an object store.

Keys are relative POSIX paths chosen by the services (`files/<org>/<id>.jsonl`,
`adapters/<job>/<attempt>/...`); a key that would leave the store is refused. Two stores:

  LocalArtifactStore   a directory (`BUCKLE_ARTIFACT_DIR`): the embedded default, one host;
  FsspecArtifactStore  an object store (`BUCKLE_STORAGE_URL=s3://bucket/prefix`, through s3fs):
                       every API and worker host reads and writes the same artifacts.

Workers train on local files: `local_file` / `local_tree` give a path holding a key's content
(the file itself for the local store, a verified cached download for an object store).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, Protocol

from app.storage.keys import check_key
from app.storage.local import CHUNK, LocalArtifactStore, file_sha256, iter_file, iter_stream

__all__ = ["CHUNK", "ArtifactStore", "LocalArtifactStore", "check_key", "file_sha256",
           "get_store", "iter_file", "iter_stream"]


class ArtifactStore(Protocol):
    local: bool  # True when `local_file` is the stored file itself (no copy)

    def put(self, key: str, chunks: Iterable[bytes]) -> tuple[int, str]: ...
    def put_file(self, key: str, source: Path) -> tuple[int, str]: ...
    def put_tree(self, prefix: str, folder: Path) -> int: ...
    def open(self, key: str) -> BinaryIO: ...
    def read(self, key: str) -> bytes: ...  # a whole (small) object in one request
    def exists(self, key: str) -> bool: ...
    def size(self, key: str) -> int: ...
    def list(self, prefix: str) -> list[str]: ...
    def delete(self, key: str) -> None: ...
    def local_file(self, key: str) -> Path: ...
    def local_tree(self, prefix: str) -> Path: ...
    def download_url(self, key: str, disposition: str, media_type: str) -> str | None: ...
    def check(self) -> str | None: ...  # None when reachable, else the error (for /readyz)


_stores: dict[tuple[int, str], ArtifactStore] = {}


def get_store() -> ArtifactStore:
    """The configured store, one per process (a forked worker child builds its own: s3fs's
    event loop and connections do not survive a fork)."""
    from app.core.config import get_settings

    s = get_settings()
    where = s.storage_url or str(s.resolved_artifact_dir)
    key = (os.getpid(), where)
    if key not in _stores:
        if s.storage_url:
            from app.storage.remote import FsspecArtifactStore

            _stores[key] = FsspecArtifactStore(
                s.storage_url, cache_dir=s.resolved_work_dir / "cache",
                endpoint_url=s.s3_endpoint_url, presign_s=s.download_presign_s)
        else:
            _stores[key] = LocalArtifactStore(s.resolved_artifact_dir)
    return _stores[key]
