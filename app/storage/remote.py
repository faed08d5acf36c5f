"""`FsspecArtifactStore`: artifacts in an object store shared by every host.

Through fsspec, with s3fs for `s3://` (AWS S3, MinIO, Ceph, R2, any S3-compatible server via
`endpoint_url`). Chosen over obstore (not on the package registries here) and over bare boto3
(fsspec gives streaming reads, recursive listings and presigned URLs behind one filesystem API,
and `gs://` / `az://` work the same once gcsfs / adlfs are installed).

An object PUT is atomic in S3: readers see the whole old object or the whole new one, and an
upload that fails leaves none. So `put` spools to a local temporary file (computing sha256 as it
goes) and uploads that file; `local_file` downloads to a temporary name and renames, so a
half-downloaded copy is never read. Keys are never rewritten by the services (ids are unique),
which is what makes the local cache by key and size safe.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

from app.storage.keys import check_key
from app.storage.local import file_sha256, iter_stream, put_tree, write_atomically


class FsspecArtifactStore:
    local = False

    def __init__(self, url: str, cache_dir: Path, endpoint_url: str | None = None,
                 presign_s: int = 0, **options: Any) -> None:
        import fsspec

        protocol = url.split("://", 1)[0] if "://" in url else "file"
        if protocol in ("s3", "s3a"):
            # Listings are not cached: several hosts write the same bucket. An unreachable
            # endpoint fails in seconds (readiness, requests) instead of botocore's minute.
            options.setdefault("use_listings_cache", False)
            options.setdefault("config_kwargs", {"connect_timeout": 5, "read_timeout": 60,
                                                 "retries": {"max_attempts": 3}})
            if endpoint_url:
                options.setdefault("endpoint_url", endpoint_url)
        self.fs, root = fsspec.core.url_to_fs(url, skip_instance_cache=True, **options)
        self.root = root.rstrip("/")
        self.url, self.protocol = url, protocol
        self.cache_dir = Path(cache_dir).expanduser()
        self.presign_s = presign_s

    def _path(self, key: str) -> str:
        return f"{self.root}/{check_key(key)}"

    def put(self, key: str, chunks: Iterable[bytes]) -> tuple[int, str]:
        """Upload whole or not at all; returns (bytes, sha256)."""
        path = self._path(key)
        spool = self.cache_dir / ".uploads"
        spool.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=spool, suffix=".part")
        os.close(fd)
        try:
            size, sha = write_atomically(Path(tmp), chunks)
            self.fs.put_file(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return size, sha

    def put_file(self, key: str, source: Path) -> tuple[int, str]:
        self.fs.put_file(str(source), self._path(key))
        return Path(source).stat().st_size, file_sha256(Path(source))

    def put_tree(self, prefix: str, folder: Path) -> int:
        return put_tree(self, prefix, folder)

    def open(self, key: str) -> BinaryIO:
        return self.fs.open(self._path(key), "rb")

    def read(self, key: str) -> bytes:
        """One GET: unlike `open`, which pins the object's ETag and fails if it is replaced
        mid-read, this returns whichever whole version the store served."""
        return self.fs.cat_file(self._path(key))

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self._path(key)))

    def size(self, key: str) -> int:
        return int(self.fs.size(self._path(key)))

    def list(self, prefix: str) -> list[str]:
        try:
            found = self.fs.find(self._path(prefix))
        except FileNotFoundError:
            return []
        start = len(self.root) + 1
        return sorted(p[start:] for p in found)

    def delete(self, key: str) -> None:
        """Remove a key, or every key under a prefix; a missing one is no error."""
        path = self._path(key)
        for found in self.list(key) or ([key] if self.exists(key) else []):
            try:
                self.fs.rm_file(self._path(found))
            except FileNotFoundError:
                pass
        if self.protocol not in ("s3", "s3a") and self.fs.isdir(path):
            self.fs.rm(path, recursive=True)  # file-like backends keep empty folders

    def local_file(self, key: str) -> Path:
        """A local copy of the key (downloaded once, then reused while its size matches)."""
        local = self.cache_dir / check_key(key)
        size = self.size(key)  # FileNotFoundError when the object is missing
        if local.is_file() and local.stat().st_size == size:
            return local
        got, _ = write_atomically(local, iter_stream(self.open(key)))
        if got != size:
            local.unlink(missing_ok=True)
            raise OSError(f"artifact {key!r}: downloaded {got} of {size} bytes")
        return local

    def local_tree(self, prefix: str) -> Path:
        keys = self.list(prefix)
        if not keys:
            raise FileNotFoundError(f"artifact folder {prefix!r} is missing")
        for key in keys:
            self.local_file(key)
        return self.cache_dir / check_key(prefix)

    def check(self) -> str | None:
        try:
            self.fs.ls(self.root.split("/", 1)[0], detail=False)  # the bucket answers
        except Exception as exc:  # noqa: BLE001 - readiness reports any failure
            return f"{type(exc).__name__}: {exc}"
        return None

    def download_url(self, key: str, disposition: str, media_type: str) -> str | None:
        """A presigned GET URL when BUCKLE_DOWNLOAD_PRESIGN_S > 0 (the client fetches from the
        store); None = the API streams the object."""
        if self.presign_s <= 0:
            return None
        path = self._path(key)
        if self.protocol in ("s3", "s3a"):
            return self.fs.url(path, expires=self.presign_s,
                               ResponseContentDisposition=disposition,
                               ResponseContentType=media_type)
        try:
            return self.fs.sign(path, expiration=self.presign_s)
        except NotImplementedError:
            return None

