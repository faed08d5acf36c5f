"""Checkpoints and the final adapter on disk, each written whole or not at all.

Layout of an output directory:

    OUT/checkpoints/step-000050/  adapter_config.json, adapter_model.safetensors (PEFT format,
                                  so a checkpoint is itself a usable adapter),
                                  training_config.json, trainer_state.json (step, data position,
                                  losses, fingerprint), optimizer.pt (AdamW, schedule, RNG states)
    OUT/adapter/                  the finished adapter + training_config.json + train_result.json

Every directory is filled under a temporary name, fsynced, then renamed into place, so a process
killed at any instant (kill -9, OOM, lost node) leaves either the previous complete state or the
new one; leftovers of an interrupted write are dot-named and removed by the next run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from buckle.training.config import TrainingConfig
from buckle.training.lora import write_adapter

CHECKPOINTS, ADAPTER = "checkpoints", "adapter"
CONFIG_FILE, STATE_FILE = "training_config.json", "trainer_state.json"
OPTIMIZER_FILE, RESULT_FILE = "optimizer.pt", "train_result.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclass
class TrainerState:
    """Where a run stands after `step` optimizer steps; enough to continue it exactly."""

    fingerprint: str
    step: int
    total_steps: int
    steps_per_epoch: int
    losses: list[float] = field(default_factory=list)
    trained_tokens: int = 0  # assistant tokens the loss was computed on
    useful_tokens: int = 0  # non-padding tokens fed to the model
    padded_tokens: int = 0  # rows x width fed, padding included
    # "bfloat16" under bf16 autocast, "float32" without; None in checkpoints written before it
    # was recorded. A resumed run computes in its first part's dtype, whatever `auto` would
    # choose in the resuming process (docs/service.md, "Soak").
    compute_dtype: str | None = None

    @property
    def epoch(self) -> int:
        return self.step // self.steps_per_epoch

    @property
    def batch_in_epoch(self) -> int:
        """The data-order position: index of the next batch in its epoch's order."""
        return self.step % self.steps_per_epoch


def _fsync_tree(directory: Path) -> None:
    for path in directory.iterdir():
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(final: Path, fill: Callable[[Path], None]) -> Path:
    """Create directory `final` by filling a temporary sibling and renaming it into place."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        fill(tmp)
        _fsync_tree(tmp)
        if final.exists():  # rename() cannot replace a non-empty directory: move it aside first
            trash = final.parent / f".trash-{final.name}-{os.getpid()}"
            shutil.rmtree(trash, ignore_errors=True)
            os.replace(final, trash)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def remove_partial_writes(out_dir: Path) -> None:
    """Delete leftovers of writes a killed process never finished (callers hold the run lock)."""
    for parent in (out_dir, out_dir / CHECKPOINTS):
        if parent.is_dir():
            for path in parent.iterdir():
                if path.name.startswith((".tmp-", ".trash-")) and path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)


def list_checkpoints(out_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = out_dir / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out_dir: Path, model: Any, optimizer: torch.optim.Optimizer,
                    scheduler: Any, state: TrainerState, config: TrainingConfig) -> Path:
    """Write checkpoint `step-{state.step}` and drop all but the newest `keep_checkpoints`."""
    def fill(tmp: Path) -> None:
        write_adapter(model, tmp)
        (tmp / CONFIG_FILE).write_text(config.model_dump_json(indent=2))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": rng_state()}, tmp / OPTIMIZER_FILE)
        (tmp / STATE_FILE).write_text(json.dumps(asdict(state), indent=1))

    path = write_atomically(out_dir / CHECKPOINTS / f"step-{state.step:06d}", fill)
    for old in list_checkpoints(out_dir)[:-config.keep_checkpoints]:
        trash = old.parent / f".trash-{old.name}"
        os.replace(old, trash)  # never leave a half-deleted directory under a valid name
        shutil.rmtree(trash, ignore_errors=True)
    return path


def read_trainer_state(checkpoint: Path) -> TrainerState:
    return TrainerState(**json.loads((checkpoint / STATE_FILE).read_text()))


def restore_optimizer(checkpoint: Path, optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
    """Load AdamW moments, the schedule position and the RNG streams saved with a checkpoint."""
    saved = torch.load(checkpoint / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    set_rng_state(saved["rng"])


def save_final_adapter(out_dir: Path, model: Any, config: TrainingConfig,
                       result: dict[str, Any]) -> Path:
    """Write OUT/adapter: PEFT files + the config + the run's summary, atomically."""
    def fill(tmp: Path) -> None:
        write_adapter(model, tmp)
        (tmp / CONFIG_FILE).write_text(config.model_dump_json(indent=2))
        (tmp / RESULT_FILE).write_text(json.dumps(result, indent=1))

    return write_atomically(out_dir / ADAPTER, fill)


def read_final_result(out_dir: Path) -> dict[str, Any] | None:
    """The summary of a finished run in `out_dir`, or None when there is none."""
    path = out_dir / ADAPTER / RESULT_FILE
    return json.loads(path.read_text()) if path.is_file() else None
