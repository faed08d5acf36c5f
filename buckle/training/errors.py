"""Typed errors of the trainer; `app/` maps them to HTTP with the rest of `buckle.errors`."""

from __future__ import annotations

from pathlib import Path

from buckle.errors import BuckleError, Cancelled


class TrainingCancelled(Cancelled):
    """`should_cancel()` returned True; training stopped between two optimizer steps.

    `checkpoint` is the newest complete checkpoint (written at the stop when the run had advanced
    past the previous one), so calling `train_lora` again with the same arguments resumes there.
    """

    def __init__(self, step: int, total_steps: int, checkpoint: Path | None) -> None:
        self.step, self.total_steps, self.checkpoint = step, total_steps, checkpoint
        where = f"; resume from {checkpoint}" if checkpoint else "; no checkpoint was written"
        super().__init__(f"training cancelled after step {step}/{total_steps}{where}")


class RunMismatchError(BuckleError):
    """The output directory holds a run of a different config, data, base or init adapter.

    Resuming it would silently mix two trainings, and overwriting it would destroy work.
    """

    def __init__(self, out_dir: Path, found: str, expected: str) -> None:
        self.out_dir, self.found, self.expected = out_dir, found, expected
        super().__init__(
            f"{out_dir} holds a training run with fingerprint {found[:12]}, but this run's "
            f"fingerprint is {expected[:12]} (config, data, base model or init adapter differ). "
            "Use a new output directory, or delete the old one to retrain.")


class AdapterMismatchError(BuckleError):
    """An adapter to continue from does not fit this base model and LoRA config."""

    def __init__(self, adapter_dir: Path, reason: str) -> None:
        self.adapter_dir, self.reason = adapter_dir, reason
        super().__init__(f"cannot continue from adapter {adapter_dir}: {reason}")
