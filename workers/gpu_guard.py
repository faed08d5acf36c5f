"""One training worker per GPU, enforced: a `train` worker claims the GPUs it can see with an
exclusive lock file each, and refuses to start when another process holds one.

Why: two training processes on one device silently halve each other's speed and can run it out
of memory mid-job; `docker compose up --scale worker=N` used to do exactly that. Pin each
training worker to its own device (`CUDA_VISIBLE_DEVICES`, or compose `device_ids`) and add
devices to scale. The locks live in `BUCKLE_GPU_LOCK_DIR` (default `/tmp/buckle-gpu-locks`);
workers in separate containers see each other only through a shared mount of that folder,
which the compose file provides. A lock is an `flock` on an open file: it is released when the
worker process exits, however it exits (no stale locks after a crash).

`BUCKLE_WORKER_GPU` names the device(s) explicitly instead of asking CUDA (comma-separated ids
or UUIDs): for hosts where CUDA is initialised later, and for the tests, which run on CPU.
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path
from typing import IO

DEFAULT_LOCK_DIR = "/tmp/buckle-gpu-locks"


class GpuClaimError(RuntimeError):
    """This worker must not start: its GPU is taken, or the worker is not pinned to one."""


def visible_gpus() -> list[str]:
    """Stable identities of the GPUs this process can use (UUIDs where CUDA gives them)."""
    explicit = os.environ.get("BUCKLE_WORKER_GPU", "").strip()
    if explicit:
        return [d.strip() for d in explicit.split(",") if d.strip()]
    if not Path("/proc/driver/nvidia").exists() and "CUDA_VISIBLE_DEVICES" not in os.environ:
        return []  # no NVIDIA driver: a CPU host, and no reason to import torch here
    import torch

    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        uuid = getattr(torch.cuda.get_device_properties(i), "uuid", None)
        out.append(str(uuid) if uuid is not None else f"cuda:{i}")
    return out


def claim_gpus(devices: list[str], concurrency: int,
               lock_dir: str | Path | None = None) -> list[IO[str]]:
    """Lock every device for this worker; the returned files must stay open while it runs."""
    if not devices:
        return []  # a CPU worker: several may share a host (BUCKLE_TORCH_THREADS shares cores)
    if len(devices) > 1 or concurrency > 1:
        raise GpuClaimError(
            f"a training worker trains on one GPU with one process, but this one sees "
            f"{len(devices)} GPU(s) ({', '.join(devices)}) with --concurrency {concurrency}: "
            "start one worker per GPU, each pinned with CUDA_VISIBLE_DEVICES=<index>, "
            "and --concurrency 1")
    folder = Path(lock_dir or os.environ.get("BUCKLE_GPU_LOCK_DIR") or DEFAULT_LOCK_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    held = []
    for device in devices:
        path = folder / f"gpu-{re.sub(r'[^A-Za-z0-9_.-]', '_', device)}.lock"
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the process life
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise GpuClaimError(
                f"GPU {device} already has a training worker ({owner}); refusing to start a "
                "second one on it. Pin this worker to a free GPU (CUDA_VISIBLE_DEVICES) or "
                "stop the other worker.") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
        handle.flush()
        os.set_inheritable(handle.fileno(), True)  # pool processes keep it too
        held.append(handle)
    return held
