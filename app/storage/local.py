"""`LocalArtifactStore`: artifacts under one directory (the embedded default).

Writes go to a temporary file in the same directory and are renamed into place, so a reader
never sees half a file and a failed write leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from app.storage.keys import check_key

CHUNK = 1024 * 1024


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


def iter_stream(f: BinaryIO) -> Iterator[bytes]:
    """An open binary file (local or an object store's) as chunks, closing it at the end."""
    with f:
        while chunk := f.read(CHUNK):
            yield chunk


def write_atomically(dest: Path, chunks: Iterable[bytes]) -> tuple[int, str]:
    """Write `chunks` to `dest` through a fsynced temporary file; returns (bytes, sha256)."""
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


class _PutsFiles(Protocol):
    def put_file(self, key: str, source: Path) -> tuple[int, str]: ...


def put_tree(store: _PutsFiles, prefix: str, folder: Path) -> int:
    """Store every file under `folder` as `prefix/<relative path>` (through `store.put_file`);
    returns the file count."""
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    for f in files:
        store.put_file(f"{prefix}/{f.relative_to(folder).as_posix()}", f)
    return len(files)


class LocalArtifactStore:
    local = True

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise ValueError(f"artifact key escapes the store: {key!r}")
        return path

    def put(self, key: str, chunks: Iterable[bytes]) -> tuple[int, str]:
        """Write atomically; returns (bytes, sha256)."""
        return write_atomically(self.path(key), chunks)

    def put_file(self, key: str, source: Path) -> tuple[int, str]:
        return self.put(key, iter_file(Path(source)))

    def put_tree(self, prefix: str, folder: Path) -> int:
        return put_tree(self, prefix, folder)

    def open(self, key: str) -> BinaryIO:
        return open(self.path(key), "rb")

    def read(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def size(self, key: str) -> int:
        return self.path(key).stat().st_size

    def list(self, prefix: str) -> list[str]:
        root = self.path(prefix)
        return sorted(p.relative_to(self.root).as_posix() for p in root.rglob("*")
                      if p.is_file()) if root.is_dir() else []

    def delete(self, key: str) -> None:
        """Remove a key, or every key under a prefix; a missing one is no error."""
        path = self.path(key)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def local_file(self, key: str) -> Path:
        path = self.path(key)
        if not path.is_file():
            raise FileNotFoundError(f"artifact {key!r} is missing")
        return path

    def local_tree(self, prefix: str) -> Path:
        path = self.path(prefix)
        if not path.is_dir():
            raise FileNotFoundError(f"artifact folder {prefix!r} is missing")
        return path

    def download_url(self, key: str, disposition: str, media_type: str) -> str | None:
        return None  # the API serves the file itself

    def check(self) -> str | None:
        return None if os.access(self.root, os.W_OK) else f"{self.root} is not writable"
