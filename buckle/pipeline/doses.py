"""The dose of a policy's stages of safety data only: what the job sets, else the policy's
documented dose (`policies.Dose`), else the customer's own hyperparameters."""

from __future__ import annotations

from typing import Any

from buckle.pipeline.policies import SafetyPolicy
from buckle.pipeline.spec import SafetySpec
from buckle.training import TrainingConfig


def restore_share(policy: SafetyPolicy, safety: SafetySpec) -> float:
    """Share of the corpus a restore stage trains on: the job's value, else the policy's."""
    return safety.restore_share if safety.restore_share is not None else \
        policy.dose.restore_share


def unlikelihood_weight(policy: SafetyPolicy, safety: SafetySpec,
                        corpus: dict[str, Any]) -> float:
    """Weight of the unlikelihood term in the stages of safety data only: the job's value
    (0 turns it off; a corpus without its parts is then an error), else the policy's
    documented dose where the corpus has a decline to avoid and prompts to avoid it at."""
    if safety.unlikelihood is not None:
        return safety.unlikelihood
    parts = corpus.get("parts") or {}
    usable = all(parts.get(name, {}).get("items") for name in ("responsible", "anchors"))
    return policy.dose.unlikelihood if usable else 0.0


def safety_stage_config(train_config: TrainingConfig, policy: SafetyPolicy,
                        safety: SafetySpec) -> TrainingConfig:
    """The training config of a stage of safety data only: the job's own values, else the
    policy's documented dose, else the customer's."""
    dose = policy.dose
    return train_config.model_copy(update={
        "n_epochs": safety.safety_epochs or dose.epochs or train_config.n_epochs,
        "learning_rate": safety.safety_learning_rate
        or train_config.learning_rate * dose.learning_rate_scale})
