"""API schemas: one module per resource (`…Create` in, `…Public` / `…ListPublic` out).

Field names and shapes follow the OpenAI fine-tuning API so the official SDK works unchanged;
Buckle's additions (`safety`, `safety_scores`, `progress`) are extra fields it ignores. Input
models are strict (no `"3"` for 3) and forbid unknown fields; fields that name data or models
are `x-buckle-ref` references (`refs.py`), never paths.
"""

from app.schemas.adapters import (
    AdapterListPublic,
    AdapterPublic,
    ModelDeleted,
    ModelListPublic,
    ModelPublic,
)
from app.schemas.common import ErrorDetail, ErrorResponse, JobError, ListPublic
from app.schemas.evaluations import EvaluationCreate, EvaluationListPublic, EvaluationPublic
from app.schemas.files import FileDeleted, FileListPublic, FilePublic
from app.schemas.jobs import (
    CheckpointListPublic,
    CheckpointPublic,
    EventListPublic,
    EventPublic,
    HyperparametersIn,
    HyperparametersPublic,
    JobCreate,
    JobListPublic,
    JobPublic,
    SafetyComparisonPublic,
)
from app.schemas.safety import SafetyIn

__all__ = [
    "AdapterListPublic",
    "AdapterPublic",
    "CheckpointListPublic",
    "CheckpointPublic",
    "ErrorDetail",
    "ErrorResponse",
    "EvaluationCreate",
    "EvaluationListPublic",
    "EvaluationPublic",
    "EventListPublic",
    "EventPublic",
    "FileDeleted",
    "FileListPublic",
    "FilePublic",
    "HyperparametersIn",
    "HyperparametersPublic",
    "JobCreate",
    "JobError",
    "JobListPublic",
    "JobPublic",
    "ListPublic",
    "ModelDeleted",
    "ModelListPublic",
    "ModelPublic",
    "SafetyComparisonPublic",
    "SafetyIn",
]
