"""A job's work dir: the running worker's local scratch (checkpoints, step log, corpus links),
mirrored to the object store at every checkpoint so a worker on another host resumes the job
from there instead of from step 0.

With the local store every worker shares one disk, so there is nothing to mirror. With an object
store the mirror is content-addressed: each file's bytes are an object `jobs/<job>/work/<sha256>`
(uploaded once, however often the file is pushed), and a manifest, `jobs/<job>/work.json`, maps
each relative path to its sha256 under a `generation` that grows with each push. The manifest is
written last and blobs are dropped only once no manifest names them, so a worker killed mid-push
leaves the previous snapshot whole: a restore never mixes files of two checkpoints. A worker
restores the mirror before running a job when it is newer than what its own disk holds (its
marker file records the generation it last pushed or restored), so a job that moved A → B → A
does not resume from A's stale state. Only one worker holds a job's lease, so one pushes at a
time.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from app.core.config import get_settings
from app.storage import ArtifactStore, file_sha256, iter_stream
from app.storage.local import write_atomically

log = logging.getLogger("buckle.worker")
MARKER = ".buckle-mirror.json"  # dot-named: never pushed itself


def work_dir_of(job_id: str) -> Path:
    """Where a job's pipeline keeps its resumable state on this host."""
    return get_settings().resolved_work_dir / "jobs" / job_id / "work"


def _pushable(work_dir: Path) -> dict[str, os.stat_result]:
    """Regular files, except dot-named ones (locks, half-written checkpoints) and links (corpus
    caches, which each host keeps content-addressed)."""
    out = {}
    for path in work_dir.rglob("*"):
        rel = path.relative_to(work_dir)
        if path.is_symlink() or any(p.startswith(".") for p in rel.parts) or not path.is_file():
            continue
        if any(parent.is_symlink() for parent in path.parents if work_dir in parent.parents):
            continue
        out[rel.as_posix()] = path.stat()
    return out


class WorkDirMirror:
    def __init__(self, store: ArtifactStore, job_id: str, work_dir: Path) -> None:
        self.store, self.job_id, self.work_dir = store, job_id, work_dir
        self.enabled = not store.local
        self.prefix, self.manifest_key = f"jobs/{job_id}/work", f"jobs/{job_id}/work.json"
        self._sent: dict[str, tuple[tuple[int, int], str]] = {}  # rel -> (stamp, sha256)

    def _local_generation(self) -> int:
        try:
            return int(json.loads((self.work_dir / MARKER).read_text())["generation"])
        except (OSError, ValueError, KeyError):
            return 0

    def _remote_manifest(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.store.read(self.manifest_key))
        except FileNotFoundError:
            return None

    def restore(self) -> int:
        """Bring the store's newer snapshot onto this disk; returns the files fetched."""
        if not self.enabled:
            return 0
        manifest = self._remote_manifest()
        if manifest is None or manifest["generation"] <= self._local_generation():
            return 0
        files: dict[str, str] = manifest["files"]
        for rel in set(_pushable(self.work_dir)) - set(files):  # the snapshot has no such file
            self._remove(rel)
        for rel, sha in files.items():  # each file whole (temporary name, then rename)
            write_atomically(self.work_dir / rel,
                             iter_stream(self.store.open(f"{self.prefix}/{sha}")))
        self._mark(manifest["generation"])
        self._sent = {rel: ((st.st_size, st.st_mtime_ns), files[rel])
                      for rel, st in _pushable(self.work_dir).items() if rel in files}
        log.info("job %s: restored %d work-dir files (generation %d) from the store",
                 self.job_id, len(files), manifest["generation"])
        return len(files)

    def push(self) -> None:
        """Upload the blobs of what changed since the last push, then the manifest, then drop
        the blobs it does not name (a rotated-out checkpoint's, a dead push's)."""
        if not self.enabled:
            return
        try:
            before = self._remote_manifest() or {"generation": 0, "files": {}}
            stored = set(before["files"].values())
            files: dict[str, str] = {}
            for rel, st in _pushable(self.work_dir).items():
                stamp = (st.st_size, st.st_mtime_ns)
                sent = self._sent.get(rel)
                sha = sent[1] if sent and sent[0] == stamp else file_sha256(self.work_dir / rel)
                if sha not in stored:
                    self.store.put_file(f"{self.prefix}/{sha}", self.work_dir / rel)
                    stored.add(sha)
                files[rel] = sha
                self._sent[rel] = (stamp, sha)
            generation = max(self._local_generation(), before["generation"]) + 1
            body = json.dumps({"generation": generation, "files": files}, sort_keys=True)
            self.store.put(self.manifest_key, [body.encode()])
            self._mark(generation)
            keep = set(files.values())  # also drops blobs of a push that died before its manifest
            for key in self.store.list(self.prefix):
                if key.rsplit("/", 1)[1] not in keep:
                    self.store.delete(key)
        except Exception:
            log.exception("job %s: mirroring the work dir to the store failed", self.job_id)

    def discard(self) -> None:
        """The job is finished: its mirror is no longer needed."""
        if self.enabled:
            self.store.delete(self.manifest_key)
            self.store.delete(self.prefix)

    def _remove(self, rel: str) -> None:
        """Delete a file and the folders it leaves empty: an empty `step-N` folder must not
        look like a checkpoint to the trainer."""
        path = self.work_dir / rel
        path.unlink()
        for parent in path.parents:
            if parent == self.work_dir or any(parent.iterdir()):
                break
            parent.rmdir()

    def _mark(self, generation: int) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / MARKER).write_text(json.dumps({"generation": generation}))
