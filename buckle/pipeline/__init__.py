"""The job pipeline: validate -> curate-or-reuse -> train per policy -> evaluate -> save.

`run(spec, progress, should_cancel)` is what the CLI and the Celery workers call. It is
imported lazily: the API process reads `JobSpec` from here without importing torch.
"""

from typing import Any

from buckle.pipeline.policies import POLICIES, SafetyPolicy, Stage, get_policy, mix, register_policy
from buckle.pipeline.spec import (
    CancelCheck,
    CurationSpec,
    Hyperparameters,
    JobCancelled,
    JobResult,
    JobSpec,
    PolicyName,
    ProgressCallback,
    ProgressEvent,
    SafetySpec,
)

__all__ = [
    "POLICIES",
    "CancelCheck",
    "CurationSpec",
    "Hyperparameters",
    "JobCancelled",
    "JobResult",
    "JobSpec",
    "PolicyName",
    "ProgressCallback",
    "ProgressEvent",
    "SafetyPolicy",
    "SafetySpec",
    "Stage",
    "get_policy",
    "mix",
    "register_policy",
    "run",
]


def __getattr__(name: str) -> Any:
    if name == "run":
        from buckle.pipeline.runner import run

        return run
    raise AttributeError(f"module 'buckle.pipeline' has no attribute {name!r}")
