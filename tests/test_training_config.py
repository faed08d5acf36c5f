"""TrainingConfig: validation, canonical JSON, the learned-behaviour hash and the LR schedule."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from pydantic import ValidationError

from buckle.pipeline.spec import Hyperparameters
from buckle.training import TrainingConfig
from buckle.training.trainer import autocast_dtype


def test_defaults_are_the_documented_lora_recipe():
    cfg = TrainingConfig()
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_target_modules) == (16, 32, "all-linear")
    assert cfg.lr_schedule == "linear" and cfg.max_grad_norm == 1.0


def test_job_hyperparameters_map_onto_the_config_by_name():
    cfg = TrainingConfig(**Hyperparameters().model_dump(), seed=3)
    assert cfg.n_epochs == Hyperparameters().n_epochs and cfg.seed == 3


def test_config_is_frozen_and_rejects_unknown_or_bad_values():
    cfg = TrainingConfig()
    with pytest.raises(ValidationError):
        cfg.learning_rate = 1.0  # type: ignore[misc]
    with pytest.raises(ValidationError):
        TrainingConfig(epochs=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        TrainingConfig(batch_size=0)
    with pytest.raises(ValidationError, match="at least one module"):
        TrainingConfig(lora_target_modules=())
    with pytest.raises(ValidationError):
        TrainingConfig(autocast="fp16")  # type: ignore[arg-type]


def test_json_round_trip_and_hash_is_stable():
    cfg = TrainingConfig(learning_rate=1e-3, lora_target_modules=("v_proj", "q_proj"))
    again = TrainingConfig.from_json(cfg.to_json())
    assert again == cfg and again.config_hash() == cfg.config_hash()
    assert again.lora_target_modules == ("q_proj", "v_proj")  # order does not change the adapter


def test_hash_changes_with_what_is_learned_but_not_with_checkpointing():
    base = TrainingConfig()
    assert TrainingConfig(learning_rate=1e-3).config_hash() != base.config_hash()
    assert TrainingConfig(seed=1).config_hash() != base.config_hash()
    same = TrainingConfig(checkpoint_every=5, keep_checkpoints=9, micro_batch_tokens=512)
    assert same.config_hash() == base.config_hash()


def test_linear_schedule_warms_up_then_decays_and_never_reaches_zero():
    cfg = TrainingConfig(warmup_ratio=0.1)
    total = 20
    factors = [cfg.lr_factor(s, total) for s in range(total)]
    assert factors[0] == pytest.approx(1 / 3) and factors[1] == pytest.approx(2 / 3)
    assert factors[2] == 1.0
    assert all(a > b for a, b in pairwise(factors[2:]))
    assert min(factors) > 0


def test_constant_and_cosine_schedules():
    assert TrainingConfig(lr_schedule="constant", warmup_ratio=0).lr_factor(7, 10) == 1.0
    cosine = TrainingConfig(lr_schedule="cosine", warmup_ratio=0)
    assert cosine.lr_factor(0, 10) == 1.0
    assert 0 < cosine.lr_factor(9, 10) < 0.05


def test_autocast_auto_means_bf16_where_the_hardware_has_it(monkeypatch):
    from buckle.training import trainer

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(trainer, "cpu_prefers_bf16", lambda: False)
    assert autocast_dtype(TrainingConfig(), cpu) is None
    monkeypatch.setattr(trainer, "cpu_prefers_bf16", lambda: True)
    assert autocast_dtype(TrainingConfig(), cpu) is torch.bfloat16
    assert autocast_dtype(TrainingConfig(autocast="off"), cpu) is None
    assert autocast_dtype(TrainingConfig(), cuda) is torch.bfloat16
    assert autocast_dtype(TrainingConfig(autocast="bf16"), cpu) is torch.bfloat16
    assert autocast_dtype(TrainingConfig(autocast="off"), cuda) is None
