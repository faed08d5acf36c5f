"""One training worker per GPU: real Celery worker processes that declare the same device
(`BUCKLE_WORKER_GPU`, the override for hosts without CUDA, so this runs on CPU) — the second
refuses to start, a worker pinned to another device starts, and the lock dies with its holder."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from servicekit import wait_for

from workers.gpu_guard import GpuClaimError, claim_gpus


def _log(stack, name: str) -> str:
    path = Path(stack.env["BUCKLE_DATA_DIR"]) / f"worker-{name}.log"
    return path.read_text() if path.exists() else ""


@pytest.mark.parametrize("fresh_stack", ["embedded"], indirect=True)
def test_a_second_training_worker_on_one_gpu_refuses_to_start(fresh_stack, tmp_path):
    locks = {"BUCKLE_GPU_LOCK_DIR": str(tmp_path / "locks")}
    first = fresh_stack.start_worker(name="gpu0-a", BUCKLE_WORKER_GPU="GPU-0000", **locks)
    wait_for(lambda: "training on" in _log(fresh_stack, "gpu0-a"), timeout=60)
    second = fresh_stack.start_worker(name="gpu0-b", BUCKLE_WORKER_GPU="GPU-0000", **locks)
    assert second.wait(60) == 3
    assert "GPU GPU-0000 already has a training worker" in _log(fresh_stack, "gpu0-b")
    other = fresh_stack.start_worker(name="gpu1", BUCKLE_WORKER_GPU="GPU-0001", **locks)
    wait_for(lambda: "training on" in _log(fresh_stack, "gpu1"), timeout=60)
    assert first.poll() is None and other.poll() is None
    light = fresh_stack.start_worker(queues="default", name="light", BUCKLE_WORKER_GPU="GPU-0000",
                                     **locks)  # a light worker does not train: no claim
    wait_for(lambda: "ready" in _log(fresh_stack, "light"), timeout=60)
    assert light.poll() is None
    fresh_stack.kill(first)  # SIGKILL: the lock goes with the process, nothing stale
    again = fresh_stack.start_worker(name="gpu0-c", BUCKLE_WORKER_GPU="GPU-0000", **locks)
    wait_for(lambda: "training on" in _log(fresh_stack, "gpu0-c"), timeout=60)
    time.sleep(0.5)
    assert again.poll() is None


def test_a_training_worker_must_be_pinned_to_one_gpu_with_one_process(tmp_path):
    with pytest.raises(GpuClaimError, match="one worker per GPU"):
        claim_gpus(["GPU-a", "GPU-b"], 1, tmp_path)
    with pytest.raises(GpuClaimError, match="--concurrency 2"):
        claim_gpus(["GPU-a"], 2, tmp_path)
    assert claim_gpus([], 4, tmp_path) == []  # CPU workers share a host
