"""Pick device and dtype once, so every caller agrees: CUDA + bf16 when present, else CPU + fp32."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from functools import lru_cache
from pathlib import Path

import torch

from buckle.settings import buckle_home


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    # fp32 on CPU: bf16 matmuls are slower on most CPUs and greedy outputs drift.
    return torch.float32



PRECISIONS = ("auto", "fp32", "bf16")


def precision_choice(value: str | None, env: str,
                     choices: tuple[str, ...] = PRECISIONS) -> str:
    """`value`, else the environment variable `env`, else `auto`; one of `choices` (the judges'
    encoder and the generation engine read their precision this one way)."""
    choice = (value or os.environ.get(env, "") or "auto").strip().lower()
    if choice not in choices:
        raise ValueError(f"precision must be one of {', '.join(choices)}, got {choice!r} "
                         f"(argument or ${env})")
    return choice


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when this CPU's flags list a bf16 multiply instruction (AVX512-BF16 or AMX-BF16).

    Necessary for bf16 to be fast, not sufficient: use `cpu_prefers_bf16` to decide."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return bool(flags & {"avx512_bf16", "amx_bf16"})
    return False


BF16_MIN_SPEEDUP = 1.25  # below this the rounding cost of bf16 buys too little


_PROBE = (128, 896, 4864)  # rows, in, out: Qwen2.5-0.5B's gate projection at 128 rows


@lru_cache(maxsize=1)
def cpu_bf16_speedup() -> float:
    """fp32 time / bf16 time of one decode-shaped linear (Qwen2.5-0.5B's gate projection at
    128 rows), measured once per process on the current threads (~0.1 s).

    Measured because the flags do not tell: a 2-vCPU AMD EPYC with AVX512-BF16 decoded an
    evaluation 3.5x faster in bf16 than fp32, an Intel Xeon VM whose flags also list AVX512-BF16
    (no AMX) 0.69x (docs/benchmarks.md). Each dtype takes its fastest of 3 runs after
    a warm-up, so a brief disturbance does not flip the answer."""
    rows, width, out = _PROBE
    gen = torch.Generator().manual_seed(0)
    x32 = torch.randn(rows, width, generator=gen)
    w32 = torch.randn(out, width, generator=gen)
    best = {}
    for dtype in (torch.float32, torch.bfloat16):
        x, w = x32.to(dtype), w32.to(dtype)
        torch.nn.functional.linear(x, w)  # warm-up: kernel selection, page faults
        times = []
        for _ in range(3):
            start = time.perf_counter()
            torch.nn.functional.linear(x, w)
            times.append(time.perf_counter() - start)
        best[dtype] = min(times)
    return best[torch.float32] / max(best[torch.bfloat16], 1e-9)


def cpu_identity(cpuinfo: str) -> str:
    """The first processor's block of /proc/cpuinfo without its clock: the MHz a VM reports
    moves from one read to the next, and keyed on it each process would measure again (and
    could choose the other dtype under load)."""
    first = cpuinfo.split("\n\n")[0]
    return "\n".join(line for line in first.splitlines() if not line.startswith("cpu MHz"))


def host_speedup_file() -> Path:
    """Where this host's measured figure is kept: BUCKLE_HOME/host, keyed by the torch
    version, the thread count and the CPU (`cpu_identity`)."""
    try:
        cpu = cpu_identity(Path("/proc/cpuinfo").read_text(errors="replace"))
    except OSError:
        cpu = ""
    key = hashlib.sha256(f"{torch.__version__}|{torch.get_num_threads()}|{cpu}".encode()
                         ).hexdigest()[:16]
    return buckle_home() / "host" / f"bf16-speedup-{key}.json"


def _host_bf16_speedup() -> float:
    """`cpu_bf16_speedup`, measured once per host and torch version and kept in BUCKLE_HOME, so
    every process on a machine makes the same choice (a resumed training run must compute in the
    dtype its first part used; a per-process timing under load could flip it). The first
    measurement stored wins: a process that measured at the same time as another returns the
    stored figure, not its own."""
    path = host_speedup_file()
    stored = _read_speedup(path)
    if stored is not None:
        return stored
    speedup = cpu_bf16_speedup()
    try:
        _store_once(path, speedup)
    except OSError:
        return speedup  # a read-only home: the choice is per process then
    stored = _read_speedup(path)
    return speedup if stored is None else stored


def _read_speedup(path: Path) -> float | None:
    try:
        return float(json.loads(path.read_text())["speedup"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _store_once(path: Path, speedup: float) -> None:
    """Write `path` unless it exists, atomically: a hard link never replaces a file, and a
    reader never sees a half-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".speedup-")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump({"speedup": speedup}, fh)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process stored first: its figure is the host's
    finally:
        os.unlink(tmp)


def cpu_prefers_bf16() -> bool:
    """bf16 on this CPU? Where its flags list a bf16 multiply and a measured bf16 matmul is at
    least `BF16_MIN_SPEEDUP` times faster than fp32 (`cpu_bf16_speedup`). What `auto` means for
    the engine's decoding, the trainer's autocast and the judges' encoder."""
    return cpu_has_native_bf16() and _host_bf16_speedup() >= BF16_MIN_SPEEDUP
