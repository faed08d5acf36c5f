"""A job's work dir: the running worker's local scratch (checkpoints, step log, corpus links),
mirrored to the object store at every checkpoint so a worker on another host resumes the job
from there instead of from step 0.

With the local store every worker shares one disk, so there is nothing to mirror. With an object
store the mirror is `jobs/<job>/work/<relative path>` plus a manifest, `jobs/<job>/work.json`,
whose `generation` grows with each push. A worker restores the mirror before running a job when
the mirror is newer than what its own disk holds (its marker file records the generation it last
pushed or restored), so a job that moved A → B → A does not resume from A's stale state. Only one
worker holds a job's lease, so only one pushes at a time.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from app.core.config import get_settings
from app.storage import ArtifactStore, iter_stream
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
        self._sent: dict[str, tuple[int, int]] = {}

    def _local_generation(self) -> int:
        try:
            return int(json.loads((self.work_dir / MARKER).read_text())["generation"])
        except (OSError, ValueError, KeyError):
            return 0

    def _remote_manifest(self) -> dict[str, Any] | None:
        if not self.store.exists(self.manifest_key):
            return None
        with self.store.open(self.manifest_key) as f:
            return json.loads(f.read())

    def restore(self) -> int:
        """Bring the store's newer state onto this disk; returns the files fetched."""
        if not self.enabled:
            return 0
        manifest = self._remote_manifest()
        if manifest is None or manifest["generation"] <= self._local_generation():
            return 0
        files = manifest["files"]
        for rel in set(_pushable(self.work_dir)) - set(files):  # newer state drops these
            (self.work_dir / rel).unlink()
        for rel in files:  # each file whole (temporary name, then rename) or not at all
            write_atomically(self.work_dir / rel, iter_stream(self.store.open(f"{self.prefix}/{rel}")))
        self._mark(manifest["generation"])
        self._sent = {rel: (st.st_size, st.st_mtime_ns)
                      for rel, st in _pushable(self.work_dir).items()}
        log.info("job %s: restored %d work-dir files (generation %d) from the store",
                 self.job_id, len(files), manifest["generation"])
        return len(files)

    def push(self) -> None:
        """Upload what changed since the last push, drop what is gone, then the manifest."""
        if not self.enabled:
            return
        try:
            files = _pushable(self.work_dir)
            before = self._remote_manifest() or {"generation": 0, "files": []}
            for rel, st in files.items():
                stamp = (st.st_size, st.st_mtime_ns)
                if self._sent.get(rel) != stamp:
                    self.store.put_file(f"{self.prefix}/{rel}", self.work_dir / rel)
                    self._sent[rel] = stamp
            for rel in set(before["files"]) - set(files):  # e.g. a rotated-out checkpoint
                self.store.delete(f"{self.prefix}/{rel}")
                self._sent.pop(rel, None)
            generation = max(self._local_generation(), before["generation"]) + 1
            body = json.dumps({"generation": generation, "files": sorted(files)}).encode()
            self.store.put(self.manifest_key, [body])
            self._mark(generation)
        except Exception:
            log.exception("job %s: mirroring the work dir to the store failed", self.job_id)

    def discard(self) -> None:
        """The job is finished: its mirror is no longer needed."""
        if self.enabled:
            self.store.delete(self.manifest_key)
            self.store.delete(self.prefix)

    def _mark(self, generation: int) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / MARKER).write_text(json.dumps({"generation": generation}))
