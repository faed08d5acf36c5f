"""The job pipeline: validate -> curate-or-reuse -> train per policy -> evaluate -> save.

`run(spec, progress, should_cancel)` is what the CLI and the Celery workers call.
"""

from buckle.pipeline.policies import POLICIES, SafetyPolicy, Stage, get_policy, mix, register_policy
from buckle.pipeline.run import run
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
