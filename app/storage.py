"""Artifacts (uploads, job work dirs, adapters) behind a small interface.

`LocalArtifactStore` keeps them under one directory. Writes go to a temporary file in the same
directory and are renamed into place, so a reader never sees half a file and a failed write leaves
nothing behind. Keys are relative POSIX paths chosen by the services (`files/<org>/<id>.jsonl`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

CHUNK = 1024 * 1024


class ArtifactStore(Protocol):
    def put(self, key: str, chunks: Iterable[bytes]) -> tuple[int, str]: ...
    def put_file(self, key: str, source: Path) -> tuple[int, str]: ...
    def open(self, key: str) -> BinaryIO: ...
    def path(self, key: str) -> Path: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def sha256(self, key: str) -> str: ...


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def iter_file(path: Path, start: int = 0) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(start)
        while chunk := f.read(CHUNK):
            yield chunk


class LocalArtifactStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise ValueError(f"artifact key escapes the store: {key!r}")
        return path

    def put(self, key: str, chunks: Iterable[bytes]) -> tuple[int, str]:
        """Write atomically; returns (bytes, sha256)."""
        dest = self.path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        h, size = hashlib.sha256(), 0
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
                    h.update(chunk)
                    size += len(chunk)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return size, h.hexdigest()

    def put_file(self, key: str, source: Path) -> tuple[int, str]:
        return self.put(key, iter_file(Path(source)))

    def open(self, key: str) -> BinaryIO:
        return open(self.path(key), "rb")

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def delete(self, key: str) -> None:
        path = self.path(key)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def sha256(self, key: str) -> str:
        return file_sha256(self.path(key))


def get_store() -> LocalArtifactStore:
    from app.core.config import get_settings

    return _store_for(str(get_settings().resolved_artifact_dir))


_stores: dict[str, LocalArtifactStore] = {}


def _store_for(root: str) -> LocalArtifactStore:
    if root not in _stores:
        _stores[root] = LocalArtifactStore(root)
    return _stores[root]
